/**
 * The API fuzzer: a control plane in a child process, tokens of every kind,
 * then N generated requests (generate.ts) with bounded concurrency. A
 * violation is a 5xx, a 4xx that is not a JSON `{code, message}`, a dropped
 * connection, a request that hangs, or the server process going away.
 *
 *   spawn test/fuzz/server.ts ─► tokens, apps ─► GET openapi.json ─► generate(seed, i) ─► send ─► judge
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Agent, request } from "undici";
import { createTestTokens } from "../../src/api/principals-testing.ts";
import { type Credentials, type FuzzRequest, generate, operationsOf } from "./generate.ts";

export interface FuzzOptions {
  requests: number;
  seed: number;
  /** Requests in flight at once (default 16). */
  concurrency?: number;
  /** Only this request of the run (a replay); the reply is printed in full. */
  replay?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface Violation {
  request: FuzzRequest;
  problem: string;
  status?: number;
  reply?: string;
}

export interface FuzzReport {
  seed: number;
  requests: number;
  seconds: number;
  /** Replies by status code (`error` for requests that got none). */
  statuses: Record<string, number>;
  /** Requests by route (`METHOD /path` of the OpenAPI document, or `junk`). */
  routes: Record<string, number>;
  violations: Violation[];
  /** The server process was gone (or did not answer /healthz) after the run. */
  crashed: boolean;
  /** The last lines the server wrote to stderr (its error log). */
  serverLog: string[];
}

const REQUEST_TIMEOUT_MS = 20_000;

/** Runs the fuzzer against a fresh server in a child process; always stops it and removes its data. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const dir = mkdtempSync(join(tmpdir(), "herd-fuzz-"));
  const serverLog: string[] = [];
  const child = spawn(process.execPath, [join(import.meta.dirname, "server.ts"), join(dir, "data")], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  createInterface({ input: child.stderr! }).on("line", (line) => {
    serverLog.push(line);
    if (serverLog.length > 200) serverLog.shift();
  });
  const agents: Agent[] = [];
  try {
    const started = await listening(child, serverLog);
    const { url, adminToken, spans } = started;
    const t = await createTestTokens(url, adminToken);
    for (const tenant of ["a", "default"]) {
      await setup(url, adminToken, "POST", `/apps?tenant=${tenant}`, { name: "web" });
    }
    const doc = await (
      await fetch(`${url}/api/v1/openapi.json`, { headers: { authorization: `Bearer ${adminToken}` } })
    ).json();
    const ops = operationsOf(doc as Parameters<typeof operationsOf>[0]);
    const credentials: Credentials = {
      valid: [
        adminToken,
        t.ownerA,
        t.deployerA,
        t.viewerA,
        t.ownerAViewerB,
        t.serviceA,
        t.agentN1,
        t.gateway,
        t.ingestA,
        spans,
        t.join,
      ],
      dead: [t.revoked, t.expired],
    };
    const shared = new Agent({ connections: options.concurrency ?? 16 });
    agents.push(shared);
    // Bad credentials count per client address (429 after a burst): they come from other loopback addresses.
    const other: Agent[] = [];
    for (let i = 0; i < 250; i++) other.push(new Agent({ localAddress: `127.0.3.${i + 1}`, connections: 2 }));
    agents.push(...other);

    const report: FuzzReport = {
      seed: options.seed,
      requests: 0,
      seconds: 0,
      statuses: {},
      routes: {},
      violations: [],
      crashed: false,
      serverLog,
    };
    const indexes =
      options.replay !== undefined ? [options.replay] : Array.from({ length: options.requests }, (_, i) => i);
    const t0 = Date.now();
    let next = 0;
    let lastLog = t0;
    const worker = async () => {
      while (next < indexes.length && !report.crashed) {
        const req = generate(options.seed, indexes[next++], ops, credentials);
        const dispatcher = req.ownAddress ? other[req.index % other.length] : shared;
        const v = await send(
          url,
          req,
          dispatcher,
          report,
          options.replay !== undefined ? options.log : undefined,
        );
        if (v) report.violations.push(v);
        if (child.exitCode !== null || child.signalCode !== null) report.crashed = true;
        if (options.log && Date.now() - lastLog > 10_000) {
          lastLog = Date.now();
          options.log(`${report.requests} requests, ${report.violations.length} violations`);
        }
      }
    };
    await Promise.all(Array.from({ length: options.concurrency ?? 16 }, worker));
    report.seconds = (Date.now() - t0) / 1000;
    report.crashed ||= !(await healthy(url));
    return report;
  } finally {
    await Promise.all(agents.map((a) => a.destroy()));
    await stop(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Sends one request and judges the reply; returns the violation, if any. */
async function send(
  url: string,
  req: FuzzRequest,
  dispatcher: Agent,
  report: FuzzReport,
  log?: (line: string) => void,
): Promise<Violation | undefined> {
  report.requests++;
  report.routes[req.route] = (report.routes[req.route] ?? 0) + 1;
  let status: number;
  let text = "";
  let type = "";
  try {
    const res = await request(`${url}${req.path}`, {
      method: req.method as "GET",
      headers: req.headers,
      body: req.body,
      dispatcher,
      headersTimeout: REQUEST_TIMEOUT_MS,
      bodyTimeout: REQUEST_TIMEOUT_MS,
    });
    status = res.statusCode;
    type = String(res.headers["content-type"] ?? "");
    // Streams (watch, log follow, SSE) are judged by their headers, then dropped.
    if (status === 200 && (type.includes("ndjson") || type.includes("event-stream"))) res.body.destroy();
    else text = await res.body.text();
  } catch (err) {
    report.statuses.error = (report.statuses.error ?? 0) + 1;
    return { request: req, problem: `no reply: ${(err as Error).message}` };
  }
  report.statuses[status] = (report.statuses[status] ?? 0) + 1;
  log?.(`${status} ${type}\n${text.slice(0, 4000)}`);
  if (status >= 500) return { request: req, problem: `status ${status}`, status, reply: text.slice(0, 2000) };
  if (status >= 400) {
    let body: { code?: unknown; message?: unknown } | undefined;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (
      !type.includes("application/json") ||
      typeof body?.code !== "string" ||
      typeof body.message !== "string"
    ) {
      return {
        request: req,
        problem: `a ${status} that is not a JSON {code, message} (content-type ${type || "none"})`,
        status,
        reply: text.slice(0, 2000),
      };
    }
  }
  return undefined;
}

/** A setup call with the admin token; fails loudly. */
async function setup(url: string, token: string, method: string, path: string, body: unknown): Promise<void> {
  const res = await fetch(`${url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
}

/** The child's first stdout line, once it listens. */
function listening(
  child: ChildProcess,
  log: string[],
): Promise<{ url: string; adminToken: string; spans: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${log.join("\n")}`)), 60_000);
    createInterface({ input: child.stdout! }).once("line", (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line));
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before it listened:\n${log.join("\n")}`));
    });
  });
}

async function healthy(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(10_000) })).status === 200;
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after 10 s. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** A violation as text a person can replay: the request (method, path, headers, body) and what went wrong. */
export function describe(v: Violation, seed: number): string {
  const r = v.request;
  const lines = [
    `#${r.index} ${r.route}: ${v.problem}`,
    `  ${r.method} ${r.path.length > 500 ? `${r.path.slice(0, 500)}… (${r.path.length} chars)` : r.path}`,
    `  headers: ${JSON.stringify(r.headers).slice(0, 600)}`,
  ];
  if (r.body !== undefined) {
    const text = r.body.toString("utf8");
    const printable = Buffer.from(text, "utf8").equals(r.body) && r.body.length <= 1000;
    if (printable) lines.push(`  body: ${JSON.stringify(text)}`);
    else {
      const file = join(tmpdir(), `herd-fuzz-${seed}-${r.index}.body`);
      writeFileSync(file, r.body);
      lines.push(
        `  body: ${r.body.length} bytes in ${file} (starts ${r.body.subarray(0, 48).toString("hex")})`,
      );
    }
  }
  if (v.reply !== undefined) lines.push(`  reply: ${v.reply.slice(0, 400)}`);
  lines.push(`  replay: npm run fuzz -- --seed ${seed} --replay ${r.index}`);
  return lines.join("\n");
}

/** The report as a few lines: counts per status and route, the time, the violations. */
export function summary(report: FuzzReport): string {
  const statuses = Object.entries(report.statuses)
    .sort()
    .map(([s, n]) => `${s}: ${n}`)
    .join(", ");
  const routes = Object.entries(report.routes)
    .sort((a, b) => b[1] - a[1])
    .map(([r, n]) => `  ${String(n).padStart(7)}  ${r}`);
  return [
    `fuzz: ${report.requests} requests (seed ${report.seed}) in ${report.seconds.toFixed(1)} s ` +
      `(${Math.round(report.requests / Math.max(report.seconds, 0.001))}/s); ` +
      `violations: ${report.violations.length}; server ${report.crashed ? "CRASHED" : "stayed up"}`,
    `per status: ${statuses}`,
    `per route (${Object.keys(report.routes).length} routes):`,
    ...routes,
  ].join("\n");
}
