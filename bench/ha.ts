// Issue 16, "Chaos tests and figures": a highly available control plane
// under load, through four faults. One machine: a three-member etcd on
// loopback, three `herd server`s on it (lease BENCH_LEASE_S, default 2 s),
// one agent and one gateway given every server (test/e2e/ha-cluster.ts).
// The load in every round: steady traffic through the gateway (40 requests/s
// to examples/hello), API writes (a tenant created every 50 ms, through
// whichever server answers), a deploy of another app started through a
// follower just before the fault, and a scale of hello by one at the fault.
//
//   kill -9 leader     the leading server dies
//   SIGSTOP leader     the leading server is frozen for 2x the lease + 1 s, then woken
//   etcd member cut off one etcd member, started in its own network namespace
//                      (a veth pair to the others), has its link taken down for 5 s
//   kill -9 etcd       one etcd member dies (two of three keep the quorum)
//
// For each: time until another server leads (the leader key names a live
// new server) and until the scale placed the new instance on a node (the
// control plane acted), both from the fault, against the goal of 2x the lease
// (printed as a ratio), and until it ran; the round "no fault" is the peer,
// the same load and scale with nothing broken, in the same run; acknowledged writes lost; instances over or under the count asked
// for (watched for 5 s once settled); failed gateway requests; whether the
// deploy in flight finished. `npm run bench:ha`; the load average is printed.

import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { type HaCluster, type HaServer, startHaCluster } from "../test/e2e/ha-cluster.ts";
import { ROOT, runCli, sleep, steadyTraffic, waitFor } from "../test/e2e/harness.ts";
import { verdict, verdictSummary } from "./harness.ts";

const LEASE_S = Number(process.env.BENCH_LEASE_S ?? 2);
const GOAL_MS = 2 * LEASE_S * 1000;

type Inst = { id: string; state: string; node?: string };

interface Fault {
  name: string;
  /** Whether the fault hits the leading server (then the takeover is timed). */
  leader: boolean;
  /** Does the fault; returns what undoes it, if anything. */
  run(ha: HaCluster, leader: HaServer): Promise<(() => Promise<void>) | undefined>;
}

const FAULTS: Fault[] = [
  {
    // The peer: the same load and scale with nothing broken, in the same run.
    name: "no fault",
    leader: false,
    run: async () => undefined,
  },
  {
    name: "kill -9 leader",
    leader: true,
    run: async (_ha, leader) => {
      await leader.kill9();
      return undefined;
    },
  },
  {
    name: "SIGSTOP leader",
    leader: true,
    run: async (_ha, leader) => {
      leader.pause();
      const woken = sleep(GOAL_MS + 1000).then(() => leader.resume());
      return () => woken;
    },
  },
  {
    // Member 1 runs in its own network namespace; its veth link goes down for 5 s.
    name: "etcd member cut off",
    leader: false,
    run: async (ha) => {
      const link = ha.etcd.isolated;
      if (!link) throw new Error("no etcd member in a network namespace");
      link.cut();
      const healed = sleep(5000).then(() => link.heal());
      return () => healed;
    },
  },
  {
    name: "kill -9 etcd member",
    leader: false,
    run: async (ha) => {
      ha.etcd.members[2].kill("SIGKILL");
      return undefined;
    },
  },
];

/** hello's live instances, read from etcd itself: a frozen server must not delay the observer. */
async function live(ha: HaCluster): Promise<Inst[]> {
  const all = await ha.store.list<Inst & { tenant: string; app: string }>("instance");
  return all.items
    .map((o) => o.value)
    .filter((i) => i.tenant === "default" && i.app === "hello")
    .filter((i) => !["stopped", "failed", "lost"].includes(i.state));
}

/** When (ms since the epoch) a server's log first has a line matching `pattern` after `from` chars. */
function loggedAt(output: string, from: number, pattern: RegExp): number | undefined {
  for (const line of output.slice(from).split("\n")) {
    if (!pattern.test(line)) continue;
    const at = Date.parse(line.slice(0, 24));
    if (Number.isFinite(at)) return at;
  }
  return undefined;
}

/** An app like examples/hello under another name and host, with one instance. */
function appDir(work: string, name: string): string {
  const dir = join(work, name);
  cpSync(join(ROOT, "examples/hello"), dir, { recursive: true });
  const manifest = readFileSync(join(dir, "herd.yaml"), "utf8")
    .replace("app: hello", `app: ${name}`)
    .replace("instances: 2", "instances: 1")
    .replace("hello.localhost", `${name}.localhost`);
  writeFileSync(join(dir, "herd.yaml"), manifest);
  return dir;
}

interface Row {
  fault: string;
  electMs?: number;
  actMs?: number;
  runMs?: number;
  acked: number;
  lostWrites: number;
  writeGapMs: number;
  want: number;
  over: number;
  under: number;
  requests: number;
  failed: number;
  failures: string;
  deploy: string;
  /** Servers' log lines "etcd member does not answer" in the round (etcd-members.ts): outside the etcd faults, false alarms. */
  memberDown: number;
  /** From the fault: the scale acknowledged (the CLI exited), and the new leader's log saying it started leading. */
  ackMs?: number;
  leadingMs?: number;
}

async function round(ha: HaCluster, fault: Fault, work: string, n: number): Promise<Row> {
  const leader = (await ha.leader()) as HaServer;
  if (!leader) throw new Error("no leader before the fault");
  const before = (await live(ha)).length;
  const want = before + 1;
  const traffic = steadyTraffic(ha.gatewayUrl, "hello.localhost", { connections: 4, rate: 40 });
  const acked: { name: string; at: number }[] = [];
  let writing = true;
  const writes = (async () => {
    for (let i = 0; writing; i++) {
      const name = `w${n}-${i}`;
      const r = await ha.api("POST", "/tenants", { name }).catch(() => undefined);
      if (r?.status === 201) acked.push({ name, at: Date.now() });
      await sleep(50);
    }
  })();
  // A deploy in flight, uploaded to a follower (a deploy built on a server that dies is lost with its build).
  const followers = ha.servers.filter((s) => s !== leader && s.alive()).map((s) => s.url);
  const deploy = runCli(["deploy", appDir(work, `load${n}`)], {
    env: { HERD_SERVER: [...followers, leader.url].join(","), HERD_TOKEN: ha.token },
    timeoutMs: 180_000,
  });
  await sleep(1500);
  const marks = ha.servers.map((s) => s.output().length);
  const t0 = Date.now();
  const undo = await fault.run(ha, leader);
  const elected = fault.leader ? ha.nextLeader(leader, 60_000).then(() => Date.now() - t0) : undefined;
  // Through the followers first: the CLI moves past a server that refuses connections, not past a frozen one.
  const scale = await runCli(["scale", `web=${want}`, "--app", "hello"], {
    env: { HERD_SERVER: [...followers, leader.url].join(","), HERD_TOKEN: ha.token },
  });
  if (scale.code !== 0) throw new Error(`scale failed: ${scale.stderr}`);
  const ackMs = Date.now() - t0;
  let actMs: number | undefined;
  let runMs: number | undefined;
  await waitFor(
    "the new instance runs",
    async () => {
      const l = await live(ha).catch(() => []);
      // Placed: the leader's scheduler gave it a node (the control plane acted); running: its health check passed.
      if (l.filter((i) => i.node).length >= want) actMs ??= Date.now() - t0;
      if (l.filter((i) => i.state === "running").length >= want) runMs ??= Date.now() - t0;
      return runMs !== undefined;
    },
    120_000,
  );
  const electMs = await elected;
  await undo?.();
  // Settled: exactly `want`, and watched for 5 s for extras.
  let over = 0;
  await waitFor("settled", async () => (await live(ha)).length === want, 60_000).catch(() => {});
  for (const end = Date.now() + 5000; Date.now() < end; await sleep(250)) {
    over = Math.max(over, (await live(ha)).length - want);
  }
  const under = Math.max(0, want - (await live(ha)).length);
  writing = false;
  await writes;
  const counts = await traffic.stop();
  const names = new Set(
    (await ha.api<{ items: { name: string }[] }>("GET", "/tenants")).body.items.map((t) => t.name),
  );
  let gap = 0;
  for (let i = 1; i < acked.length; i++) gap = Math.max(gap, acked[i].at - acked[i - 1].at);
  const d = await deploy;
  const leading = ha.servers
    .map((s, i) => loggedAt(s.output(), marks[i], /elected leader/))
    .filter((at) => at !== undefined);
  const memberDown = ha.servers
    .map(
      (s, i) =>
        s
          .output()
          .slice(marks[i])
          .split("\n")
          .filter((l) => /etcd member does not answer/.test(l)).length,
    )
    .reduce((a, b) => a + b, 0);
  return {
    memberDown,
    ackMs,
    ...(leading.length ? { leadingMs: Math.min(...leading) - t0 } : {}),
    fault: fault.name,
    ...(electMs !== undefined ? { electMs } : {}),
    actMs,
    runMs,
    acked: acked.length,
    lostWrites: acked.filter((a) => !names.has(a.name)).length,
    writeGapMs: gap,
    want,
    over,
    under,
    requests: counts.total,
    failed: counts.failed,
    failures: JSON.stringify(counts.failures),
    deploy: d.code === 0 ? "finished" : `FAILED: ${(d.stderr.trim().split("\n").at(-1) ?? "").slice(0, 100)}`,
  };
}

async function main(): Promise<number> {
  console.log(`bench:ha — lease ${LEASE_S} s, goal: another server acts within ${GOAL_MS} ms (2x the lease)`);
  console.log(
    `load average at start: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")} (2 cores shared)`,
  );
  const work = mkdtempSync(join(tmpdir(), "herd-bench-ha-"));
  const ha = await startHaCluster({ servers: 3, leaseTtl: LEASE_S, isolateEtcdMember: 1 });
  // Interrupted: everything started still goes (etcd, servers, agent, its instances, gateway).
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      void ha.stop().finally(() => {
        rmSync(work, { recursive: true, force: true });
        process.exit(130);
      });
    });
  }
  const rows: Row[] = [];
  try {
    const d = await ha.cli(["deploy", join(ROOT, "examples/hello")], 300_000);
    if (d.code !== 0) throw new Error(`deploy of hello failed: ${d.stderr}`);
    await waitFor(
      "hello runs",
      async () => (await live(ha)).filter((i) => i.state === "running").length === 2,
    );
    for (const [n, fault] of FAULTS.entries()) {
      process.stdout.write(`\n${fault.name} …\n`);
      const row = await round(ha, fault, work, n);
      rows.push(row);
      const ratio = (ms?: number) =>
        ms === undefined ? "—" : `${ms} ms (${(ms / GOAL_MS).toFixed(2)}x the goal)`;
      console.log(
        `  another server leads after   ${fault.leader ? ratio(row.electMs) : "— (the leader kept its lease)"}`,
      );
      if (fault.leader) console.log(`  … it began leading           ${row.leadingMs ?? "—"} ms (its log)`);
      console.log(`  the scale was acknowledged   ${row.ackMs} ms (the CLI exited)`);
      console.log(`  the scale placed its instance ${ratio(row.actMs)}`);
      console.log(`  … and it ran (health check)  ${row.runMs} ms`);
      console.log(
        `  API writes acknowledged      ${row.acked}, lost ${row.lostWrites}, longest gap ${row.writeGapMs} ms`,
      );
      console.log(`  instances                    ${row.want} asked, ${row.over} over, ${row.under} under`);
      console.log(
        `  gateway requests             ${row.requests}, failed ${row.failed} ${row.failed ? row.failures : ""}`,
      );
      console.log(`  deploy in flight             ${row.deploy}`);
      console.log(`  etcd members taken out       ${row.memberDown} times (servers' logs)`);
      if (fault.leader)
        verdict(
          `${fault.name}: another server leads within 2x the lease`,
          (row.electMs ?? Infinity) <= GOAL_MS,
        );
      verdict(`${fault.name}: the scale is placed within 2x the lease`, (row.actMs ?? Infinity) <= GOAL_MS);
      verdict(`${fault.name}: no acknowledged write lost`, row.lostWrites === 0);
      verdict(`${fault.name}: no instance doubled or lost`, row.over === 0 && row.under === 0);
      verdict(`${fault.name}: no failed gateway request`, row.failed === 0);
    }
  } finally {
    await ha.stop();
    rmSync(work, { recursive: true, force: true });
  }
  console.log(
    `\nload average at end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  console.log(
    "\n| fault | new leader | scale acknowledged | scale placed | instance running | goal | writes acked / lost (longest gap) | instances over / under | gateway failed | deploy in flight | members taken out |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.fault} | ${r.electMs === undefined ? "—" : `${r.electMs} ms`} | ${r.ackMs ?? "—"} ms | ${r.actMs ?? "—"} ms | ${r.runMs ?? "—"} ms | ${GOAL_MS} ms | ${r.acked} / ${r.lostWrites} (${r.writeGapMs} ms) | ${r.over} / ${r.under} | ${r.failed} of ${r.requests} | ${r.deploy} | ${r.memberDown} |`,
    );
  }
  return verdictSummary("bench:ha");
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
