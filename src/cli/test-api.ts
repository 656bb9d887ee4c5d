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

/** Runs the CLI in-process against `server` with `token`; what it printed and its exit code. */
export async function runCli(
  argv: string[],
  options: { server: string; token: string; now?: number; cwd?: string; interrupt?: () => AbortSignal },
): Promise<{ code: number; out: string; err: string }> {
  const { main } = await import("./main.ts");
  let out = "";
  let err = "";
  const code = await main(argv, {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    env: { HERD_SERVER: options.server, HERD_TOKEN: options.token },
    cwd: options.cwd ?? "/",
    home: "/nonexistent",
    stdinIsTTY: false,
    now: () => options.now ?? Date.now(),
    interrupt: options.interrupt,
  });
  return { code, out, err };
}
