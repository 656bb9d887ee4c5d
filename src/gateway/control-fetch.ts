/**
 * The gateway's calls to the control plane (snapshot, watch, status, JWT
 * secrets) on node:http / node:https, with a fetch-like answer. Global fetch
 * would load Node's bundled undici and its WebAssembly parser beside the one
 * the upstream pool uses (about 18 MB of RSS for a handful of calls); these
 * calls need none of it.
 *
 *   controlFetch(url, {method, headers, body, signal}) ─► http(s).request ─► ControlAnswer
 *                                                           (keep-alive agent per scheme)
 *
 * https URLs are verified against the process's default CAs, which include
 * herd's CA once `trustCaInProcess` ran (common/api-ca.ts).
 */

import https from "node:https";
import { nodeHttp } from "../common/node-http.ts";

/** What a call sends. */
export interface ControlRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Aborts the call, also while the answer's body is read; its reason is the error. */
  signal?: AbortSignal;
}

/** An answer: the status, and the body read whole or as it comes. */
export interface ControlAnswer {
  status: number;
  ok: boolean;
  statusText: string;
  /** The body as it arrives (Buffers); ends when the answer does. */
  body: AsyncIterable<Uint8Array>;
  text(): Promise<string>;
  json(): Promise<unknown>;
  /** Drops the rest of the body and the connection under it. */
  cancel(): void;
}

const AGENTS = {
  "http:": new nodeHttp.Agent({ keepAlive: true, maxSockets: 4 }),
  "https:": new https.Agent({ keepAlive: true, maxSockets: 4 }),
};

/** Sends one request to the control plane; rejects on a connection error or abort, never on a status. */
export function controlFetch(url: string, options: ControlRequest = {}): Promise<ControlAnswer> {
  const target = new URL(url);
  const client = target.protocol === "https:" ? https : target.protocol === "http:" ? nodeHttp : null;
  if (client === null) return Promise.reject(new Error(`${url}: only http and https are supported`));
  const headers: Record<string, string | number> = { ...options.headers };
  if (options.body !== undefined) headers["content-length"] = Buffer.byteLength(options.body);
  return new Promise((resolve, reject) => {
    const req = client.request(target, {
      method: options.method ?? "GET",
      headers,
      agent: AGENTS[target.protocol as "http:" | "https:"],
      signal: options.signal,
    });
    req.on("error", reject);
    req.once("response", (res) => {
      const status = res.statusCode ?? 0;
      const text = async (): Promise<string> => {
        let out = "";
        res.setEncoding("utf8");
        for await (const chunk of res) out += chunk;
        return out;
      };
      resolve({
        status,
        ok: status >= 200 && status < 300,
        statusText: res.statusMessage ?? "",
        body: res,
        text,
        json: async () => JSON.parse(await text()),
        cancel: () => {
          res.destroy();
        },
      });
    });
    req.end(options.body);
  });
}
