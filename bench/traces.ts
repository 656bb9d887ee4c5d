// Spans ingested per second per core, through the real HTTP ingest endpoint:
// the `spans` section of `npm run bench:telemetry` (bench/telemetry.ts).
//
// A real `herd server` runs in its own process; a few clients in this process
// send OTLP batches (100 spans each, realistic attributes, distinct ids) with
// the ingest token for a bounded time: OTLP/HTTP JSON or protobuf to
// /api/v1/otlp/v1/traces, or OTLP/gRPC to its --grpc-port (the same messages). The figure is spans written to the store divided by the server
// process's CPU seconds (utime + stime from /proc, so parsing, HTTP, the
// queue, SQLite and its trims all count), measured until the queue is empty.
//
//   BENCH_SECONDS (5), BENCH_CLIENTS=4, BENCH_BATCH=100

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, request } from "undici";
import { groupCpuSeconds as cpuSeconds, freePort, ROOT, startChild, stopChild } from "./harness.ts";
import { encodeOtlp, grpcClient } from "./otlp-client.ts";

/** How the spans are sent. */
export type SpanEncoding = "json" | "protobuf" | "grpc";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);
const BATCH = Number(process.env.BENCH_BATCH ?? 100);

let seq = 0;
/** Stands for 8 hex digits of the send round in the bodies' trace ids. */
const ROUND = "RRRRRRRR";
const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");
const SERVICES = ["gateway", "web", "api", "auth", "db-proxy", "worker"];
const ROUTES = ["/", "/users/:id", "/orders", "/orders/:id/items", "/login", "/search"];

/** One OTLP export request: BATCH spans of one trace tree per 5 spans, distinct ids, two resources. */
function makeBody(): string {
  const now = Date.now() * 1e6;
  const resourceSpans = [0, 1].map((r) => ({
    resource: {
      attributes: [
        { key: "service.name", value: { stringValue: SERVICES[(seq + r) % SERVICES.length] } },
        { key: "service.version", value: { stringValue: "1.4.2" } },
        { key: "host.name", value: { stringValue: "node-1" } },
      ],
    },
    scopeSpans: [
      {
        scope: { name: "@opentelemetry/instrumentation-http", version: "0.52.0" },
        spans: Array.from({ length: BATCH / 2 }, () => {
          const n = ++seq;
          const route = ROUTES[n % ROUTES.length];
          const start = now - 1_000_000_000 + (n % 1000) * 1_000_000;
          const status = n % 50 === 0 ? 500 : 200;
          return {
            // Random-looking (as SDKs make them), one trace per 5 spans; ROUND is replaced at each send.
            traceId: `${hex((Math.floor(n / 5) * 2654435761) % 2 ** 44, 11)}${ROUND}${hex(Math.floor(n / 5), 13)}`,
            spanId: hex(n, 16),
            parentSpanId: n % 5 === 0 ? "" : hex(n - 1, 16),
            name: `GET ${route}`,
            kind: n % 5 === 0 ? 2 : 3,
            startTimeUnixNano: String(start),
            endTimeUnixNano: String(start + 1_000_000 + (n % 97) * 100_000),
            attributes: [
              { key: "http.method", value: { stringValue: "GET" } },
              { key: "http.route", value: { stringValue: route } },
              { key: "http.status_code", value: { intValue: String(status) } },
              { key: "net.peer.name", value: { stringValue: "10.0.0.7" } },
              { key: "user_agent.original", value: { stringValue: "Mozilla/5.0 (X11; Linux x86_64)" } },
            ],
            status: { code: status >= 500 ? 2 : 0 },
          };
        }),
      },
    ],
  }));
  return JSON.stringify({ resourceSpans });
}

/** What one bounded run measured. */
export interface SpanIngest {
  perCore: number;
  written: number;
  wallSeconds: number;
  cpuSeconds: number;
  clients: number;
  batch: number;
  kibPerRequest: number;
  refused: number;
  failed: number;
  acknowledged: number;
}

/** Runs a real `herd server` in its own process, loads its ingest for a bounded time, and ends it. */
export async function measureSpanIngest(encoding: SpanEncoding = "json"): Promise<SpanIngest> {
  const dir = mkdtempSync(join(tmpdir(), "herd-bench-traces-"));
  const grpcPort = await freePort();
  const child = startChild(
    "herd server",
    process.execPath,
    [
      join(ROOT, "src/cli/main.ts"),
      "server",
      "--data",
      dir,
      "--port",
      "0",
      "--grpc-port",
      String(grpcPort),
      "--traces-max-size",
      "2Gi",
    ],
    { HERD_LOG_LEVEL: "error" },
  );
  try {
    return await load(child, dir, encoding, grpcPort);
  } finally {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function load(
  child: ReturnType<typeof startChild>,
  dir: string,
  encoding: SpanEncoding,
  grpcPort: number,
): Promise<SpanIngest> {
  const deadline = Date.now() + 20_000;
  let url: string | undefined;
  while (!url) {
    url = /herd server: (http:\/\/\S+)\/api\/v1/.exec(child.output)?.[1];
    if (Date.now() > deadline || child.process.exitCode !== null)
      throw new Error(`herd server did not start:\n${child.output}`);
    await sleep(50);
  }
  const pid = child.process.pid as number;
  const admin = readFileSync(join(dir, "admin-token"), "utf8").trim();
  // What an app gets from its agent: its tenant's ingest token.
  const created = await fetch(`${url}/api/v1/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "bench", kind: "ingest", tenant: "default" }),
  });
  const token = ((await created.json()) as { token: string }).token;
  const ingest = `${url}/api/v1/otlp/v1/traces`;
  const dispatcher = new Agent({ connections: CLIENTS, pipelining: 1 });
  const grpc =
    encoding === "grpc"
      ? Array.from({ length: CLIENTS }, () => grpcClient(`http://127.0.0.1:${grpcPort}`, token))
      : [];

  // Bodies built up front (distinct ids), so this process's JSON work does not slow the clients.
  const bodies = Array.from({ length: 400 }, makeBody);
  // Protobuf bodies: one set per round of trace ids, made before the clock starts (a client's work).
  const encoded = new Map<number, Buffer[]>();
  const protobufRound = (round: number) => {
    let set = encoded.get(round);
    if (!set) {
      set = bodies.map((b) => encodeOtlp("traces", JSON.parse(b.replaceAll(ROUND, hex(round, 8)))));
      encoded.set(round, set);
    }
    return set;
  };
  if (encoding !== "json") for (let r = 0; r < 8; r++) protobufRound(r);
  const bytesPerRequest =
    encoding === "json"
      ? bodies.reduce((n, b) => n + b.length, 0) / bodies.length
      : protobufRound(0).reduce((n, b) => n + b.length, 0) / bodies.length;
  let sent = 0;
  let refused = 0;
  let failed = 0;
  /** Sends body i of round `round`; the HTTP status (gRPC: 200 for OK, 429 for UNAVAILABLE). */
  const send = async (client: number, i: number, round: number) => {
    if (encoding === "grpc") {
      const status = await (grpc[client] as ReturnType<typeof grpcClient>).call(
        "traces",
        protobufRound(round)[i] as Buffer,
      );
      return status === 0 ? 200 : status === 14 ? 429 : 500;
    }
    const body =
      encoding === "json"
        ? (bodies[i] as string).replaceAll(ROUND, hex(round, 8))
        : (protobufRound(round)[i] as Buffer);
    const res = await request(ingest, {
      method: "POST",
      dispatcher,
      headers: {
        "content-type": encoding === "json" ? "application/json" : "application/x-protobuf",
        authorization: `Bearer ${token}`,
      },
      body,
    });
    await res.body.dump();
    return res.statusCode;
  };
  // Counted across the warm-up and the measured run, so no span is sent twice.
  let next = 0;
  const run = async (until: number, count: boolean) => {
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        while (Date.now() < until) {
          // Each pass over the bodies is a new round of trace ids: every span sent is a new one
          // (the store keeps a repeated span once, and would count it once).
          const i = next++ * CLIENTS + c;
          const status = await send(c, i % bodies.length, Math.floor(i / bodies.length));
          if (!count) continue;
          if (status === 200) sent += BATCH;
          else if (status === 429) {
            refused += BATCH;
            await sleep(20);
          } else failed++;
        }
      }),
    );
  };
  await run(Date.now() + 1000, false); // warm-up: JIT, connections, SQLite pages
  const stats = async () => {
    const res = await request(`${url}/api/v1/traces/stats`, {
      headers: { authorization: `Bearer ${admin}` },
      dispatcher,
    });
    return ((await res.body.json()) as { store: { written: number; queuedSpans: number } }).store;
  };
  while ((await stats()).queuedSpans > 0) await sleep(20);
  const writtenBefore = (await stats()).written;
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  await run(Date.now() + SECONDS * 1000, true);
  let s = await stats();
  while (s.queuedSpans > 0) {
    await sleep(10);
    s = await stats();
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(pid) - cpu0;
  const written = s.written - writtenBefore;
  await dispatcher.close();
  for (const g of grpc) g.close();
  return {
    perCore: written / cpu,
    written,
    wallSeconds: wall,
    cpuSeconds: cpu,
    clients: CLIENTS,
    batch: BATCH,
    kibPerRequest: bytesPerRequest / 1024,
    refused,
    failed,
    acknowledged: sent,
  };
}
