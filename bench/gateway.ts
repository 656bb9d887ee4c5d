// `npm run bench:gateway`: req/s and p50/p99 of (a) direct, (b) nginx, (c) the herd gateway,
// (d) the gateway with every policy on and (e) @fastify/http-proxy, with wrk; then fixed rates
// for the p99 the gateway adds over direct (issue 11: ≤ 1 ms at half of (d)'s own top rate, nginx
// measured beside it), judged on an open-loop client (bench/gateway-open-loop.c: evenly spaced
// requests, latency from each one's due time), with h2load's figure printed beside it.
//
// Rounds paired in time: every target is measured in turn, ROUNDS times, the order reversed
// every other round (a b c d e, e d c b a, …); each ratio (and each added p99) is the median of
// the rounds' own ratios, never best against best. A verdict counts only when no request of
// either side failed (wrk's non-2xx and socket errors, the fixed-rate clients' errors) and the
// fixed rate was answered; an added p99 below −1 ms is noise, not counted.
// `--strict`: exit 1 when a target is missed or not counted.
//
// Env: BENCH_SECONDS (5) per run, BENCH_WARMUP_SECONDS (2), BENCH_ROUNDS (3), BENCH_CONNECTIONS (64),
// BENCH_THREADS (2), BENCH_RATE (half of nginx's req/s), BENCH_RATE_SECONDS, BENCH_RATE_ROUNDS (2),
// BENCH_TIMEOUT_SECONDS (600).

import { mkdtempSync } from "node:fs";
import http from "node:http";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages } from "../scripts/ensure-tools.ts";
import { benchObjects, startBenchGateway } from "./gateway-control-plane.ts";
import { compileOpenLoop, type OpenLoopResult, runOpenLoop } from "./gateway-open-loop.ts";
import { POLICY_HEADERS, POLICY_NOTE, withPolicies } from "./gateway-policies.ts";
import { type RateResult, runH2load } from "./gateway-rate.ts";
import {
  cleanup,
  median,
  pairedMedian,
  pairedRounds,
  portOf,
  ROOT,
  removeOnCleanup,
  startChild,
  startNginx,
  untilServes,
  verdict,
  verdictSummary,
  wrkPercentile,
} from "./harness.ts";

const env = process.env;
const SECONDS = Number(env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const RATE_ROUNDS = Number(env.BENCH_RATE_ROUNDS ?? 2);
const WARMUP = Number(env.BENCH_WARMUP_SECONDS ?? 2);
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 64);
const THREADS = Number(env.BENCH_THREADS ?? 2);
const RATE_SECONDS = Number(env.BENCH_RATE_SECONDS ?? SECONDS);
const TIMEOUT = Number(env.BENCH_TIMEOUT_SECONDS ?? 600);
const CORES = availableParallelism();

/** Target (d): every gateway policy on, none triggering (bench/gateway-policies.ts). */
const POLICIES = { objects: withPolicies, headers: POLICY_HEADERS, note: POLICY_NOTE };

// ---------------------------------------------------------------- processes

let tempDir: string | undefined;

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(sig, () => console.error(`\nbench:gateway: ${sig}, stopping everything it started`));
}

// ---------------------------------------------------------------- targets

interface Started {
  url: string;
  headers: Record<string, string>;
}

interface Target {
  id: string;
  name: string;
  /** Starts the target and returns where to send the load; absent when not measured. */
  start?: () => Promise<Started>;
  /** Why it is not measured. */
  missing?: string;
}

async function startFastify(upstreamPort: number): Promise<Started> {
  const child = startChild("fastify proxy", process.execPath, [join(ROOT, "bench/gateway-fastify.ts")], {
    UPSTREAM: `http://127.0.0.1:${upstreamPort}`,
  });
  const url = `http://127.0.0.1:${await portOf(child)}/`;
  await untilServes(url, {}, child);
  return { url, headers: {} };
}

// ---------------------------------------------------------------- wrk

interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
  socketErrors: number;
  raw: string;
}

function parseWrk(out: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(out);
  const requests = /(\d+) requests in/.exec(out);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (!rps) throw new Error(`cannot read wrk's output:\n${out}`);
  return {
    rps: Number(rps[1]),
    p50: wrkPercentile(out, "50"),
    p99: wrkPercentile(out, "99"),
    requests: requests ? Number(requests[1]) : 0,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
    raw: out,
  };
}

async function runWrk(wrk: string, target: Started, seconds: number): Promise<WrkResult> {
  const args = [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${seconds}s`, "--timeout", "5s", "--latency"];
  for (const [k, v] of Object.entries(target.headers)) args.push("-H", `${k}: ${v}`);
  args.push(target.url);
  const child = startChild("wrk", wrk, args);
  await child.exited;
  if (child.process.exitCode !== 0)
    throw new Error(`wrk failed (${child.process.exitCode}):\n${child.output}`);
  return parseWrk(child.output);
}

/** One fixed-rate run of a target by each client: the open-loop one (judged) and h2load (shown beside it). */
interface FixedRate {
  open: OpenLoopResult;
  h2load: RateResult;
}

async function runFixedRate(
  clients: { openLoop: string; h2load: string },
  id: string,
  target: Started,
  rate: number,
): Promise<FixedRate> {
  const options = {
    rate,
    seconds: RATE_SECONDS,
    warmupSeconds: Math.max(1, WARMUP),
    connections: CONNECTIONS,
  };
  const open = await runOpenLoop(clients.openLoop, target, options);
  const h2load = await runH2load(clients.h2load, target, {
    ...options,
    logFile: join(tempDir ?? tmpdir(), `h2load-${id}.log`),
  });
  return { open, h2load };
}

// ---------------------------------------------------------------- report

const f0 = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "-");
/** The machine's load averages (1, 5, 15 min), printed with the figures: on a shared machine they say how quiet the run was. */
const load = () =>
  `load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(", ")}`;

/** The statuses of `n` requests over 16 connections: what a target with errors answers. */
async function sampleStatuses(target: Started, n = 400): Promise<string> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const counts = new Map<string, number>();
  const one = () =>
    new Promise<void>((resolve) => {
      const req = http.get(target.url, { agent, headers: target.headers, timeout: 5000 }, (res) => {
        const key = String(res.statusCode);
        counts.set(key, (counts.get(key) ?? 0) + 1);
        res.resume();
        res.on("end", resolve);
        res.on("error", () => resolve());
      });
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", (err) => {
        counts.set(err.message, (counts.get(err.message) ?? 0) + 1);
        resolve();
      });
    });
  for (let i = 0; i < n; i += 16) await Promise.all(Array.from({ length: Math.min(16, n - i) }, one));
  agent.destroy();
  return [...counts].map(([k, v]) => `${k}: ${v}`).join(", ");
}

async function main(): Promise<number> {
  const watchdog = setTimeout(() => {
    console.error(`bench:gateway: still running after ${TIMEOUT} s (BENCH_TIMEOUT_SECONDS); stopping`);
    void cleanup().finally(() => process.exit(1));
  }, TIMEOUT * 1000);
  watchdog.unref();

  const tools = await ensureDebianPackages({ nginx: "nginx", wrk: "wrk", h2load: "nghttp2-client" });
  tempDir = mkdtempSync(join(tmpdir(), "herd-bench-gateway-"));
  removeOnCleanup(tempDir);
  const base = tempDir;
  const openLoop = await compileOpenLoop(base);

  const upstream = startChild("upstream", process.execPath, [join(ROOT, "bench/gateway-upstream.ts")]);
  const upstreamPort = await portOf(upstream);
  const objects = benchObjects(upstreamPort);

  const targets: Target[] = [
    {
      id: "a",
      name: "direct",
      start: async () => ({ url: `http://127.0.0.1:${upstreamPort}/`, headers: {} }),
    },
    {
      id: "b",
      name: "nginx",
      start: async () => ({
        url: (await startNginx(tools.nginx, base, upstreamPort, CORES)).url,
        headers: {},
      }),
    },
    {
      id: "c",
      name: "herd gateway",
      start: () => startBenchGateway({ base, id: "gateway-c", name: "gateway-c", objects }),
    },
    POLICIES
      ? {
          id: "d",
          name: "herd gateway + policies",
          start: () => {
            console.log(`note: ${POLICIES.note}`);
            return startBenchGateway({
              base,
              id: "gateway-d",
              name: "gateway-d",
              objects: POLICIES.objects(objects),
              headers: POLICIES.headers,
            });
          },
        }
      : { id: "d", name: "herd gateway + policies", missing: "the gateway has no policies yet" },
    { id: "e", name: "@fastify/http-proxy", start: () => startFastify(upstreamPort) },
  ];

  console.log(
    `bench:gateway: ${CORES} cores; wrk ${THREADS} threads, ${CONNECTIONS} connections, ` +
      `${WARMUP} s warm-up + ${SECONDS} s per target, ${ROUNDS} rounds (targets in turn, the order reversed every other round); ` +
      `upstream: Node http answering hello (pid ${upstream.process.pid}); ${load()}`,
  );
  const started = new Map<string, Started>();
  for (const target of targets) {
    if (!target.start) {
      console.log(`(${target.id}) not measured: ${target.missing}`);
      continue;
    }
    const s = await target.start();
    await untilServes(s.url, s.headers, undefined);
    started.set(target.id, s);
  }
  const ids = [...started.keys()];
  const name = (id: string) => targets.find((t) => t.id === id)?.name ?? id;
  const sampled = new Set<string>();
  const rounds = await pairedRounds(ids, ROUNDS, async (id, round) => {
    const s = started.get(id) as Started;
    if (WARMUP > 0) await runWrk(tools.wrk, s, WARMUP);
    const r = await runWrk(tools.wrk, s, SECONDS);
    const errors = r.non2xx + r.socketErrors;
    console.log(
      `round ${round} (${id}) ${name(id)}: ${f0(r.rps)} req/s, p50 ${f2(r.p50)} ms, p99 ${f2(r.p99)} ms (${load()})` +
        (errors ? `  ! ${r.non2xx} non-2xx/3xx of ${r.requests}, ${r.socketErrors} socket errors` : ""),
    );
    if (errors && !sampled.has(id)) {
      sampled.add(id);
      // wrk does not say which statuses: rerun the load briefly and sample beside it.
      const rerun = runWrk(tools.wrk, s, 3);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const statuses = await sampleStatuses(s);
      await rerun;
      console.log(`    statuses of 400 requests sent beside a 3 s rerun of the load: ${statuses}`);
    }
    return r;
  });
  /** Per target: the median of its rounds' req/s, p50 and p99, and every round's errors. */
  const results = new Map<string, { rps: number; p50: number; p99: number; errors: number }>();
  for (const id of ids) {
    const runs = rounds.map((r) => r.get(id) as WrkResult);
    results.set(id, {
      rps: median(runs.map((r) => r.rps)),
      p50: median(runs.map((r) => r.p50)),
      p99: median(runs.map((r) => r.p99)),
      errors: runs.reduce((n, r) => n + r.non2xx + r.socketErrors, 0),
    });
  }

  // Second pass: fixed rates, direct vs the gateway. At half of nginx's top rate ((c) and (d)), and at half
  // of (d)'s own top rate: the added p99 of a gateway run at half its capacity, every policy on. In rounds
  // too: each added p99 is the median of the rounds' own differences (gateway − direct, same round).
  // Judged on the open-loop client (evenly spaced requests, latency from the due time); h2load's figure,
  // whose 64 connections send together, is printed beside it (docs/benchmarks.md says why it differs).
  const nginx = results.get("b");
  const rate = env.BENCH_RATE ? Number(env.BENCH_RATE) : nginx ? Math.round(nginx.rps / 2) : Number.NaN;
  const withPoliciesTop = results.get("d");
  const ownRate = withPoliciesTop ? Math.round(withPoliciesTop.rps / 2) : Number.NaN;
  const clients = { openLoop, h2load: tools.h2load };
  const fixedRate = async (wanted: string[], perSecond: number, what: string) => {
    const present = wanted.filter((id) => started.has(id));
    if (!Number.isFinite(perSecond) || perSecond <= 0 || present.length === 0) return [];
    return pairedRounds(present, RATE_ROUNDS, async (id, round) => {
      const r = await runFixedRate(clients, `${id}-${round}`, started.get(id) as Started, perSecond);
      for (const [client, x] of [
        ["open loop", r.open],
        ["h2load", r.h2load],
      ] as const) {
        console.log(
          `round ${round} (${id}) at ${f0(perSecond)} req/s fixed rate (${what}), ${client}: p50 ${f2(x.p50)} ms, ` +
            `p99 ${f2(x.p99)} ms, ${f0(x.achieved)} req/s answered (${load()})` +
            ("clientLagP99" in x
              ? `, written late p99 ${f2(x.sendDelayP99)} ms (by the client's own lag ${f2(x.clientLagP99)})`
              : "") +
            (x.errors + x.non2xx ? `  ! ${x.non2xx} non-2xx, ${x.errors} socket errors or timeouts` : "") +
            (x.reached ? "" : `  ! the rate was not held: ${x.why}`),
        );
      }
      return r;
    });
  };
  const rateRounds = await fixedRate(["a", "c", "d"], rate, "half of nginx's top");
  // Direct, nginx and (d) back to back: the three see about the same moment of a busy machine, and nginx's
  // added p99 at the same rate shows how much of (d)'s is the machine's (each hop waits for a core).
  const ownRateRounds = await fixedRate(["a", "b", "d"], ownRate, "half of (d)'s top");

  // The table: the median of the rounds.
  console.log("");
  console.log(
    `${"target (median of rounds)".padEnd(30)}${"req/s".padStart(10)}${"p50 ms".padStart(10)}${"p99 ms".padStart(10)}${"errors".padStart(10)}`,
  );
  for (const target of targets) {
    const label = `(${target.id}) ${target.name}`;
    const r = results.get(target.id);
    if (!r) {
      console.log(`${label.padEnd(30)}  not measured: ${target.missing ?? "failed"}`);
      continue;
    }
    console.log(
      `${label.padEnd(30)}${f0(r.rps).padStart(10)}${f2(r.p50).padStart(10)}${f2(r.p99).padStart(10)}` +
        `${String(r.errors).padStart(10)}${r.errors ? "  ! errors: figures not comparable" : ""}`,
    );
  }
  for (const [rs, perSecond] of [
    [rateRounds, rate],
    [ownRateRounds, ownRate],
  ] as const) {
    for (const id of rs[0]?.keys() ?? []) {
      for (const client of ["open", "h2load"] as const) {
        const runs = rs.map((r) => (r.get(id) as FixedRate)[client]);
        const label = `(${id}) ${f0(perSecond)}/s ${client === "open" ? "open loop" : "h2load"}`;
        console.log(
          `${label.padEnd(30)}${f0(median(runs.map((r) => r.achieved))).padStart(10)}${f2(median(runs.map((r) => r.p50))).padStart(10)}` +
            `${f2(median(runs.map((r) => r.p99))).padStart(10)}${String(runs.reduce((n, r) => n + r.errors + r.non2xx, 0)).padStart(10)}`,
        );
      }
    }
  }

  // The ratios, against the issue's targets: each the median of the rounds' own ratios.
  console.log("");
  const failedRequests = (...sides: string[]) => {
    const n = sides.reduce((sum, id) => sum + (results.get(id)?.errors ?? 0), 0);
    return n > 0 && `${n} requests of (${sides.join("), (")}) failed`;
  };
  /** One ratio; `judged` false: shown beside the others, with no verdict of its own. */
  const ratio = (num: string, den: string, min: number, what: string, judged = true) => {
    const name = `(${num})/(${den}) req/s`;
    if (!results.has(num) || !results.has(den)) {
      const missing = !results.has(num) ? num : den;
      console.log(`${name.padEnd(22)} not measured: (${missing}) has no figure  [${what}]`);
      return;
    }
    const x = pairedMedian(rounds, (r) => (r.get(num) as WrkResult).rps / (r.get(den) as WrkResult).rps);
    const failed = failedRequests(num, den);
    const judgement = judged
      ? verdict(`${name} ${what}`, x.median >= min, failed)
      : `${x.median >= min ? "would meet" : "would miss"}${failed ? ` (${failed})` : ""}`;
    console.log(
      `${name.padEnd(22)} ${x.median.toFixed(2)}× (rounds: ${x.each.map((v) => v.toFixed(2)).join(" ")})  ${judgement}  [${what}]`,
    );
  };
  // (c) against the targets set for (d): judged only when (d) has no figure.
  ratio("c", "b", 0.6, "issue: (d) ≥ 0.6 × nginx; shown for (c)", !results.has("d"));
  ratio("c", "e", 1.5, "issue: (d) ≥ 1.5 × the Node peer; shown for (c)", !results.has("d"));
  if (results.has("d")) {
    ratio("d", "b", 0.6, "issue: (d) ≥ 0.6 × nginx");
    ratio("d", "e", 1.5, "issue: (d) ≥ 1.5 × the Node peer");
    ratio("d", "c", 0.9, "issue: (d) within 10% of (c)");
  } else {
    const d = targets.find((t) => t.id === "d");
    console.log(
      `${"(d)/(c) req/s".padEnd(22)} not measured: ${d?.missing ?? "(d) failed"}  [issue: (d) within 10% of (c)]`,
    );
  }
  const signed = (v: number) => `${v >= 0 ? "+" : ""}${f2(v)}`;
  /**
   * One added p99 (target − direct, median of the rounds' own differences), judged (when `judged`) on the
   * open-loop client, h2load's figure from the same rounds on the line below. Returns the open-loop median.
   */
  const added = (
    name: string,
    rs: Map<string, FixedRate>[],
    id: string,
    perSecond: number,
    goal: string,
    judged: boolean,
  ): number => {
    if (rs.length === 0 || !rs[0]?.has("a") || !rs[0]?.has(id)) {
      console.log(`${name.padEnd(26)} not measured (no top rate to halve, or a target failed)  [${goal}]`);
      return Number.NaN;
    }
    const of = (client: keyof FixedRate) => {
      const unheld = rs
        .flatMap((r) => [r.get("a")?.[client], r.get(id)?.[client]])
        .find((r) => r && !r.reached);
      const ms = pairedMedian(
        rs,
        (r) => (r.get(id) as FixedRate)[client].p99 - (r.get("a") as FixedRate)[client].p99,
      );
      const failed = rs.reduce(
        (n, r) => n + (r.get(id) as FixedRate)[client].errors + (r.get(id) as FixedRate)[client].non2xx,
        0,
      );
      // The open-loop client measures its own lag: over 1 ms at the p99, on either side, the figure is the busy machine's.
      const lag = Math.max(
        ...rs.flatMap((r) => [r.get("a")?.open.clientLagP99 ?? 0, r.get(id)?.open.clientLagP99 ?? 0]),
      );
      const notDone =
        (unheld && `${f0(perSecond)} req/s was not held (${unheld.why})`) ||
        (failed > 0 && `${failed} requests failed`) ||
        (client === "open" &&
          lag > 1 &&
          `the client itself was late: its own lag p99 ${f2(lag)} ms, over 1 ms`) ||
        // Direct's p99 more than 1 ms above the proxy's: one side's tail was the machine's, not a pass.
        (ms.median < -1 && `below −1 ms: noise (direct's p99 above the proxy's)`);
      return { ms, notDone, rounds: `(${ms.each.map(signed).join(" ")})` };
    };
    const open = of("open");
    const figure = `${name.padEnd(26)} ${signed(open.ms.median)} ms at ${f0(perSecond)} req/s, open loop, median of rounds ${open.rounds}`;
    console.log(
      judged
        ? `${figure}  ${verdict(`${name} ${goal}`, open.ms.median <= 1, open.notDone)}  [${goal}]`
        : `${figure}${open.notDone ? `  (${open.notDone})` : ""}  [${goal}]`,
    );
    const h2 = of("h2load");
    console.log(
      `${"".padEnd(26)} ${signed(h2.ms.median)} ms with h2load, same rounds ${h2.rounds}${h2.notDone ? `  (${h2.notDone})` : ""}` +
        "  [shown, not judged: its connections send together]",
    );
    return open.notDone ? Number.NaN : open.ms.median;
  };
  for (const id of ["c", "d"]) {
    added(`(${id}) added p99 over direct`, rateRounds, id, rate, "≤ 1 ms at half of nginx's top rate", true);
  }
  const peer = added(
    "(b) nginx, same rate",
    ownRateRounds,
    "b",
    ownRate,
    "the peer at (d)'s own half rate, for comparison",
    false,
  );
  const own = added(
    "(d) added p99, own half",
    ownRateRounds,
    "d",
    ownRate,
    "issue 11: ≤ 1 ms at half of (d)'s own top rate, every policy on",
    true,
  );
  // The ratio to the peer: meaningful only when nginx adds something measurable.
  console.log(
    `${"(d)/(b) added p99".padEnd(26)} ` +
      (Number.isFinite(own) && peer >= 0.05
        ? `${(own / peer).toFixed(1)}× nginx's (${signed(own)} against ${signed(peer)} ms, open loop)`
        : `no ratio: (d) ${signed(own)} ms, nginx ${signed(peer)} ms (one is not counted, or nginx adds under 0.05 ms)`),
  );
  console.log(`(${load()} at the end)`);
  console.log(
    "note: everything (wrk, the upstream, the proxy under test) shares this machine's cores; wrk counts non-2xx/3xx statuses.",
  );
  return verdictSummary("bench:gateway");
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`bench:gateway: ${err instanceof Error ? err.message : String(err)}`);
} finally {
  await cleanup();
}
process.exit(code);
