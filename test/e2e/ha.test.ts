// A highly available control plane: three `herd server`s on one etcd, one
// leader. Kill -9 of the leader and a SIGSTOP past its lease: another server
// leads within twice the lease; an etcd member cut off the network: the leader
// keeps leading and acts within twice the lease; acknowledged writes stay, instances are
// neither lost nor doubled, the gateway answers throughout; the deposed
// leader steps down. Then backup, restore and migrate across both stores. An
// instance cannot connect to any etcd member's client or peer port.

import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ensureDebianPackages } from "../../scripts/ensure-tools.ts";
import { endpointOf } from "../../src/api/platform-endpoints.ts";
import { type HaCluster, type HaServer, startHaCluster } from "./ha-cluster.ts";
import {
  gatewayRequest,
  ROOT,
  runCli,
  served,
  sleep,
  steadyTraffic as startTraffic,
  waitFor,
} from "./harness.ts";
import { type ProbeResult, probePath, writeProber } from "./prober-app.ts";

const LEASE_S = 2;
let ha: HaCluster;

const root = process.getuid?.() === 0;

before(async () => {
  // The agent finds nft when it starts: the instances' firewall closes etcd to them (the last test).
  if (root) await ensureDebianPackages({ nft: "nftables" });
  // etcd member 1 in its own network namespace, to be cut off (etcd-cluster.ts).
  ha = await startHaCluster({ servers: 3, leaseTtl: LEASE_S, isolateEtcdMember: 1 });
  const d = await ha.cli(["deploy", join(ROOT, "examples/hello")], 240_000);
  assert.equal(d.code, 0, d.stderr + d.stdout);
  // The tests' traffic must see no failure: the gateway has hello's route a moment after the deploy.
  await served(
    { request: (host, path) => gatewayRequest(ha.gatewayUrl, host, path) },
    "hello.localhost",
    /^hi from /,
  );
});

/** Loads still running (a test that failed midway): stopped before the cluster, or they keep the file alive. */
const running = new Set<() => Promise<unknown>>();

after(async () => {
  for (const stop of running) await stop().catch(() => {});
  await ha?.stop();
});

type Inst = { id: string; state: string; service: string; node?: string };

/** The hello web instances that are not stopped, failed or lost, read from etcd (a frozen server must not hold the check). */
async function liveInstances(): Promise<Inst[]> {
  const all = await ha.store.list<Inst & { tenant: string; app: string }>("instance");
  return all.items
    .map((o) => o.value)
    .filter((i) => i.tenant === "default" && i.app === "hello" && i.service === "web")
    .filter((i) => !["stopped", "failed", "lost"].includes(i.state));
}

/** Waits until exactly `n` web instances run, then checks no extra one appears for `holdMs`. */
async function exactlyRunning(n: number, holdMs: number): Promise<void> {
  await waitFor(`${n} running instances`, async () => {
    const live = await liveInstances();
    return live.length === n && live.every((i) => i.state === "running");
  });
  const end = Date.now() + holdMs;
  while (Date.now() < end) {
    const live = await liveInstances();
    assert.ok(live.length <= n, `more instances than asked for: ${JSON.stringify(live)}`);
    await sleep(250);
  }
}

/** Gateway traffic, stopped by after() too when a test fails before it stops it. */
function steadyTraffic(...args: Parameters<typeof startTraffic>): ReturnType<typeof startTraffic> {
  const traffic = startTraffic(...args);
  const stop = traffic.stop.bind(traffic);
  running.add(stop);
  traffic.stop = () => {
    running.delete(stop);
    return stop();
  };
  return traffic;
}

/** API writes during a failover, through whichever server answers: the names acknowledged. */
function writeLoop(prefix: string): { stop(): Promise<string[]> } {
  const acked: string[] = [];
  let stopping = false;
  const loop = (async () => {
    for (let n = 0; !stopping; n++) {
      const name = `${prefix}-${n}`;
      const r = await ha.api("POST", "/tenants", { name }).catch(() => undefined);
      if (r?.status === 201) acked.push(name);
      await sleep(50);
    }
  })();
  const halt = async () => {
    stopping = true;
    await loop;
  };
  running.add(halt);
  return {
    stop: async () => {
      running.delete(halt);
      stopping = true;
      await loop;
      return acked;
    },
  };
}

async function checkKept(acked: string[]): Promise<void> {
  const r = await ha.api<{ items: { name: string }[] }>("GET", "/tenants");
  const names = new Set(r.body.items.map((t) => t.name));
  const lost = acked.filter((n) => !names.has(n));
  assert.deepEqual(lost, [], "acknowledged writes lost");
}

test("ha: an instance cannot connect to etcd, neither its client nor its peer ports, on this machine or another", {
  skip: root ? false : "needs root: instances run as the agent's user otherwise",
}, async (t) => {
  // Member 0 listens on an address of this machine, member 1 in its own network namespace
  // (another machine as far as the agent knows). The servers name every member's client and
  // peer URLs from etcd's member list (api/platform-endpoints.ts); the agent closes them.
  const targets = {
    client0: ha.etcd.endpoints[0],
    peer0: ha.etcd.peers[0],
    client1: ha.etcd.endpoints[1],
    peer1: ha.etcd.peers[1],
  };
  const closing = Object.values(targets).map((u) => endpointOf(u) as string);
  const peersFile = join(ha.agentDir, "peers.json");
  await waitFor(`the agent to close ${closing.join(", ")}`, () => {
    if (!existsSync(peersFile)) return false;
    const { platform } = JSON.parse(readFileSync(peersFile, "utf8")) as { platform: string[] };
    return closing.every((e) => platform.includes(e));
  });
  const dir = mkdtempSync(join(tmpdir(), "herd-ha-prober-"));
  try {
    writeProber(dir, { app: "prober", host: "prober.localhost", instances: 1 });
    const d = await ha.cli(["deploy", dir], 240_000);
    assert.equal(d.code, 0, d.stderr + d.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const spec = {
    connect: {
      ...Object.fromEntries(Object.entries(targets).map(([k, u]) => [k, endpointOf(u)])),
      gateway: Number(new URL(ha.gatewayUrl).port),
    },
  };
  const res = await waitFor("the prober through the gateway", async () => {
    const r = await gatewayRequest(ha.gatewayUrl, "prober.localhost", probePath(spec));
    return r.status === 200 ? r : undefined;
  });
  t.diagnostic(`probe: ${res.body}`);
  const result = JSON.parse(res.body) as ProbeResult;
  assert.deepEqual(result.connect, {
    client0: "ECONNREFUSED",
    peer0: "ECONNREFUSED",
    client1: "ECONNREFUSED",
    peer1: "ECONNREFUSED",
    gateway: "allowed",
  });
});

test("ha: kill -9 of the leader: another server leads within 2x the lease and acts; nothing lost or doubled", async () => {
  await exactlyRunning(2, 0);
  const traffic = steadyTraffic(ha.gatewayUrl, "hello.localhost", { connections: 4, rate: 40 });
  const writes = writeLoop("kill");
  await sleep(1000);
  const old = (await ha.leader()) as HaServer;
  assert.ok(old, "a leader before the kill");
  await old.kill9();
  const { server, ms } = await ha.nextLeader(old);
  assert.ok(ms <= 2 * LEASE_S * 1000, `the next leader took ${ms} ms, more than 2x the ${LEASE_S} s lease`);
  // The new leader acts: a scale through the server list (one of them is dead) places a third instance.
  const s = await ha.cli(["scale", "web=3", "--app", "hello"]);
  assert.equal(s.code, 0, s.stderr + s.stdout);
  await exactlyRunning(3, 3000);
  const acked = await writes.stop();
  const counts = await traffic.stop();
  await checkKept(acked);
  assert.ok(acked.length > 10, `only ${acked.length} writes acknowledged`);
  assert.equal(counts.failed, 0, `gateway requests failed: ${JSON.stringify(counts.failures)}`);
  assert.ok(counts.ok > 50, `only ${counts.ok} gateway requests`);
  assert.match(server.output(), /elected leader/);
});

test("ha: a leader frozen past its lease is replaced; when it wakes it steps down and does not act twice", async () => {
  const old = (await ha.leader()) as HaServer;
  assert.ok(old?.alive(), "a live leader");
  const traffic = steadyTraffic(ha.gatewayUrl, "hello.localhost", { connections: 4, rate: 40 });
  const writes = writeLoop("stop");
  old.pause();
  try {
    const { ms } = await ha.nextLeader(old);
    assert.ok(ms <= 2 * LEASE_S * 1000, `the next leader took ${ms} ms, more than 2x the ${LEASE_S} s lease`);
    // The followers first: the CLI moves past a server that refuses connections, not past a frozen one.
    const followers = ha.servers.filter((x) => x !== old && x.alive()).map((x) => x.url);
    const s = await runCli(["scale", "web=2", "--app", "hello"], {
      env: { HERD_SERVER: [...followers, old.url].join(","), HERD_TOKEN: ha.token },
    });
    assert.equal(s.code, 0, s.stderr + s.stdout);
    await exactlyRunning(2, 1000);
  } finally {
    old.resume();
  }
  // Awake, it still believes it leads until its watchdog, its lease or a refused write says otherwise.
  await waitFor("the woken server steps down", async () => /no longer the leader/.test(old.output())).catch(
    (err) => {
      throw new Error(
        `${(err as Error).message}; it is ${old.alive() ? "running" : "gone"}, its last output:\n${old.output().slice(-3000)}`,
      );
    },
  );
  assert.notEqual(await ha.leader(), old, "the woken server took the leadership back");
  await exactlyRunning(2, 3000);
  const acked = await writes.stop();
  const counts = await traffic.stop();
  await checkKept(acked);
  assert.equal(counts.failed, 0, `gateway requests failed: ${JSON.stringify(counts.failures)}`);
});

test("ha: an etcd member cut off the network: the leader keeps leading and places a scale within 2x the lease", async () => {
  await exactlyRunning(2, 0);
  const leader = (await ha.leader()) as HaServer;
  const link = ha.etcd.isolated;
  assert.ok(link && leader);
  const traffic = steadyTraffic(ha.gatewayUrl, "hello.localhost", { connections: 4, rate: 40 });
  const writes = writeLoop("cut");
  await sleep(1000);
  link.cut();
  try {
    const s = await ha.cli(["scale", "web=3", "--app", "hello"]);
    assert.equal(s.code, 0, s.stderr + s.stdout);
    const acked = Date.now();
    // Placed: the leader's scheduler gave the new instance a node. Its calls keep off the cut member
    // once a probe goes unanswered (etcd-members.ts), instead of waiting 3 s on it each time.
    await waitFor(
      "the new instance placed",
      async () => (await liveInstances()).filter((i) => i.node).length >= 3,
      2 * LEASE_S * 1000,
    );
    console.log(`placed ${Date.now() - acked} ms after the scale was acknowledged`);
    await exactlyRunning(3, 3000);
  } finally {
    link.heal();
  }
  assert.equal(await ha.leader(), leader, "the leader lost its lease to a member cut off");
  assert.ok(
    ha.servers.some((s) => /etcd member does not answer: calls keep off it/.test(s.output())),
    "no server said it keeps off the member cut off",
  );
  const ackedWrites = await writes.stop();
  const counts = await traffic.stop();
  await checkKept(ackedWrites);
  assert.ok(ackedWrites.length > 10, `only ${ackedWrites.length} writes acknowledged`);
  assert.equal(counts.failed, 0, `gateway requests failed: ${JSON.stringify(counts.failures)}`);
});

test("ha: backup of the etcd store, restore into SQLite, migrate back to etcd", async () => {
  // The test before cuts a member off and heals it: a leader may still be being chosen.
  const leader = await waitFor("a leader after the heal", () => ha.leader(), 30_000);
  const work = mkdtempSync(join(tmpdir(), "herd-ha-backup-"));
  const etcdUrl = `etcd://${ha.etcd.endpoints.map((e) => e.replace("http://", "")).join(",")}`;
  const artifacts = join(leader.dataDir, "..", "artifacts");
  try {
    const b = await runCli([
      "backup",
      "--store",
      etcdUrl,
      "--data",
      leader.dataDir,
      "--artifacts",
      artifacts,
      "--out",
      join(work, "backup"),
    ]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /backed up \d+ objects at revision \d+/);
    assert.ok(existsSync(join(work, "backup", "secrets.key")));
    assert.ok(readdirSync(join(work, "backup", "artifacts")).length > 0, "the slug is in the backup");

    const r = await runCli(["restore", "--from", join(work, "backup"), "--data", join(work, "restored")]);
    assert.equal(r.code, 0, r.stderr);
    // Into a store that holds objects: refused, nothing merged.
    const again = await runCli(["restore", "--from", join(work, "backup"), "--data", join(work, "restored")]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already holds/);

    const m = await runCli([
      "migrate",
      "--from",
      `sqlite:${join(work, "restored")}`,
      "--to",
      `${etcdUrl}/migrated`,
    ]);
    assert.equal(m.code, 0, m.stderr);
    const { EtcdStore } = await import("../../src/store/etcd-store.ts");
    const migrated = await EtcdStore.open({ endpoints: ha.etcd.endpoints, root: "/migrated/" });
    try {
      const app = await migrated.get<{ name: string; release: number }>("app", "default/hello");
      const live = await ha.store.get<{ name: string; release: number }>("app", "default/hello");
      assert.deepEqual(app?.value, live?.value);
      const [a, b2] = [await migrated.snapshot(), await ha.store.snapshot()];
      assert.ok(a.items.length > 10 && a.items.length <= b2.items.length);
    } finally {
      await migrated.close();
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
