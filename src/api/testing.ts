/** Test helpers: a control plane for a test file, and calls to its API as its tests make them. */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, type ServerOptions, startServer } from "../daemons/control-plane.ts";

export interface CallOptions {
  /** Default: the server's admin token. */
  token?: string;
  headers?: Record<string, string>;
  /** For a body given as a string or Buffer (sent as is); objects are JSON. */
  contentType?: string;
}

/** `method path` under /api/v1 with a bearer token; the status, headers and the JSON body (if any). */
export async function apiCall(
  server: RunningServer,
  method: string,
  path: string,
  body?: unknown,
  options: CallOptions = {},
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever the API answered
): Promise<{ status: number; headers: Headers; body: any }> {
  const raw = typeof body === "string" || Buffer.isBuffer(body);
  const res = await fetch(`${server.url}/api/v1${path}`, {
    method,
    headers: {
      authorization: `Bearer ${options.token ?? server.adminToken}`,
      ...(body !== undefined ? { "content-type": options.contentType ?? "application/json" } : {}),
      ...options.headers,
    },
    body: body === undefined ? undefined : raw ? (body as string | Buffer) : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

/**
 * A real control plane for a test file: started in a `before` hook on a temp
 * data dir (`prefix`), closed and removed in an `after` hook. A test file
 * takes it with `before(async () => { server = await fixture.started; })`.
 */
export function testServer(
  prefix: string,
  options: Omit<ServerOptions, "dataDir" | "port" | "logger"> = {},
): { started: Promise<RunningServer>; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const started = Promise.withResolvers<RunningServer>();
  // A start that fails fails the file's hooks, not an unhandled rejection.
  started.promise.catch(() => {});
  before(async () => {
    try {
      started.resolve(await startServer({ ...options, dataDir: dir, port: 0, logger: silentLogger }));
    } catch (err) {
      started.reject(err);
      throw err;
    }
  });
  after(async () => {
    const running = await started.promise.catch(() => undefined);
    await running?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { started: started.promise, dir };
}

/** Polls `f` every `everyMs` until it returns something other than undefined; fails naming `what` after `ms`. */
export async function waitFor<T>(
  what: string,
  f: () => Promise<T | undefined>,
  ms = 10_000,
  everyMs = 25,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
