// The gateway's throughput cost of tracing: the `tracing` section of
// `npm run bench:telemetry` (bench/telemetry.ts).
//
// Two identical gateways (`herd gateway --workers 1`, each its own process
// group) proxy to the same upstream; one with `--trace-sample 0`, one with
// `--trace-sample 1` (a server and a client span per request, shipped in
// batches to the OTLP ingest of a real control plane started in this process;
// the stand-in that feeds the gateways their routes relays the posts to it).
// wrk drives them in turn, round after round; the figure per gateway is its
// process group's CPU (utime + stime) per request, the lowest over the rounds,
// and the cost is how much more CPU a traced request takes. req/s is shown
// too, but on a shared 2-core machine it mostly says who else had the cores.
//
// Env: BENCH_SECONDS (5) per run, BENCH_WARMUP_SECONDS (2), BENCH_CONNECTIONS (32), BENCH_ROUNDS (3);
// BENCH_CPU_PROF=<dir>: the gateways write V8 CPU profiles there (node --cpu-prof) when they stop.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages } from "../scripts/ensure-tools.ts";
import { startServer } from "../src/api/server.ts";
import { silentLogger } from "../src/common/log.ts";
import { BENCH_HOST, benchObjects, startBenchControlPlane } from "./gateway-control-plane.ts";
import {
  freePort,
  type Measured,
  measure,
  onCleanup,
  portOf,
  ROOT,
  removeOnCleanup,
  startChild,
  type Target,
  untilServes,
} from "./harness.ts";

const env = process.env;
const SECONDS = Number(env.BENCH_SECONDS ?? 5);
const WARMUP = Number(env.BENCH_WARMUP_SECONDS ?? 2);
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const TOKEN = "bench-token";

export interface TracingCost {
  off: Measured;
  on: Measured;
  /** Spans the control plane stored from the traced gateway. */
  spansStored: number;
  rounds: number;
  seconds: number;
  connections: number;
}

/** Measures both gateways; everything it starts is ended by the harness's cleanup(). */
export async function measureTracingCost(): Promise<TracingCost> {
  const tools = await ensureDebianPackages({ wrk: "wrk" });
  const base = mkdtempSync(join(tmpdir(), "herd-bench-tracing-"));
  removeOnCleanup(base);
  const server = await startServer({
    dataDir: join(base, "control-plane"),
    port: 0,
    logger: silentLogger,
    metrics: { scrapeIntervalMs: 3600_000 },
  });
  onCleanup(() => server.close());
  const upstream = startChild("upstream", process.execPath, [join(ROOT, "bench/gateway-upstream.ts")]);
  const controlPlane = await startBenchControlPlane(TOKEN, benchObjects(await portOf(upstream)), {
    url: `${server.url}/api/v1/traces/otlp/v1/traces`,
    token: server.traces.ingestToken,
  });
  onCleanup(controlPlane.close);

  const gateway = async (id: string, sample: number): Promise<Target> => {
    const port = await freePort();
    const profile = env.BENCH_CPU_PROF ? ["--cpu-prof", "--cpu-prof-dir", env.BENCH_CPU_PROF] : [];
    const child = startChild(`gateway ${id}`, process.execPath, [
      ...profile,
      join(ROOT, "src/cli/main.ts"),
      "gateway",
      ...["--server", controlPlane.url, "--token", TOKEN, "--port", String(port)],
      ...["--host", "127.0.0.1", "--data", join(base, `${id}-data`), "--workers", "1"],
      ...["--metrics-port", "0", "--trace-sample", String(sample)],
    ]);
    const url = `http://127.0.0.1:${port}/`;
    const headers = { Host: BENCH_HOST };
    await untilServes(url, headers, child);
    return { id, name: `gateway --trace-sample ${sample}`, url, headers, child };
  };
  const off = await gateway("off", 0);
  const on = await gateway("on", 1);

  const run = { seconds: SECONDS, warmupSeconds: WARMUP, connections: CONNECTIONS };
  const best = new Map<string, Measured>();
  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of [off, on]) {
      const m = await measure(tools.wrk, target, run);
      console.log(
        `    round ${round} ${target.name}: ${m.usPerRequest.toFixed(1)} µs CPU/request, ${Math.round(m.rps)} req/s` +
          `${m.errors ? `  ! ${m.errors} errors` : ""}`,
      );
      const kept = best.get(target.id);
      if (!kept || m.usPerRequest < kept.usPerRequest) best.set(target.id, m);
    }
  }
  // The spans made it: the batches left within a second or two, and the ingest stores them within its flush.
  let spansStored = 0;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    spansStored = server.traces.store.stats().written;
    if (server.traces.store.stats().queuedSpans === 0 && spansStored > 0) {
      await new Promise((r) => setTimeout(r, 1500));
      if (server.traces.store.stats().written === spansStored) break;
    } else await new Promise((r) => setTimeout(r, 200));
  }
  return {
    off: best.get("off") as Measured,
    on: best.get("on") as Measured,
    spansStored,
    rounds: ROUNDS,
    seconds: SECONDS,
    connections: CONNECTIONS,
  };
}
