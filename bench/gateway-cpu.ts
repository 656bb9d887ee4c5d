// `npm run bench:gateway-cpu`: CPU time per proxied request, in the proxy's own
// processes, for the herd gateway, nginx and @fastify/http-proxy, in one run.
//
// Why CPU time and not req/s: on a small machine shared with other work (the
// load generator, the upstream, other jobs) req/s moves with whoever else has
// the cores; the CPU a proxy spends per request moves much less. The figure is
// the proxy's process group's utime + stime (from /proc, all its processes:
// nginx's master and workers, the gateway's primary and workers) across a wrk
// run, divided by the requests wrk completed.
//
// Each proxy runs one worker process (nginx `worker_processes 1`, `herd gateway
// --workers 1`; Fastify is one process anyway), so the figures compare the
// proxies' per-request cost, not how many cores they use.
//
// Env: BENCH_SECONDS (8) per target, BENCH_WARMUP_SECONDS (2), BENCH_CONNECTIONS (32),
// BENCH_ROUNDS (3: every target measured in turn each round, the order reversed every other round;
// each ratio is the median of the rounds' own ratios). A verdict counts only when no request failed;
// `--strict`: exit 1 when a target is missed or not counted.
// BENCH_BASELINE=DIR also runs (c) and (d) from another checkout of herd (e.g. the main branch) as
// (c0) and (d0), in the same rounds, and prints each gateway's ratio to its baseline.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages } from "../scripts/ensure-tools.ts";
import type { StoredObject } from "../src/store/store.ts";
import { benchObjects, startBenchGateway } from "./gateway-control-plane.ts";
import { POLICY_HEADERS, POLICY_NOTE, withPolicies } from "./gateway-policies.ts";
import {
  cleanup,
  type Measured,
  measure as measureTarget,
  median,
  pairedMedian,
  pairedRounds,
  portOf,
  ROOT,
  removeOnCleanup,
  startChild,
  startNginx,
  type Target,
  untilServes,
  verdict,
  verdictSummary,
} from "./harness.ts";

const env = process.env;
const SECONDS = Number(env.BENCH_SECONDS ?? 8);
const WARMUP = Number(env.BENCH_WARMUP_SECONDS ?? 2);
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const BASELINE = env.BENCH_BASELINE;

async function startFastify(upstreamPort: number): Promise<Target> {
  const child = startChild("fastify", process.execPath, [join(ROOT, "bench/gateway-fastify.ts")], {
    UPSTREAM: `http://127.0.0.1:${upstreamPort}`,
  });
  const url = `http://127.0.0.1:${await portOf(child)}/`;
  await untilServes(url, {}, child);
  return { id: "e", name: "@fastify/http-proxy", url, headers: {}, child };
}

/** A `herd gateway` with one worker as a measured target. */
async function startGateway(
  base: string,
  id: string,
  name: string,
  objects: StoredObject[],
  headers: Record<string, string> = {},
  root = ROOT,
): Promise<Target> {
  const g = await startBenchGateway({ base, id, name, objects, headers, root, args: ["--workers", "1"] });
  return { id, name, ...g };
}

const measure = (wrk: string, target: Target): Promise<Measured> =>
  measureTarget(wrk, target, { seconds: SECONDS, warmupSeconds: WARMUP, connections: CONNECTIONS });

async function main(): Promise<void> {
  const tools = await ensureDebianPackages({ nginx: "nginx", wrk: "wrk" });
  const tempDir = mkdtempSync(join(tmpdir(), "herd-bench-cpu-"));
  removeOnCleanup(tempDir);
  const upstream = startChild("upstream", process.execPath, [join(ROOT, "bench/gateway-upstream.ts")]);
  const upstreamPort = await portOf(upstream);
  const objects = benchObjects(upstreamPort);
  const targets = [
    {
      id: "b",
      name: "nginx (1 worker)",
      headers: {},
      ...(await startNginx(tools.nginx, tempDir, upstreamPort, 1)),
    },
    await startGateway(tempDir, "c", "herd gateway (1 worker)", objects),
    // Each baseline right beside its counterpart, so a pair sees the same moment of a busy machine.
    ...(BASELINE === undefined
      ? []
      : [await startGateway(tempDir, "c0", "(c) from BENCH_BASELINE", objects, {}, BASELINE)]),
    await startGateway(tempDir, "d", "herd gateway + policies", withPolicies(objects), POLICY_HEADERS),
    ...(BASELINE === undefined
      ? []
      : [
          await startGateway(
            tempDir,
            "d0",
            "(d) from BENCH_BASELINE",
            withPolicies(objects),
            POLICY_HEADERS,
            BASELINE,
          ),
        ]),
    await startFastify(upstreamPort),
  ];
  console.log(`note: ${POLICY_NOTE}`);
  console.log(
    `bench:gateway-cpu: wrk 1 thread, ${CONNECTIONS} connections, ${WARMUP} s warm-up + ${SECONDS} s per target, ` +
      `${ROUNDS} rounds; CPU of each proxy's processes (utime + stime) / requests`,
  );
  // Rounds paired in time: every target in turn, the order reversed every other round; each ratio is
  // the median of the rounds' own ratios (CPU per request of the two sides in the same round).
  const byId = new Map(targets.map((t) => [t.id, t]));
  const rounds = await pairedRounds(
    targets.map((t) => t.id),
    ROUNDS,
    async (id, round) => {
      const target = byId.get(id) as Target;
      const m = await measure(tools.wrk, target);
      console.log(
        `round ${round} (${target.id}) ${target.name}: ${m.usPerRequest.toFixed(1)} µs CPU/request, ` +
          `${Math.round(m.rps)} req/s${m.errors ? `  ! ${m.errors} errors` : ""}`,
      );
      return m;
    },
  );
  const of = (id: string) => rounds.map((r) => r.get(id) as Measured);
  console.log("");
  console.log(
    `${"target (median of rounds)".padEnd(32)}${"µs CPU/req".padStart(12)}${"req/s".padStart(10)}${"errors".padStart(8)}`,
  );
  for (const target of targets) {
    const runs = of(target.id);
    console.log(
      `(${target.id}) ${target.name}`.padEnd(32) +
        median(runs.map((m) => m.usPerRequest))
          .toFixed(1)
          .padStart(12) +
        String(Math.round(median(runs.map((m) => m.rps)))).padStart(10) +
        String(runs.reduce((n, m) => n + m.errors, 0)).padStart(8),
    );
  }
  console.log("");
  // Per core, req/s is the inverse of CPU per request: these ratios are the throughput ratios at equal cores.
  const compare = (label: string, den: string, num: string, goal: string, ok: (x: number) => boolean) => {
    const x = pairedMedian(
      rounds,
      (r) => (r.get(den) as Measured).usPerRequest / (r.get(num) as Measured).usPerRequest,
    );
    const failed = [...of(den), ...of(num)].reduce((n, m) => n + m.errors, 0);
    const judged = goal
      ? `  ${verdict(`${label} ${goal}`, ok(x.median), failed > 0 && `${failed} requests failed`)}  [${goal}]`
      : "";
    console.log(
      `${label.padEnd(16)}${x.median.toFixed(2)}× (${den})'s requests per CPU second, median of rounds (${x.each.map((v) => v.toFixed(2)).join(" ")})${judged}`,
    );
  };
  compare("(d) vs nginx:", "b", "d", "issue: ≥ 0.5×", (x) => x >= 0.5);
  compare("(d) vs fastify:", "e", "d", "issue: ≥ 1.5×", (x) => x >= 1.5);
  compare("(d) vs (c):", "c", "d", "issue: within 10%", (x) => x >= 0.9);
  if (BASELINE !== undefined) {
    compare("(c) vs (c0):", "c0", "c", "", () => true);
    compare("(d) vs (d0):", "d0", "d", "", () => true);
  }
}

let code = 1;
try {
  await main();
  code = verdictSummary("bench:gateway-cpu");
} catch (err) {
  console.error(`bench:gateway-cpu: ${err instanceof Error ? err.message : String(err)}`);
} finally {
  await cleanup();
}
process.exit(code);
