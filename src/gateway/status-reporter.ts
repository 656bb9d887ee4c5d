/**
 * Tells the control plane which config version this gateway serves:
 * `PUT /api/v1/gateways/:id/status` soon after each table change (ACK) or
 * refused configuration (NACK, with the reason), and every `intervalMs` as a
 * liveness signal. Reports are coalesced: at most one in flight, the latest
 * state wins. When the control plane is away reports are dropped (the next
 * one says everything) and the gateway serves on regardless.
 */

import type { Logger } from "../common/log.ts";
import { type ServerList, serversOf } from "../common/server-list.ts";
import type { GatewayReport } from "../model/live-config.ts";

/** How a StatusReporter is set up. */
export interface StatusReporterOptions {
  /** Control-plane base URL. */
  server: string;
  token: string;
  /** This gateway's id in GET /api/v1/gateways. */
  id: string;
  logger: Logger;
  /** What to report now; undefined while there is nothing to say (no build yet). */
  current(): GatewayReport | undefined;
  /** Liveness: a report at least this often. Default 10 s. */
  intervalMs?: number;
  /** At most one report per this many ms after changes. Default 100. */
  minGapMs?: number;
}

/** Sends a gateway's reports to the control plane. */
export class StatusReporter {
  readonly #options: StatusReporterOptions;
  readonly #servers: ServerList;
  readonly #url: string;
  #inFlight: Promise<void> | undefined;
  #again = false;
  #lastSent = Number.NEGATIVE_INFINITY;
  #soon: NodeJS.Timeout | undefined;
  #every: NodeJS.Timeout | undefined;
  #failing = false;
  #closed = false;

  constructor(options: StatusReporterOptions) {
    this.#options = options;
    this.#servers = serversOf(options.server);
    this.#url = `/api/v1/gateways/${encodeURIComponent(options.id)}`;
  }

  /** Starts the periodic reports and sends one now. */
  start(): void {
    this.#every = setInterval(() => this.changed(), this.#options.intervalMs ?? 10_000);
    this.#every.unref();
    this.changed();
  }

  /** Something changed: report soon (coalesced with other changes). */
  changed(): void {
    if (this.#closed || this.#every === undefined) return;
    if (this.#inFlight !== undefined) {
      this.#again = true;
      return;
    }
    if (this.#soon !== undefined) return;
    const wait = this.#lastSent + (this.#options.minGapMs ?? 100) - performance.now();
    if (wait <= 0) {
      this.#send();
      return;
    }
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      this.#send();
    }, wait);
    this.#soon.unref();
  }

  /** Stops reporting; with `goodbye`, tells the control plane this gateway is gone. */
  async close(goodbye = true): Promise<void> {
    this.#closed = true;
    clearInterval(this.#every);
    clearTimeout(this.#soon);
    await this.#inFlight;
    if (!goodbye) return;
    await this.#servers
      .request(this.#url, {
        method: "DELETE",
        headers: { authorization: `Bearer ${this.#options.token}` },
        signal: AbortSignal.timeout(2000),
      })
      .then((res) => res.cancel())
      .catch(() => {});
  }

  #send(): void {
    const report = this.#options.current();
    if (report === undefined || this.#closed) return;
    this.#lastSent = performance.now();
    this.#again = false;
    this.#inFlight = this.#put(report).finally(() => {
      this.#inFlight = undefined;
      if (this.#again) this.changed();
    });
  }

  async #put(report: GatewayReport): Promise<void> {
    try {
      const res = await this.#servers.request(`${this.#url}/status`, {
        method: "PUT",
        headers: { authorization: `Bearer ${this.#options.token}`, "content-type": "application/json" },
        body: JSON.stringify(report),
        signal: AbortSignal.timeout(5000),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 300)}`);
      this.#failing = false;
    } catch (err) {
      // Once per outage: the control plane being away is also reported by the config source.
      if (!this.#failing) {
        this.#options.logger.warn("cannot report the gateway's status to the control plane", {
          error: err instanceof Error ? err.message : String(err),
        });
      }
      this.#failing = true;
    }
  }
}
