// Spans ingested per second per core, through the real HTTP ingest endpoint.
//
// A real `herd server` runs in its own process; a few clients in this process
// POST OTLP/HTTP JSON batches (100 spans each, realistic attributes, distinct
// ids) to /api/v1/traces/otlp/v1/traces with the ingest token for a bounded
// time. The figure is spans written to the store divided by the server
// process's CPU seconds (utime + stime from /proc, so parsing, HTTP, the
// queue, SQLite and its trims all count), measured until the queue is empty.
//
//   node bench/traces.ts            (BENCH_SECONDS=8, BENCH_CLIENTS=4, BENCH_BATCH=100)

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);
const BATCH = Number(process.env.BENCH_BATCH ?? 100);
const TARGET = 25_000;
const COLLECTOR = 12_000;
const TICKS = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux

let child: ChildProcess | undefined;
const dir = mkdtempSync(join(tmpdir(), "herd-bench-traces-"));

/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

let seq = 0;
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
            traceId: hex(Math.floor(n / 5), 16) + hex(n * 2654435761, 16).slice(-16),
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

async function main() {
  child = spawn(
    process.execPath,
    [join(ROOT, "src/cli/main.ts"), "server", "--data", dir, "--port", "0", "--traces-max-size", "2Gi"],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HERD_LOG_LEVEL: "error" } },
  );
  let output = "";
  child.stdout?.on("data", (c: Buffer) => {
    output += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    output += c.toString();
  });
  const deadline = Date.now() + 20_000;
  let url: string | undefined;
  while (!url) {
    url = /herd server: (http:\/\/\S+)\/api\/v1/.exec(output)?.[1];
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`herd server did not start:\n${output}`);
    await sleep(50);
  }
  const pid = child.pid as number;
  const token = readFileSync(join(dir, "traces", "ingest-token"), "utf8").trim();
  const admin = readFileSync(join(dir, "admin-token"), "utf8").trim();
  const ingest = `${url}/api/v1/traces/otlp/v1/traces`;
  const dispatcher = new Agent({ connections: CLIENTS, pipelining: 1 });

  // Bodies built up front (distinct ids), so this process's JSON work does not slow the clients.
  const bodies = Array.from({ length: 400 }, makeBody);
  const bytesPerRequest = bodies.reduce((n, b) => n + b.length, 0) / bodies.length;
  let sent = 0;
  let refused = 0;
  let failed = 0;
  const post = async (body: string) => {
    const res = await request(ingest, {
      method: "POST",
      dispatcher,
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body,
    });
    await res.body.dump();
    return res.statusCode;
  };
  const run = async (until: number, count: boolean) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        while (Date.now() < until) {
          const status = await post(bodies[(next++ * CLIENTS + c) % bodies.length]);
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
  const perCore = written / cpu;
  console.log(
    `spans ingested per second per core: ${Math.round(perCore).toLocaleString("en")} (target ≥ ${TARGET.toLocaleString("en")}; OpenTelemetry Collector ≈ ${COLLECTOR.toLocaleString("en")})`,
  );
  console.log(
    `  ${written.toLocaleString("en")} spans in ${wall.toFixed(1)} s wall = ${Math.round(written / wall).toLocaleString("en")}/s, server CPU ${cpu.toFixed(2)} s (${((cpu / wall) * 100).toFixed(0)}% of a core); ` +
      `${CLIENTS} clients, ${BATCH} spans (${Math.round(bytesPerRequest / 1024)} KiB OTLP JSON) per request; refused (429) ${refused}, failed ${failed}`,
  );
  if (written !== sent) console.log(`  note: ${sent} spans acknowledged, ${written} written`);
  await dispatcher.close();
  return perCore >= TARGET ? 0 : 1;
}

async function cleanup() {
  if (child && child.exitCode === null) {
    child.kill("SIGTERM");
    await new Promise((r) => {
      const t = setTimeout(() => {
        child?.kill("SIGKILL");
        r(undefined);
      }, 5000);
      child?.once("exit", () => {
        clearTimeout(t);
        r(undefined);
      });
    });
  }
  rmSync(dir, { recursive: true, force: true });
}

process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));
main()
  .then(async (code) => {
    await cleanup();
    process.exitCode = code;
  })
  .catch(async (err) => {
    console.error(err);
    await cleanup();
    process.exitCode = 1;
  });
