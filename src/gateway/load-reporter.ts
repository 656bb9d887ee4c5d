/**
 * Sends a gateway process's live load figures to the control plane:
 * `PUT /api/v1/gateways/:id/load` every second with the interval that just
 * ended (LoadBook.report, load-recorder.ts).
 *
 * At most one PUT in flight: while one is, the interval goes on, and the next
 * report covers the longer interval. When the control plane is away a report
 * is dropped (the control plane only needs the last minutes). Nothing is sent
 * while nothing had traffic and nothing changed: an empty report once after
 * the last busy one, then silence.
 */

import { HEDGE } from "../common/hedge.ts";
import type { Logger } from "../common/log.ts";
import { type ServerList, serversOf } from "../common/server-list.ts";
import type { LoadReport } from "../model/load.ts";
import type { LoadBook } from "./load-recorder.ts";

/** How a LoadReporter is set up. */
export interface LoadReporterOptions {
  /** Control-plane base URL. */
  server: string;
  token: string;
  /** This process's reporter id (a gateway's id, or `<id>.w<n>` for a worker). */
  id: string;
  logger: Logger;
  /** The book to read: the serving table's (it is handed from table to table). */
  book(): LoadBook;
  /** Default 1000. */
  intervalMs?: number;
}

/** Reports a gateway process's load every second. */
export class LoadReporter {
  readonly #options: LoadReporterOptions;
  readonly #servers: ServerList;
  readonly #url: string;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<void> | undefined;
  #intervalStart = performance.now();
  #lastEmpty = true;
  #failing = false;
  /** Reports sent and dropped (the control plane away or refusing), for tests and logs. */
  sent = 0;
  dropped = 0;

  constructor(options: LoadReporterOptions) {
    this.#options = options;
    this.#servers = serversOf(options.server);
    this.#url = `/api/v1/gateways/${encodeURIComponent(options.id)}/load`;
  }

  start(): void {
    this.#intervalStart = performance.now();
    this.#timer = setInterval(() => this.tick(), this.#options.intervalMs ?? 1000);
    this.#timer.unref();
  }

  /** Ends the interval and sends it (unless a PUT is still in flight, or there is nothing to say). */
  tick(): void {
    if (this.#inFlight !== undefined) return;
    const now = performance.now();
    const report = this.#options
      .book()
      .report(Date.now(), Math.max(1, Math.round(now - this.#intervalStart)));
    this.#intervalStart = now;
    const empty = report.services.length === 0;
    if (empty && this.#lastEmpty) return;
    this.#lastEmpty = empty;
    this.#inFlight = this.#put(report).finally(() => {
      this.#inFlight = undefined;
    });
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#inFlight;
  }

  async #put(report: LoadReport): Promise<void> {
    try {
      // node:http, not global fetch: fetch would load Node's bundled undici (common/api-request.ts).
      // Hedged: a report held by a frozen leader goes to the others too after 1 s (a follower names the leader).
      const res = await this.#servers.request(
        this.#url,
        {
          method: "PUT",
          headers: { authorization: `Bearer ${this.#options.token}`, "content-type": "application/json" },
          body: JSON.stringify(report),
          signal: AbortSignal.timeout(3000),
        },
        { hedge: HEDGE },
      );
      const text = await res.text();
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 300)}`);
      this.sent++;
      this.#failing = false;
    } catch (err) {
      // Not sent again: the next interval says what is true then (and a reporter that stays silent
      // counts as idle at the control plane after a few seconds).
      this.dropped++;
      if (!this.#failing) {
        this.#options.logger.warn("cannot report live load to the control plane; reports are dropped", {
          error: err instanceof Error ? err.message : String(err),
        });
      }
      this.#failing = true;
    }
  }
}
