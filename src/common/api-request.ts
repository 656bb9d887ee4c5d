/**
 * Requests from herd's components to the control plane's API (the gateway's
 * snapshot, watch, status, load, wake, JWT-secret and certificate calls; the
 * agent's heartbeats, log batches, slug downloads, telemetry relay and join;
 * herd up's example deploy) on `node:http`/`https` instead of the global
 * `fetch`: Node's bundled undici behind `fetch` and `Response` costs a process
 * about 12–15 MB (docs/benchmarks.md, Footprint). node:http comes through
 * node-http.ts (require, not an ES import: see there).
 *
 *   apiRequest(url, {method, headers, body, signal, ca}) ─► keep-alive connection ─► ApiAnswer (body unread)
 *
 * https URLs are verified against `ca` when given, else the process's default
 * CAs (which include herd's CA once `trustCaInProcess` ran, common/api-ca.ts).
 */

import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import { nodeHttp as http, nodeHttps } from "./node-http.ts";

/** What a request sends. */
export interface ApiRequestInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Ends the request (connect, answer and body) early; its reason is the error. */
  signal?: AbortSignal;
  /** The CA that signed an https API's certificate (herd's, common/api-ca.ts): trusted instead of the system's. */
  ca?: string;
}

/** An answer whose body has not been read yet: read it once (text, json, buffer or the stream) or cancel it. */
export interface ApiAnswer {
  status: number;
  ok: boolean;
  statusText: string;
  headers: IncomingHttpHeaders;
  /** The body as a stream (Buffers); ends when the answer does. */
  body: IncomingMessage;
  buffer(): Promise<Buffer>;
  text(): Promise<string>;
  json(): Promise<unknown>;
  /**
   * Discards the body (read and dropped, so the connection serves the next
   * request). For an answer that does not end by itself (a watch), abort the
   * signal instead.
   */
  cancel(): void;
}

// Connections are kept between requests, as fetch's pool did: the agent and the gateway call every second.
const httpAgent = new http.Agent({ keepAlive: true });
let httpsAgent: import("node:https").Agent | undefined;

/** Sends one request; resolves when the answer's status and headers have arrived, rejects on a connection error or abort (never on a status). */
export function apiRequest(url: string, init: ApiRequestInit = {}): Promise<ApiAnswer> {
  const target = new URL(url);
  const secure = target.protocol === "https:";
  if (!secure && target.protocol !== "http:")
    return Promise.reject(new Error(`${url}: only http and https are supported`));
  return new Promise((resolve, reject) => {
    // node:https (with node:tls) only for an https URL: see common/node-http.ts.
    const https = secure ? nodeHttps() : undefined;
    if (https) httpsAgent ??= new https.Agent({ keepAlive: true });
    const req = (https ?? http).request(target, {
      method: init.method ?? "GET",
      headers: init.headers,
      agent: https ? httpsAgent : httpAgent,
      ...(secure && init.ca !== undefined ? { ca: init.ca } : {}),
      signal: init.signal,
    });
    req.on("error", (err) => reject(init.signal?.aborted ? init.signal.reason : err));
    req.on("response", (res) => {
      const buffer = async () => {
        const chunks: Buffer[] = [];
        try {
          for await (const chunk of res) chunks.push(chunk as Buffer);
        } catch (err) {
          throw init.signal?.aborted ? init.signal.reason : err;
        }
        return Buffer.concat(chunks);
      };
      const status = res.statusCode ?? 0;
      resolve({
        status,
        ok: status >= 200 && status < 300,
        statusText: res.statusMessage ?? "",
        headers: res.headers,
        body: res,
        buffer,
        text: async () => (await buffer()).toString("utf8"),
        json: async () => JSON.parse((await buffer()).toString("utf8")) as unknown,
        cancel: () => void res.resume(),
      });
    });
    req.end(init.body);
  });
}
