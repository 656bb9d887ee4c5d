/**
 * A hard size limit for a telemetry SQLite file (logs, spans): the pages in
 * use never exceed `maxBytes`, nor what the disk has free minus a reserve, so
 * telemetry never fills the disk. Over the limit, the oldest rows go first —
 * those with the lowest values of an increasing column (an id or seq in
 * arrival order) — at least a tenth at a time, so a store at its limit is not
 * trimmed on every write.
 */

import { statfsSync } from "node:fs";
import type { DatabaseSync } from "node:sqlite";

export class SizeBound {
  readonly maxBytes: number;
  readonly #db: DatabaseSync;
  readonly #dir: string;
  readonly #reserveDisk: number;
  #lastDiskCheck = Number.NEGATIVE_INFINITY;
  #diskBudget = Number.POSITIVE_INFINITY;

  /** `dir`: where the file is (its filesystem's free space counts); `reserveDisk`: bytes always left free there. */
  constructor(db: DatabaseSync, dir: string, maxBytes: number, reserveDisk: number) {
    this.#db = db;
    this.#dir = dir;
    this.maxBytes = maxBytes;
    this.#reserveDisk = reserveDisk;
  }

  /** Bytes of the pages in use (free pages are reused before the file grows). */
  usedBytes(): number {
    return (this.#pragma("page_count") - this.#pragma("freelist_count")) * this.#pragma("page_size");
  }

  /** The most the file may hold now: its limit, or less when the disk is short (statfs at most every 5 s). */
  limit(now: number): number {
    if (now - this.#lastDiskCheck >= 5000) {
      this.#lastDiskCheck = now;
      try {
        const fs = statfsSync(this.#dir);
        this.#diskBudget =
          this.usedBytes() +
          this.#pragma("freelist_count") * this.#pragma("page_size") +
          fs.bavail * fs.bsize -
          this.#reserveDisk;
      } catch {
        this.#diskBudget = Number.POSITIVE_INFINITY;
      }
    }
    return Math.min(this.maxBytes, this.#diskBudget);
  }

  /** Deletes the oldest rows of `table` (lowest `column`) while over the limit; returns how many. */
  dropOldest(table: string, column: string, now: number): number {
    const limit = this.limit(now);
    let dropped = 0;
    for (let round = 0; round < 20; round++) {
      const used = this.usedBytes();
      if (used <= limit) break;
      const { lo, hi } = this.#db
        .prepare(`SELECT MIN(${column}) AS lo, MAX(${column}) AS hi FROM ${table}`)
        .get() as {
        lo: number | null;
        hi: number | null;
      };
      if (lo === null || hi === null) break;
      const share = limit <= 0 ? 1 : Math.min(1, Math.max(0.1, (used - limit) / used + 0.02));
      const upTo = lo + Math.max(1, Math.ceil((hi - lo + 1) * share));
      dropped += Number(this.#db.prepare(`DELETE FROM ${table} WHERE ${column} < ?`).run(upTo).changes);
    }
    return dropped;
  }

  #pragma(name: string): number {
    return Number(Object.values(this.#db.prepare(`PRAGMA ${name}`).get() as object)[0]);
  }
}
