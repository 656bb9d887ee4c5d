// The gateway's throughput cost of tracing: the `tracing` section of
// `npm run bench:telemetry` (bench/telemetry.ts).
//
// Two identical gateways (`herd gateway --workers 1`, each its own process
// group) proxy to the same upstream; one with `--trace-sample 0`, one with
// `--trace-sample 1` (a span per request, shipped in batches to the span
// ingest of a real control plane started in this process; the stand-in that
// feeds the gateways their routes relays the posts to it). Two passes, each
// in rounds that take the two gateways in turn:
//
// 1. Fixed rate (the headline): h2load sends RATE req/s to both at once (a
//    1 s warm-up, then SECONDS measured), so whatever slows the machine for a
//    moment slows both alike. The figure per gateway is its process
//    group's CPU (utime + stime) per request. A gateway's throughput is its
//    cores divided by its CPU per request, so the extra CPU a traced request
//    takes is the throughput it costs; the median of the rounds' paired
//    comparisons is the figure. The gateways are pinned to CPU 0 and
//    everything else (this process with the control plane storing the spans,
//    the upstream, h2load) to CPU 1, as when the control plane runs on its
//    own machine: the span store works for real, but not on the gateway's
//    core (BENCH_PIN=off shares both cores). The control plane's CPU per
//    traced request is reported beside.
// 2. Saturated: wrk, as many requests as the machine serves. On a 2-core
//    machine running the gateway, the upstream, wrk and the span store at
//    once, this says what tracing costs the machine as a whole (the span
//    store's work included): req/s and CPU per request of both gateways.
//
// Env: BENCH_SECONDS (5) per run, BENCH_WARMUP_SECONDS (2, the saturated pass), BENCH_CONNECTIONS (32),
// BENCH_ROUNDS (7 fixed-rate, 3 saturated), BENCH_TRACING_RATE (2500 req/s), BENCH_PIN=off;
// BENCH_CPU_PROF=<dir>: the gateways write V8 CPU profiles there (node --cpu-prof) when they stop;
// BENCH_INGEST=off: the stand-in answers the span posts 404 instead of relaying them (the gateway
// still records, writes and posts every batch), to see the gateway's cost without the ingest's
// competition for the cores.

import { mkdtempSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages } from "../scripts/ensure-tools.ts";
import { createToken } from "../src/api/auth.ts";
import { silentLogger } from "../src/common/log.ts";
import { startServer } from "../src/daemons/control-plane.ts";
import { BENCH_HOST, benchObjects, startBenchControlPlane } from "./gateway-control-plane.ts";
import { runH2load } from "./gateway-rate.ts";
import {
  freePort,
  groupCpuSeconds,
  type Measured,
  measure,
  onCleanup,
  pinCpus,
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
const RATE_ROUNDS = Number(env.BENCH_ROUNDS ?? 7);
const SATURATED_ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const RATE = Number(env.BENCH_TRACING_RATE ?? 2500);
const TOKEN = "bench-token";

/** One gateway's CPU per request in one run, and what the control plane (this process) used meanwhile. */
interface Run {
  usPerRequest: number;
  rps: number;
  errors: number;
  /** This process's CPU per request of the run, µs. */
  ownUsPerRequest: number;
}

/** One pass: both gateways, round after round. */
export interface TracingPass {
  /** The best run of each side. */
  off: Measured;
  on: Measured;
  /** Per round: traced CPU per request over untraced − 1, in %. */
  pairedCosts: number[];
  /** Median of pairedCosts. */
  cost: number;
  /** Median over the rounds of the traced req/s under the untraced − 1, in %. */
  rpsCost: number;
  /** This process's (the control plane's) extra CPU per traced request, µs; null with BENCH_INGEST=off. */
  ingestUsPerRequest: number | null;
  rounds: number;
  /** Failed requests (errors and non-2xx) over every run of both sides: more than 0 voids the verdict. */
  errors: number;
  /** Requests the traced gateway answered in the measured windows (each should make a span). */
  tracedRequests: number;
}

export interface TracingCost {
  /** h2load at `rate` req/s: the headline. */
  fixed: TracingPass;
  rate: number;
  /** Measured fixed-rate runs that did not hold `rate`: more than 0 voids the fixed-rate verdict. */
  unheld: number;
  /** Whether the fixed-rate pass had the gateways on CPU 0 and the rest on CPU 1. */
  pinned: boolean;
  /** wrk, saturating the machine. */
  saturated: TracingPass;
  /** Spans the control plane stored from the traced gateway. */
  spansStored: number;
  /** Spans the ingest refused (429: its queue was full; the gateway retries those batches). */
  spansRefused: number;
  seconds: number;
  connections: number;
}

/** Measures both gateways; everything it starts is ended by the harness's cleanup(). */
export async function measureTracingCost(): Promise<TracingCost> {
  const tools = await ensureDebianPackages({ wrk: "wrk", h2load: "nghttp2-client" });
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
    ingest
      ? {
          url: `${server.url}/api/v1/traces/gateway`,
          token: (await createToken(server.store, { name: "bench", kind: "gateway" })).secret,
        }
      : undefined,
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

  /** Rounds of `measureRound`, which measures both gateways (one after the other, or at once). */
  const pass = async (
    label: string,
    rounds: number,
    measureRound: (round: number) => Promise<{ off: Run; on: Run }>,
  ): Promise<TracingPass> => {
    const offRuns: Run[] = [];
    const onRuns: Run[] = [];
    for (let round = 1; round <= rounds; round++) {
      const both = await measureRound(round);
      offRuns.push(both.off);
      onRuns.push(both.on);
      for (const [target, m] of [
        [off, both.off],
        [on, both.on],
      ] as const) {
        console.log(
          `    ${label} round ${round} ${target.name}: ${m.usPerRequest.toFixed(1)} µs CPU/request, ${Math.round(m.rps)} req/s` +
            `${m.errors ? `  ! ${m.errors} errors` : ""}`,
        );
      }
    }
    const paired = (f: (o: Run, n: Run) => number) => median(offRuns.map((o, i) => f(o, onRuns[i] as Run)));
    const best = (rs: Run[]) => rs.reduce((a, b) => (b.usPerRequest < a.usPerRequest ? b : a));
    return {
      off: best(offRuns),
      on: best(onRuns),
      pairedCosts: offRuns.map((o, i) => ((onRuns[i] as Run).usPerRequest / o.usPerRequest - 1) * 100),
      cost: paired((o, n) => (n.usPerRequest / o.usPerRequest - 1) * 100),
      rpsCost: paired((o, n) => (1 - n.rps / o.rps) * 100),
      ingestUsPerRequest: ingest ? paired((o, n) => n.ownUsPerRequest - o.ownUsPerRequest) : null,
      rounds,
      errors: [...offRuns, ...onRuns].reduce((n, r) => n + r.errors, 0),
      tracedRequests: Math.round(onRuns.reduce((n, r) => n + r.rps * SECONDS, 0)),
    };
  };
  /** `measure` of one gateway, with this process's CPU per request meanwhile. */
  const withOwnCpu = async (m: () => Promise<Measured>): Promise<Run> => {
    const cpu0 = process.cpuUsage();
    const r = await m();
    const used = process.cpuUsage(cpu0);
    return { ...r, ownUsPerRequest: (used.user + used.system) / Math.max(1, r.rps * SECONDS) };
  };

  // 1. Fixed rate, both gateways at once (so a slower moment of the machine hits both alike):
  //    a warm-up, then the measured window, each gateway's CPU over the requests it answered.
  const pinned = env.BENCH_PIN !== "off" && availableParallelism() >= 2;
  const pin = (gateways: string, rest: string) => {
    for (const g of [off, on]) pinCpus(g.child.process.pid as number, gateways, true);
    pinCpus(upstream.process.pid as number, rest, true);
    pinCpus(process.pid, rest);
  };
  const all = `0-${availableParallelism() - 1}`;
  if (pinned) pin("0", "1");
  const h2load = (target: Target, seconds: number) =>
    runH2load(tools.h2load, target, {
      rate: RATE,
      seconds,
      warmupSeconds: 0,
      connections: CONNECTIONS,
      logFile: join(base, `h2load-${target.id}.log`),
    });
  /** Fixed-rate runs whose rate was not held (the machine or h2load could not keep up). */
  let unheld = 0;
  const atRate = async (target: Target): Promise<Measured> => {
    const pgid = target.child.process.pid as number;
    const before = groupCpuSeconds(pgid);
    const r = await h2load(target, SECONDS);
    const used = groupCpuSeconds(pgid) - before;
    if (!r.reached) {
      unheld++;
      console.log(`    ! ${target.name}: ${r.why}`);
    }
    return {
      usPerRequest: (used * 1e6) / Math.max(1, r.completed),
      rps: r.achieved,
      errors: r.errors + r.non2xx,
    };
  };
  // Both gateways warm (JIT, pools, the span store's first pages) before the first round.
  await Promise.all([off, on].map((target) => h2load(target, 3)));
  const fixed = await pass("fixed rate", RATE_ROUNDS, async () => {
    await Promise.all([off, on].map((target) => h2load(target, 1)));
    // This process's CPU in the window is the traced gateway's ingest (the untraced one sends nothing).
    const cpu0 = process.cpuUsage();
    const [offRun, onRun] = await Promise.all([atRate(off), atRate(on)]);
    const used = process.cpuUsage(cpu0);
    const own = (used.user + used.system) / Math.max(1, onRun.rps * SECONDS);
    return { off: { ...offRun, ownUsPerRequest: 0 }, on: { ...onRun, ownUsPerRequest: own } };
  });
  // 2. Saturated: every process may use every core again.
  if (pinned) pin(all, all);
  const run = { seconds: SECONDS, warmupSeconds: WARMUP, connections: CONNECTIONS };
  // One after the other, the order reversed every other round (off on, on off, …): neither side always first.
  const saturated = await pass("saturated", SATURATED_ROUNDS, async (round) => {
    if (round % 2 === 0) {
      const onRun = await withOwnCpu(() => measure(tools.wrk, on, run));
      return { off: await withOwnCpu(() => measure(tools.wrk, off, run)), on: onRun };
    }
    const offRun = await withOwnCpu(() => measure(tools.wrk, off, run));
    return { off: offRun, on: await withOwnCpu(() => measure(tools.wrk, on, run)) };
  });

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
    fixed,
    rate: RATE,
    unheld,
    pinned,
    saturated,
    spansRefused: server.traces.store.stats().refused,
    spansStored,
    seconds: SECONDS,
    connections: CONNECTIONS,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}
