/** Test helper: a call to a running control plane's API, as its tests make them. */

import type { RunningServer } from "./server.ts";

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
