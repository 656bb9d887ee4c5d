/**
 * Ships the gateway's span batches (JSON made by GatewaySpans at flush, read
 * by observe/traces/gateway-batch.ts) to the control plane's span ingest: node:http with one kept-alive
 * connection, one post in flight, a bounded queue (the oldest bodies are
 * dropped and counted when the ingest is away), retries with backoff on 429,
 * 5xx and network errors. Cheaper per batch than fetch, which matters on the
 * proxy's event loop.
 *
 *   GatewaySpans.flush ─► postBatch(body) ─► queue (≤ maxPendingSpans) ─► POST url ─► 2xx: done
 *                                                                               └► 429/5xx/error: retry, then drop
 */

import type http from "node:http";
import https from "node:https";
import { nodeHttp } from "../common/node-http.ts";
import type { SpanBatchSink } from "./spans.ts";

export interface ShipperStats {
  sent: number;
  dropped: number;
  pending: number;
  lastError: string | null;
}

export class SpanShipper implements SpanBatchSink {
  /** Where to post now (a function: the control plane's server in use may change, common/server-list.ts). */
  readonly #urlOf: () => URL;
  readonly #headers: Record<string, string>;
  readonly #agent: http.Agent;
  readonly #maxPendingSpans: number;
  readonly #maxAttempts: number;
  #queue: { body: string; spans: number }[] = [];
  #queuedSpans = 0;
  #running: Promise<void> | undefined;
  #closed = false;
  #deadline = Number.POSITIVE_INFINITY;
  readonly #stats: ShipperStats = { sent: 0, dropped: 0, pending: 0, lastError: null };

  constructor(
    url: string | (() => string),
    token: string,
    options: { maxPendingSpans?: number; maxAttempts?: number } = {},
  ) {
    this.#urlOf = typeof url === "string" ? () => new URL(url) : () => new URL(url());
    this.#headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const Agent = this.#urlOf().protocol === "https:" ? https.Agent : nodeHttp.Agent;
    this.#agent = new Agent({ keepAlive: true, maxSockets: 1 });
    this.#maxPendingSpans = options.maxPendingSpans ?? 20_000;
    this.#maxAttempts = options.maxAttempts ?? 4;
  }

  /** Queues a body; drops the oldest past the bound. False once closed. */
  postBatch(body: string, spans: number): boolean {
    if (this.#closed) return false;
    this.#queue.push({ body, spans });
    this.#queuedSpans += spans;
    while (this.#queuedSpans > this.#maxPendingSpans && this.#queue.length > 1) {
      const old = this.#queue.shift() as { spans: number };
      this.#queuedSpans -= old.spans;
      this.#stats.dropped += old.spans;
    }
    this.#running ??= this.#sendAll().finally(() => {
      this.#running = undefined;
    });
    return true;
  }

  stats(): ShipperStats {
    return { ...this.#stats, pending: this.#queuedSpans };
  }

  /** Sends what is queued within `graceMs`, drops the rest, and closes the connection. */
  async close(graceMs = 1000): Promise<void> {
    this.#closed = true;
    this.#deadline = Date.now() + graceMs;
    const timer = new Promise<void>((resolve) => setTimeout(resolve, graceMs + 500).unref());
    await Promise.race([this.#running, timer]);
    this.#stats.dropped += this.#queuedSpans;
    this.#queue = [];
    this.#queuedSpans = 0;
    this.#agent.destroy();
  }

  async #sendAll(): Promise<void> {
    while (this.#queue.length > 0) {
      const next = this.#queue[0] as { body: string; spans: number };
      let sent = false;
      for (let attempt = 1; attempt <= this.#maxAttempts && Date.now() < this.#deadline; attempt++) {
        const outcome = await this.#post(next.body);
        if (outcome === "ok") {
          sent = true;
          break;
        }
        if (outcome === "refused") break;
        // Waits are short: the queue bound, not the wait, decides what is lost while the ingest is away.
        await new Promise((resolve) => setTimeout(resolve, Math.min(4000, 250 * 2 ** attempt)).unref());
      }
      // It may have been dropped by the bound meanwhile.
      if (this.#queue[0] === next) {
        this.#queue.shift();
        this.#queuedSpans -= next.spans;
        if (sent) this.#stats.sent += next.spans;
        else this.#stats.dropped += next.spans;
      }
    }
  }

  /** One POST: ok (2xx), retry (429, 5xx, network) or refused (another 4xx: retrying cannot help). */
  #post(body: string): Promise<"ok" | "retry" | "refused"> {
    const url = this.#urlOf();
    return new Promise((resolve) => {
      const req = (url.protocol === "https:" ? https : nodeHttp).request(
        url,
        {
          method: "POST",
          agent: this.#agent,
          headers: { ...this.#headers, "content-length": Buffer.byteLength(body) },
          timeout: 10_000,
        },
        (res) => {
          res.resume();
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve("ok");
            else {
              this.#stats.lastError = `${url.href} answered ${status}`;
              resolve(status === 429 || status === 408 || status >= 500 ? "retry" : "refused");
            }
          });
          res.on("error", () => resolve("retry"));
        },
      );
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", (err) => {
        this.#stats.lastError = `${url.href}: ${err.message}`;
        resolve("retry");
      });
      req.end(body);
    });
  }
}
