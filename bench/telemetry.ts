// `npm run bench:telemetry`: telemetry figures, each in one bounded run on a
// real control plane (in this process, its own temp data dir).
//
// Sections (run all, or name some: `node bench/telemetry.ts metrics spans`):
//   metrics — points ingested per second per core through POST /api/v1/metrics/write
//             (target ≥ 50,000), through OTLP/HTTP protobuf and OTLP/gRPC (the same
//             target), the same straight into storage, and the p99 latency
//             of a 1-hour range chart over 100 series through the Prometheus query API
//             (target ≤ 50 ms).
//   spans   — spans ingested per second per core through the OTLP ingest of a `herd server`
//             in its own process, as OTLP/HTTP JSON, OTLP/HTTP protobuf and OTLP/gRPC
//             (target ≥ 25,000 each; bench/traces.ts).
//   tracing — the gateway's throughput cost of tracing: CPU per request of one gateway
//             worker with --trace-sample 0 and 1 at a fixed rate (h2load; target ≤ 5 %),
//             and both saturated by wrk (bench/tracing-cost.ts).
// To add a section: write a function returning Figure[] and list it in SECTIONS.
// A run that did less than the figure needs stops with the reason, or its verdict is NOT COUNTED;
// `--strict` makes a missed or uncounted target exit 1 (bench/harness.ts's verdictSummary).
//
// "Per core": points divided by the CPU seconds this process used while
// ingesting (the HTTP client shares the process, so the figure is conservative).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../src/common/log.ts";
import { type RunningServer, startServer } from "../src/daemons/control-plane.ts";
import { benchArgs, cleanup, verdict, verdictSummary } from "./harness.ts";
import { encodeOtlp, grpcClient } from "./otlp-client.ts";
import { measureSpanIngest } from "./traces.ts";
import { measureTracingCost } from "./tracing-cost.ts";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);

/** One measured figure and its target. */
interface Figure {
  name: string;
  value: number;
  unit: string;
  /** e.g. "≥ 50,000" — how the value is judged. */
  target?: string;
  ok?: boolean;
  /** Set when the run did not do the work the figure needs (failed requests, spans not stored): the verdict does not count. */
  notDone?: string | false;
}

interface Section {
  name: string;
  run(): Promise<Figure[]>;
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Asks until the answer equals `want` or stops changing for a second (at most 20 s); the last answer. */
async function untilStable(ask: () => Promise<number>, want: number): Promise<number> {
  let last = await ask();
  const deadline = Date.now() + 20_000;
  while (last !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = await ask();
    if (now === last) break;
    last = now;
  }
  return last;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

async function withServer<T>(f: (server: RunningServer) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "herd-bench-telemetry-"));
  // Scrapes would add their own points: make them rare.
  const server = await startServer({
    dataDir: dir,
    port: 0,
    logger: silentLogger,
    metrics: { scrapeIntervalMs: 3600_000, ingestQueuePoints: 2_000_000 },
    grpcPort: 0,
  });
  try {
    return await f(server);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Makes JSON write bodies of `series` series × `perSeries` samples each; timestamps only move forward. */
function bodyMaker(series: number, perSeries: number, start: number): (count: number) => string[] {
  let t = start;
  return (count) => {
    const bodies: string[] = [];
    for (let b = 0; b < count; b++) {
      const out = [];
      for (let s = 0; s < series; s++) {
        const samples: [number, number][] = [];
        for (let i = 0; i < perSeries; i++) samples.push([t + i, Math.random() * 100]);
        out.push({
          metric: "bench_points",
          labels: { instance: `i-${s}`, app: `app-${s % 10}`, node: `n-${s % 5}` },
          samples,
        });
      }
      t += perSeries;
      bodies.push(JSON.stringify({ series: out }));
    }
    return bodies;
  };
}

/**
 * OTLP metrics: requests of one gauge with `series` attribute sets × `perSeries`
 * points each (the JSON run's shape), sent for SECONDS by 4 clients; every
 * acknowledged point must come back from a query.
 */
async function otlpMetricsRun(
  server: RunningServer,
  mode: "protobuf" | "grpc",
  series: number,
  perSeries: number,
): Promise<{ perCore: number; failed: number }> {
  const metric = `bench_otlp_${mode}`;
  let t = Date.now() - 600_000;
  const makeBody = () => {
    const dataPoints = [];
    for (let s = 0; s < series; s++) {
      const attributes = [
        { key: "instance", value: { stringValue: `i-${s}` } },
        { key: "app", value: { stringValue: `app-${s % 10}` } },
        { key: "node", value: { stringValue: `n-${s % 5}` } },
      ];
      for (let i = 0; i < perSeries; i++)
        dataPoints.push({ attributes, timeUnixNano: `${t + i}000000`, asDouble: Math.random() * 100 });
    }
    t += perSeries;
    return encodeOtlp("metrics", {
      resourceMetrics: [
        { resource: {}, scopeMetrics: [{ metrics: [{ name: metric, gauge: { dataPoints } }] }] },
      ],
    });
  };
  let bodies = Array.from({ length: 60 }, makeBody);
  let next = 0;
  let sent = 0;
  let failed = 0;
  const token = server.adminToken;
  const clients = Array.from({ length: 4 }, () =>
    mode === "grpc" ? grpcClient(server.grpcUrl as string, token) : undefined,
  );
  const cpu0 = cpuSeconds();
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(
    clients.map(async (client) => {
      while (Date.now() < end) {
        if (next >= bodies.length) {
          bodies = Array.from({ length: 10 }, makeBody);
          next = 0;
        }
        const body = bodies[next++] as Buffer;
        let ok: boolean;
        if (client) ok = (await client.call("metrics", body)) === 0;
        else {
          const res = await fetch(`${server.url}/api/v1/otlp/v1/metrics`, {
            method: "POST",
            headers: { authorization: `Bearer ${token}`, "content-type": "application/x-protobuf" },
            body,
          });
          await res.arrayBuffer();
          ok = res.status === 200;
        }
        if (ok) sent += series * perSeries;
        else failed++;
      }
    }),
  );
  const cpu = cpuSeconds() - cpu0;
  for (const c of clients) c?.close();
  const headers = { authorization: `Bearer ${token}` };
  const stored = await untilStable(async () => {
    const q = new URLSearchParams({
      query: `sum(count_over_time(${metric}[20m]))`,
      time: String(Date.now() / 1000),
    });
    const res = await fetch(`${server.url}/api/v1/prom/api/v1/query?${q}`, { headers });
    const body = (await res.json()) as { data?: { result?: { value: [number, string] }[] } };
    return Number(body.data?.result?.[0]?.value[1] ?? 0);
  }, sent);
  if (stored !== sent) {
    throw new Error(
      `${mode}: ${fmt(sent)} points accepted but ${fmt(stored)} stored: the figure would count work not done`,
    );
  }
  return { perCore: sent / cpu, failed };
}

async function metricsSection(): Promise<Figure[]> {
  return withServer(async (server) => {
    const headers = { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" };
    const figures: Figure[] = [];

    // 1. Through the API: 1,000 series × 10 samples per request, 4 requests in flight.
    const series = 1000;
    const perSeries = 10;
    // Bodies are made before the clock starts (a client's work, not the server's); more if they run out.
    const makeBodies = bodyMaker(series, perSeries, Date.now() - 600_000);
    let bodies = makeBodies(100);
    let next = 0;
    let sent = 0;
    let rejected = 0;
    const cpu0 = cpuSeconds();
    const end = Date.now() + SECONDS * 1000;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (Date.now() < end) {
          if (next >= bodies.length) {
            bodies = makeBodies(20);
            next = 0;
          }
          const body = bodies[next++] as string;
          const res = await fetch(`${server.url}/api/v1/metrics/write`, { method: "POST", headers, body });
          const reply = (await res.json()) as { accepted?: number };
          if (res.status === 200) sent += reply.accepted ?? 0;
          else rejected++;
        }
      }),
    );
    const cpu = cpuSeconds() - cpu0;
    const perCore = sent / cpu;
    // The figure counts only if what was accepted was stored: every point comes back from a query.
    const stored = await untilStable(async () => {
      const q = new URLSearchParams({
        query: "sum(count_over_time(bench_points[20m]))",
        time: String(Date.now() / 1000),
      });
      const res = await fetch(`${server.url}/api/v1/prom/api/v1/query?${q}`, { headers });
      const body = (await res.json()) as { data?: { result?: { value: [number, string] }[] } };
      return Number(body.data?.result?.[0]?.value[1] ?? 0);
    }, sent);
    if (stored !== sent) {
      throw new Error(
        `ingest: ${fmt(sent)} points accepted but ${fmt(stored)} stored: the figure would count work not done`,
      );
    }
    figures.push({
      name: `points/s per core via POST /metrics/write (JSON, ${fmt(series)} series × ${perSeries} per request)`,
      value: perCore,
      unit: "points/s",
      target: "≥ 50,000",
      ok: perCore >= 50_000,
    });
    if (rejected > 0)
      figures.push({ name: "writes answered 429 (queue full)", value: rejected, unit: "requests" });
    for (const mode of ["protobuf", "grpc"] as const) {
      const r = await otlpMetricsRun(server, mode, series, perSeries);
      const how = mode === "protobuf" ? "OTLP/HTTP protobuf" : "OTLP/gRPC";
      figures.push({
        name: `points/s per core via ${how} (${fmt(series)} series × ${perSeries} per request; ${(r.perCore / perCore).toFixed(2)}× JSON's)`,
        value: r.perCore,
        unit: "points/s",
        target: "≥ 50,000",
        ok: r.perCore >= 50_000,
        notDone: r.failed > 0 && `${r.failed} requests failed`,
      });
    }

    // 2. Straight into storage (what the scraper does), 1,000 series × 1 sample per append.
    const tsdb = server.metrics.tsdb;
    const labels = Array.from({ length: series }, (_, s) => ({
      __name__: "bench_direct",
      instance: `i-${s}`,
    }));
    let direct = 0;
    let t = Date.now() - 300_000;
    const c0 = cpuSeconds();
    const until = Date.now() + Math.min(2, SECONDS) * 1000;
    while (Date.now() < until) {
      t++;
      direct += tsdb.append(labels.map((l) => ({ labels: l, samples: [[t, t]] }))).accepted;
    }
    const directRate = direct / (cpuSeconds() - c0);
    figures.push({
      name: "points/s per core straight into storage (1,000 series per append)",
      value: directRate,
      unit: "points/s",
    });

    // 3. A 1-hour chart over 100 series: rate() of counters scraped every 15 s, most of it in chunks.
    const now = Date.now();
    const start = now - 3600_000 - 600_000;
    const chart = Array.from({ length: 100 }, (_, s) => {
      const samples: [number, number][] = [];
      for (let at = start, v = 0; at <= now; at += 15_000, v += Math.random() * 10) samples.push([at, v]);
      return {
        labels: { __name__: "bench_requests_total", instance: `i-${s}`, route: `/r${s % 10}` },
        samples,
      };
    });
    tsdb.append(chart.map((c) => ({ ...c, samples: c.samples.filter(([at]) => at < now - 120_000) })));
    tsdb.flushHead();
    tsdb.append(chart.map((c) => ({ ...c, samples: c.samples.filter(([at]) => at >= now - 120_000) })));
    const query = new URLSearchParams({
      query: "rate(bench_requests_total[5m])",
      start: String((now - 3600_000) / 1000),
      end: String(now / 1000),
      step: "15",
    });
    const url = `${server.url}/api/v1/prom/api/v1/query_range?${query}`;
    const get = () => fetch(url, { headers: { authorization: headers.authorization } });
    // Check the answer once; then warm up (JIT) and time the server's answer read as text: parsing
    // it is the client's work (Grafana's), and this client shares the process and cores with the server.
    const first = (await (await get()).json()) as { data: { result: { values: unknown[] }[] } };
    const points = first.data.result.reduce((n, s) => n + s.values.length, 0);
    // Every series, every step of the hour: a query that answered less would be timed doing less.
    const steps = 3600 / 15 + 1;
    if (first.data.result.length !== chart.length || points !== chart.length * steps) {
      throw new Error(
        `chart query: ${first.data.result.length} series and ${fmt(points)} points came back, expected ${chart.length} and ${fmt(chart.length * steps)}`,
      );
    }
    const size = (await (await get()).text()).length;
    for (let i = 0; i < 5; i++) await (await get()).text();
    const times: number[] = [];
    const cpuTimes: number[] = [];
    const qEnd = Date.now() + SECONDS * 1000;
    while ((Date.now() < qEnd || times.length < 50) && times.length < 2000) {
      const t0 = performance.now();
      const c0 = cpuSeconds();
      const res = await get();
      const text = await res.text();
      times.push(performance.now() - t0);
      // The same full answer each time (values vary in their digits only), never an error.
      if (res.status !== 200 || Math.abs(text.length - size) > size * 0.1) {
        throw new Error(
          `chart query ${times.length}: HTTP ${res.status}, ${text.length} bytes (the first: ${size})`,
        );
      }
      cpuTimes.push((cpuSeconds() - c0) * 1000);
    }
    times.sort((a, b) => a - b);
    cpuTimes.sort((a, b) => a - b);
    const p99 = percentile(times, 0.99);
    figures.push({
      name: `1-hour range chart over 100 series, rate()[5m] step 15 s (${fmt(points)} points, ${times.length} queries): p50 ${percentile(times, 0.5).toFixed(1)} ms, p99`,
      value: p99,
      unit: "ms",
      target: "≤ 50",
      ok: p99 <= 50,
    });
    // On a shared machine the wall-clock p99 mostly measures waiting for a core; the CPU time is the work.
    figures.push({
      name: `the same, CPU time per query (server and client, this process): p50 ${percentile(cpuTimes, 0.5).toFixed(1)} ms, p99`,
      value: percentile(cpuTimes, 0.99),
      unit: "ms",
    });
    return figures;
  });
}

async function spansSection(): Promise<Figure[]> {
  const figures: Figure[] = [];
  let json = 0;
  for (const encoding of ["json", "protobuf", "grpc"] as const) {
    const r = await measureSpanIngest(encoding);
    if (encoding === "json") json = r.perCore;
    const how = { json: "OTLP/HTTP JSON", protobuf: "OTLP/HTTP protobuf", grpc: "OTLP/gRPC" }[encoding];
    const peer =
      encoding === "json" ? "OpenTelemetry Collector ≈ 12,000" : `${(r.perCore / json).toFixed(2)}× JSON's`;
    figures.push({
      name: `spans/s per core via ${how} (${r.clients} clients, ${r.batch} spans = ${Math.round(r.kibPerRequest)} KiB per request; ${fmt(r.written)} spans in ${r.wallSeconds.toFixed(1)} s, server CPU ${r.cpuSeconds.toFixed(2)} s; ${peer})`,
      value: r.perCore,
      unit: "spans/s",
      target: "≥ 25,000",
      ok: r.perCore >= 25_000,
      // Failed requests (not 429s, which are counted apart), or spans acknowledged but not stored, mean
      // the run did not do its work.
      notDone:
        (r.failed > 0 && `${r.failed} requests failed`) ||
        (r.written < r.acknowledged && `${fmt(r.acknowledged)} spans acknowledged, ${fmt(r.written)} stored`),
    });
    if (r.refused > 0 || r.failed > 0)
      figures.push({
        name: `${how}: requests refused (429) ${r.refused}, failed`,
        value: r.failed,
        unit: "requests",
      });
  }
  return figures;
}

async function tracingSection(): Promise<Figure[]> {
  const r = await measureTracingCost();
  // Each figure is the median of the rounds' paired comparisons (each traced run against the
  // untraced run just before it), not the best of each side: on a shared machine the best runs
  // of the two sides need not come from the same conditions.
  const rounds = (p: typeof r.fixed) => p.pairedCosts.map((c) => `${c.toFixed(0)} %`).join(", ");
  const ingestOff = process.env.BENCH_INGEST === "off";
  // The verdict counts only when the run did its work: no request failed, and the traced gateway's
  // spans were stored by the control plane — one per traced request answered in the measured windows,
  // at least (warm-ups add more; a batch refused with 429 is sent again by the gateway, and counts
  // once it is stored).
  const traced = r.fixed.tracedRequests + r.saturated.tracedRequests;
  const errors = r.fixed.errors + r.saturated.errors;
  const didItsWork = errors === 0 && (ingestOff || r.spansStored >= traced);
  const work: Figure = {
    name: `spans stored per traced request measured (${fmt(r.spansStored)} spans for ${fmt(traced)} requests, ${fmt(r.spansRefused)} refused with 429 on the way; ${errors} requests failed)`,
    value: traced > 0 ? r.spansStored / traced : 0,
    unit: "spans/request",
    target: ingestOff ? "any (BENCH_INGEST=off)" : "≥ 1, and no failed request",
    ok: didItsWork,
  };
  const notDone =
    !didItsWork &&
    (errors > 0
      ? `${errors} requests failed`
      : `${fmt(r.spansStored)} spans stored for ${fmt(traced)} traced requests`);
  const ingest = (p: typeof r.fixed, what: string): Figure[] =>
    p.ingestUsPerRequest === null
      ? []
      : [
          {
            name: `control plane CPU per traced request, ${what} (its span's ingest and storage, the relay)`,
            value: p.ingestUsPerRequest,
            unit: "µs",
          },
        ];
  return [
    {
      name: `fixed ${fmt(r.rate)} req/s: gateway CPU per request, --trace-sample 0 (best round)`,
      value: r.fixed.off.usPerRequest,
      unit: "µs",
    },
    {
      name: "fixed rate: gateway CPU per request, --trace-sample 1 (best round)",
      value: r.fixed.on.usPerRequest,
      unit: "µs",
    },
    ...ingest(r.fixed, "fixed rate"),
    {
      name: `throughput cost of tracing: the gateway's extra CPU per traced request at a fixed ${fmt(r.rate)} req/s${r.pinned ? " (gateways on CPU 0; span store, upstream and h2load on CPU 1)" : " (all on all cores)"}, median of ${r.fixed.rounds} paired rounds of ${r.seconds} s (round by round: ${rounds(r.fixed)}; ${fmt(r.spansStored)} spans stored over both passes, ${fmt(r.spansRefused)} refused with 429${ingestOff ? "; BENCH_INGEST=off: span posts answered 404, not ingested" : ""})`,
      value: r.fixed.cost,
      unit: "%",
      target: "≤ 5 %",
      ok: r.fixed.cost <= 5,
      // At a rate not held, the two sides were not compared at the same load.
      notDone:
        notDone ||
        (r.unheld > 0 &&
          `${r.unheld} of ${r.fixed.rounds * 2} runs did not hold ${fmt(r.rate)} req/s (BENCH_TRACING_RATE lowers it)`),
    },
    work,
    {
      name: "saturated (wrk, 1 gateway worker): req/s, --trace-sample 0 (best round)",
      value: r.saturated.off.rps,
      unit: "req/s",
    },
    { name: "saturated: req/s, --trace-sample 1 (best round)", value: r.saturated.on.rps, unit: "req/s" },
    ...ingest(r.saturated, "saturated"),
    {
      name: `saturated, the whole 2-core machine (gateway, upstream, wrk and the span store): fewer req/s when traced, median of ${r.saturated.rounds} paired rounds (gateway CPU per request round by round: ${rounds(r.saturated)}; ${r.connections} connections)`,
      value: r.saturated.rpsCost,
      unit: "%",
    },
  ];
}

const SECTIONS: Section[] = [
  { name: "metrics", run: metricsSection },
  { name: "spans", run: spansSection },
  { name: "tracing", run: tracingSection },
];

const wanted = benchArgs();
const unknown = wanted.filter((w) => !SECTIONS.some((s) => s.name === w));
if (unknown.length > 0) {
  console.error(
    `unknown section(s): ${unknown.join(", ")}; known: ${SECTIONS.map((s) => s.name).join(", ")}`,
  );
  process.exit(2);
}
let failed = false;
try {
  for (const section of SECTIONS) {
    if (wanted.length > 0 && !wanted.includes(section.name)) continue;
    console.log(`${section.name} (bounded runs of ${SECONDS} s; BENCH_SECONDS changes it)`);
    for (const f of await section.run()) {
      const value =
        f.unit === "ms" || f.unit === "µs" || f.unit === "%" || f.unit === "spans/request"
          ? f.value.toFixed(f.unit === "spans/request" ? 2 : 1)
          : fmt(f.value);
      const target = f.target
        ? ` (target ${f.target}: ${verdict(`${section.name}: ${f.name.split(" (")[0]}`, f.ok === true, f.notDone)})`
        : "";
      console.log(`  ${f.name}: ${value} ${f.unit}${target}`);
    }
  }
} catch (err) {
  console.error(`bench:telemetry: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  failed = true;
} finally {
  // Children (servers, gateways, wrk) and temp dirs of the sections.
  await cleanup();
}
const code = verdictSummary("bench:telemetry");
process.exit(failed ? 1 : code);
