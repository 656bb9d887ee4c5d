/**
 * Ships instances' stdout and stderr to the control plane in batches. Lines
 * wait in a bounded buffer while the server is away or says 429; a full
 * buffer leaves new lines in the instances' files (back-pressure).
 */

import type { ApiAnswer } from "../common/api-request.ts";
import type { Logger } from "../common/log.ts";
import type { LogBatch, LogLine } from "../model/protocol.ts";
import type { AgentMetrics } from "./agent-metrics.ts";
import type { InstanceLogs } from "./instance-logs.ts";

const LOG_BATCH_LINES = 1000;
// A batch stays well under the server's 16 MiB body limit.
const LOG_BATCH_BYTES = 4 * 1024 * 1024;
// Lines held in memory while the server is away or busy; beyond this the agent stops reading the
// files, so the log files themselves hold the rest (until rotation overtakes them).
const LOG_BUFFER_LINES = 20_000;

/** An instance whose output is shipped. */
interface Source {
  id: string;
  log: InstanceLogs;
}

export interface LogShipperOptions {
  /** The node's name, in every batch. */
  node: string;
  /** POSTs a JSON body to the control plane. */
  post: (path: string, body: unknown) => Promise<ApiAnswer>;
  metrics: AgentMetrics;
  log: Logger;
}

export class LogShipper {
  readonly #options: LogShipperOptions;
  #lines: LogLine[] = [];
  #droppedLines = 0;
  #shipping = false;
  /** Not before this time (ms): the server said 429 with Retry-After. */
  #shipAfter = 0;

  constructor(options: LogShipperOptions) {
    this.#options = options;
  }

  /** Takes an instance's new lines into the buffer; `force` even when it is full (the instance is going away). */
  async collect(inst: Source, force = false): Promise<void> {
    // A full buffer leaves new lines in the files (back-pressure) instead of dropping old ones; a
    // removed instance's last lines are taken anyway, since its files go with it.
    if (!force && this.#lines.length >= LOG_BUFFER_LINES) return;
    const time = new Date().toISOString();
    for (const stream of ["stdout", "stderr"] as const) {
      const lines = await inst.log[stream].read().catch(() => []);
      for (const line of lines) this.#lines.push({ instance: inst.id, time, stream, line });
    }
    const excess = this.#lines.length - 2 * LOG_BUFFER_LINES;
    if (excess > 0) {
      this.#lines.splice(0, excess);
      this.#droppedLines += excess;
      this.#options.metrics.logLines.inc({ result: "dropped" }, excess);
    }
  }

  /** One round: read every instance's new lines and send them, unless a round runs or the server asked to wait. */
  async ship(instances: Iterable<Source>): Promise<void> {
    if (this.#shipping || Date.now() < this.#shipAfter) return;
    this.#shipping = true;
    try {
      await this.flush(instances);
    } finally {
      this.#shipping = false;
    }
  }

  /** Reads and sends what is left (the agent stopping), whatever the last round did. */
  async flush(instances: Iterable<Source>): Promise<void> {
    for (const inst of instances) await this.collect(inst);
    await this.#send();
  }

  /**
   * Sends the buffer in batches. A line leaves the buffer only once the server
   * took it: on 429 the agent waits Retry-After and sends the same lines
   * again; when the server is away they wait. A 400 means the batch can never
   * be taken: it is dropped with a warning naming the server's reason.
   */
  async #send(): Promise<void> {
    while (this.#lines.length > 0) {
      let count = 0;
      let bytes = 0;
      while (count < Math.min(LOG_BATCH_LINES, this.#lines.length)) {
        bytes += this.#lines[count].line.length + 100;
        if (count > 0 && bytes > LOG_BATCH_BYTES) break;
        count++;
      }
      const lines = this.#lines.slice(0, count);
      const batch: LogBatch = { node: this.#options.node, lines };
      try {
        const res = await this.#options.post("/api/v1/logs", batch);
        if (res.status === 429) {
          res.cancel();
          const wait = Number(res.headers["retry-after"]);
          this.#shipAfter =
            Date.now() + (Number.isFinite(wait) && wait > 0 ? Math.min(wait, 60) * 1000 : 1000);
          return;
        }
        if (res.status === 400 || res.status === 413) {
          const reason = await res.text().catch(() => "");
          this.#options.metrics.logLines.inc({ result: "dropped" }, lines.length);
          this.#options.log.warn("the server refused a log batch as malformed; it is dropped", {
            lines: lines.length,
            status: res.status,
            reason: reason.slice(0, 500),
          });
        } else {
          res.cancel();
          if (!res.ok) throw new Error(`answered ${res.status}`);
          this.#options.metrics.logLines.inc({ result: "shipped" }, lines.length);
        }
      } catch {
        // Kept for the next round; the buffer bound decides what is lost if the server stays away.
        return;
      }
      this.#lines.splice(0, lines.length);
      if (this.#droppedLines > 0) {
        this.#options.log.warn("log lines were dropped while the server was away", {
          dropped: this.#droppedLines,
        });
        this.#droppedLines = 0;
      }
    }
  }
}
