// The gateway's throughput cost of tracing: the `tracing` section of
// `npm run bench:telemetry` (bench/telemetry.ts).
//
// Two identical gateways (`herd gateway --workers 1`, each its own process
// group) proxy to the same upstream; one with `--trace-sample 0`, one with
// `--trace-sample 1` (a span per request, shipped in batches to the span
// ingest of a real control plane started in this process;
// the stand-in that feeds the gateways their routes relays the posts to it).
// wrk drives them in turn, round after round; the figure per gateway is its
// process group's CPU (utime + stime) per request; the cost is how much more
// CPU a traced request takes, each traced run against the untraced run just
// before it, the median over the rounds (the best of each side is shown too).
// req/s is shown
// too, but on a shared 2-core machine it mostly says who else had the cores —
// among them the control plane ingesting the spans, whose CPU per traced
// request (this process's CPU during the traced runs beyond the untraced ones:
// the ingest, SQLite and the relay) is reported beside.
//
// Env: BENCH_SECONDS (5) per run, BENCH_WARMUP_SECONDS (2), BENCH_CONNECTIONS (32), BENCH_ROUNDS (3);
// BENCH_CPU_PROF=<dir>: the gateways write V8 CPU profiles there (node --cpu-prof) when they stop;
// BENCH_INGEST=off: the stand-in answers the span posts 404 instead of relaying them (the gateway
// still records, writes and posts every batch), to see the gateway's cost without the ingest's
// competition for the cores.

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
  /** Spans the ingest refused (429: its queue was full; the gateway retries those batches). */
  spansRefused: number;
  /** Per round: traced CPU per request over untraced − 1, in %. */
  pairedCosts: number[];
  /** This process's (the control plane's) extra CPU per traced request, µs; null with BENCH_INGEST=off. */
  ingestUsPerRequest: number | null;
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
  const ingest = env.BENCH_INGEST !== "off";
  const controlPlane = await startBenchControlPlane(
    TOKEN,
    benchObjects(await portOf(upstream)),
    ingest ? { url: `${server.url}/api/v1/traces/gateway`, token: server.traces.ingestToken } : undefined,
  );
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
  // This process's CPU per request during each gateway's runs (warm-up included on both sides).
  const own = new Map<string, { cpu: number; requests: number }>();
  const pairedCosts: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const pair: number[] = [];
    for (const target of [off, on]) {
      const cpu0 = process.cpuUsage();
      const m = await measure(tools.wrk, target, run);
      const used = process.cpuUsage(cpu0);
      const sum = own.get(target.id) ?? { cpu: 0, requests: 0 };
      sum.cpu += used.user + used.system;
      sum.requests += m.rps * (SECONDS + WARMUP);
      own.set(target.id, sum);
      console.log(
        `    round ${round} ${target.name}: ${m.usPerRequest.toFixed(1)} µs CPU/request, ${Math.round(m.rps)} req/s` +
          `${m.errors ? `  ! ${m.errors} errors` : ""}`,
      );
      pair.push(m.usPerRequest);
      const kept = best.get(target.id);
      if (!kept || m.usPerRequest < kept.usPerRequest) best.set(target.id, m);
    }
    pairedCosts.push(((pair[1] as number) / (pair[0] as number) - 1) * 100);
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
  const perRequest = (id: string) => {
    const o = own.get(id) as { cpu: number; requests: number };
    return o.cpu / Math.max(1, o.requests);
  };
  return {
    pairedCosts,
    spansRefused: server.traces.store.stats().refused,
    ingestUsPerRequest: ingest ? perRequest("on") - perRequest("off") : null,
    off: best.get("off") as Measured,
    on: best.get("on") as Measured,
    spansStored,
    rounds: ROUNDS,
    seconds: SECONDS,
    connections: CONNECTIONS,
  };
}
