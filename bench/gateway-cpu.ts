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
// BENCH_ROUNDS (2: targets measured in turn, each round; the lowest figure is kept).
// BENCH_BASELINE=DIR also runs (c) and (d) from another checkout of herd (e.g. the main branch) as
// (c0) and (d0), in the same rounds, and prints each gateway's ratio to its baseline.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages } from "../scripts/ensure-tools.ts";
import type { StoredObject } from "../src/store/store.ts";
import { BENCH_HOST, benchObjects, startBenchControlPlane } from "./gateway-control-plane.ts";
import { POLICY_HEADERS, POLICY_NOTE, withPolicies } from "./gateway-policies.ts";
import {
  cleanup,
  freePort,
  type Measured,
  measure as measureTarget,
  onCleanup,
  portOf,
  ROOT,
  removeOnCleanup,
  startChild,
  startNginx,
  type Target,
  untilServes,
} from "./harness.ts";

const env = process.env;
const SECONDS = Number(env.BENCH_SECONDS ?? 8);
const WARMUP = Number(env.BENCH_WARMUP_SECONDS ?? 2);
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 2);
const TOKEN = "bench-token";
const BASELINE = env.BENCH_BASELINE;

async function startFastify(upstreamPort: number): Promise<Target> {
  const child = startChild("fastify", process.execPath, [join(ROOT, "bench/gateway-fastify.ts")], {
    UPSTREAM: `http://127.0.0.1:${upstreamPort}`,
  });
  const url = `http://127.0.0.1:${await portOf(child)}/`;
  await untilServes(url, {}, child);
  return { id: "e", name: "@fastify/http-proxy", url, headers: {}, child };
}

async function startGateway(
  base: string,
  id: string,
  name: string,
  objects: StoredObject[],
  extraHeaders: Record<string, string> = {},
  root = ROOT,
): Promise<Target> {
  const controlPlane = await startBenchControlPlane(TOKEN, objects);
  onCleanup(controlPlane.close);
  const port = await freePort();
  const child = startChild(name, process.execPath, [
    join(root, "src/cli/main.ts"),
    "gateway",
    ...["--server", controlPlane.url, "--token", TOKEN, "--port", String(port)],
    ...["--host", "127.0.0.1", "--data", join(base, `${id}-data`), "--workers", "1"],
    ...["--metrics-port", "0"],
  ]);
  const url = `http://127.0.0.1:${port}/`;
  const headers = { Host: BENCH_HOST, ...extraHeaders };
  await untilServes(url, headers, child);
  return { id, name, url, headers, child };
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
    // Each baseline right after its counterpart, so a pair sees the same moment of a busy machine.
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
  const best = new Map<string, Measured>();
  /** Each round's figure per target, for the paired baseline ratios. */
  const rounds: Map<string, number>[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    rounds.push(new Map());
    // With a baseline, every other round measures the pair the other way round, so neither side
    // always runs first.
    for (const target of round % 2 === 0 ? swapPairs(targets) : targets) {
      const m = await measure(tools.wrk, target);
      console.log(
        `round ${round} (${target.id}) ${target.name}: ${m.usPerRequest.toFixed(1)} µs CPU/request, ` +
          `${Math.round(m.rps)} req/s${m.errors ? `  ! ${m.errors} errors` : ""}`,
      );
      rounds[round - 1].set(target.id, m.usPerRequest);
      const kept = best.get(target.id);
      if (!kept || m.usPerRequest < kept.usPerRequest) best.set(target.id, m);
    }
  }
  console.log("");
  console.log(`${"target".padEnd(32)}${"µs CPU/req".padStart(12)}${"req/s".padStart(10)}`);
  for (const target of targets) {
    const m = best.get(target.id)!;
    console.log(
      `(${target.id}) ${target.name}`.padEnd(32) +
        m.usPerRequest.toFixed(1).padStart(12) +
        String(Math.round(m.rps)).padStart(10),
    );
  }
  const us = (id: string) => best.get(id)!.usPerRequest;
  console.log("");
  // Per core, req/s is the inverse of CPU per request: these ratios are the throughput ratios at equal cores.
  console.log(
    `(d) vs nginx:   ${(us("b") / us("d")).toFixed(2)}× nginx's requests per CPU second  [issue: ≥ 0.5×]`,
  );
  console.log(
    `(d) vs fastify: ${(us("e") / us("d")).toFixed(2)}× the Node peer's requests per CPU second  [issue: ≥ 1.5×]`,
  );
  console.log(`(d) vs (c):     ${(us("c") / us("d")).toFixed(2)}×  [issue: within 10%]`);
  if (BASELINE !== undefined) {
    // The ratio of each round's adjacent pair, then their median: steadier than best against best
    // when other work comes and goes.
    const paired = (id: string) => {
      const ratios = rounds.map((r) => (r.get(`${id}0`) ?? 0) / (r.get(id) ?? 1)).sort((a, b) => a - b);
      const mid = ratios.length >> 1;
      const median = ratios.length % 2 ? ratios[mid] : (ratios[mid - 1] + ratios[mid]) / 2;
      return `best ${(us(`${id}0`) / us(id)).toFixed(2)}×, median of rounds ${median.toFixed(2)}× (${ratios.map((x) => x.toFixed(2)).join(" ")})`;
    };
    console.log(`(c) vs (c0):    ${paired("c")} the baseline's requests per CPU second`);
    console.log(`(d) vs (d0):    ${paired("d")} the baseline's requests per CPU second`);
  }
}

/** The targets with each baseline (`c0`) moved before its counterpart (`c`). */
function swapPairs(targets: Target[]): Target[] {
  const out = [...targets];
  for (let i = 1; i < out.length; i++) {
    if (out[i].id === `${out[i - 1].id}0`) [out[i - 1], out[i]] = [out[i], out[i - 1]];
  }
  return out;
}

let code = 1;
try {
  await main();
  code = 0;
} catch (err) {
  console.error(`bench:gateway-cpu: ${err instanceof Error ? err.message : String(err)}`);
} finally {
  await cleanup();
}
process.exit(code);
