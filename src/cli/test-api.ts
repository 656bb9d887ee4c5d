/**
 * A real HTTP server for the CLI's tests: each test answers requests with its
 * own handler and can look at what was asked.
 */

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** One request the test server received. */
export interface RecordedRequest {
  method: string;
  /** Path and query, e.g. `/api/v1/apps?tenant=t`. */
  url: string;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

/** A running test server. */
export interface TestApi {
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** Answers with JSON and a status. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

/** Starts a server on 127.0.0.1 and a free port; the handler sees each request with its body read. */
export async function startTestApi(
  handler: (req: RecordedRequest, res: ServerResponse) => void | Promise<void>,
): Promise<TestApi> {
  const requests: RecordedRequest[] = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const recorded = {
      method: req.method ?? "",
      url: req.url ?? "",
      headers: req.headers,
      body: Buffer.concat(chunks),
    };
    requests.push(recorded);
    await handler(recorded, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** How runCli runs the CLI: HERD_SERVER/HERD_TOKEN (when given) and more environment. */
export interface RunCliOptions {
  server?: string;
  token?: string;
  /** More environment (XDG_CONFIG_HOME, HERD_TENANT, …). */
  env?: Record<string, string>;
  /** The home directory (default: one that does not exist, so no login config is read). */
  home?: string;
  /** What stdin holds when a secret is read (herd login). */
  stdin?: string;
  now?: number;
  cwd?: string;
  interrupt?: () => AbortSignal;
}

/** Runs the CLI in-process; what it printed and its exit code. */
export async function runCli(
  argv: string[],
  options: RunCliOptions,
): Promise<{ code: number; out: string; err: string }> {
  const { main } = await import("./main.ts");
  let out = "";
  let err = "";
  const env: Record<string, string> = { ...options.env };
  if (options.server !== undefined) env.HERD_SERVER = options.server;
  if (options.token !== undefined) env.HERD_TOKEN = options.token;
  const code = await main(argv, {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    env,
    cwd: options.cwd ?? "/",
    home: options.home ?? "/nonexistent",
    stdinIsTTY: false,
    readSecret: async () => (options.stdin ?? "").split("\n")[0] ?? "",
    now: () => options.now ?? Date.now(),
    interrupt: options.interrupt,
  });
  return { code, out, err };
}
