/**
 * A read-only view of a Tsdb's file, for another thread (the PromQL query
 * workers, promql/jobs.ts): it opens `metrics.db` read-only and mirrors what
 * the writer keeps in memory (the series index and the head).
 *
 *   snapshot(): BEGIN (one consistent read of the WAL) ─► new series (id > last seen)
 *              ─► new head rows (rowid > last seen; the whole head again after a flush)
 *              ─► raw_from ─► select / read … ─► release(): COMMIT
 *
 * Every acknowledged write is committed before it is acknowledged, so a
 * query sees everything written before it started. Series are never deleted
 * (tsdb.ts keeps them in the index), so reading new ones is enough.
 */

import { join } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { Labels, Matcher } from "./labels.ts";
import { NAME } from "./labels.ts";
import {
  type Head,
  READ_CHUNKS_SQL,
  READ_DOWN_SQL,
  type ReadStatements,
  readSamples,
  type Samples,
  type SeriesRef,
  selectSeries,
} from "./tsdb.ts";

export class TsdbReader {
  readonly #db: DatabaseSync;
  readonly #st: ReadStatements & {
    newSeries: StatementSync;
    newHead: StatementSync;
    headRow: StatementSync;
    rawFrom: StatementSync;
  };
  readonly #byId = new Map<number, SeriesRef>();
  readonly #byName = new Map<string, SeriesRef[]>();
  readonly #head = new Map<number, Head>();
  #lastSeries = 0;
  /** The last head row mirrored: its rowid and (series, ts), to notice a flush that emptied the table. */
  #lastHead: { rowid: number; series: number; ts: number } | undefined;
  #rawFrom = 0;
  #open = false;

  /** `dir` is the Tsdb's directory (holding metrics.db). */
  constructor(dir: string) {
    this.#db = new DatabaseSync(join(dir, "metrics.db"), { readOnly: true });
    this.#db.exec("PRAGMA busy_timeout = 5000");
    this.#st = {
      readChunks: this.#db.prepare(READ_CHUNKS_SQL),
      readDown: this.#db.prepare(READ_DOWN_SQL),
      newSeries: this.#db.prepare("SELECT id, labels FROM series WHERE id > ? ORDER BY id"),
      newHead: this.#db.prepare("SELECT rowid, series, ts, v FROM head WHERE rowid > ? ORDER BY rowid"),
      headRow: this.#db.prepare("SELECT series, ts FROM head WHERE rowid = ?"),
      rawFrom: this.#db.prepare("SELECT v FROM meta WHERE k = 'raw_from'"),
    };
    this.#st.readChunks.setReturnArrays(true);
    this.#st.newHead.setReturnArrays(true);
  }

  /** Starts one consistent read and brings the mirror up to it. */
  snapshot(): void {
    if (this.#open) this.release();
    this.#db.exec("BEGIN");
    this.#open = true;
    for (const row of this.#st.newSeries.iterate(this.#lastSeries)) {
      const r = row as { id: number; labels: string };
      const s: SeriesRef = { id: r.id, labels: JSON.parse(r.labels) as Labels };
      this.#byId.set(s.id, s);
      const name = s.labels[NAME] ?? "";
      const list = this.#byName.get(name);
      if (list) list.push(s);
      else this.#byName.set(name, [s]);
      this.#lastSeries = r.id;
    }
    const last = this.#lastHead;
    if (last) {
      const row = this.#st.headRow.get(last.rowid) as { series: number; ts: number } | undefined;
      // The head was moved into chunks (and maybe refilled): mirror it again from the start.
      if (!row || row.series !== last.series || row.ts !== last.ts) {
        this.#head.clear();
        this.#lastHead = undefined;
      }
    }
    // Rows as arrays, the series' head looked up only when the series changes: this is the slow part of a first snapshot.
    let h: Head | undefined;
    let hSeries = -1;
    let lastRow: [number, number, number, number | null] | undefined;
    for (const row of this.#st.newHead.iterate(this.#lastHead?.rowid ?? 0) as Iterable<
      [number, number, number, number | null]
    >) {
      const series = row[1];
      if (series !== hSeries) {
        h = this.#head.get(series);
        if (!h) {
          h = { ts: [], values: [] };
          this.#head.set(series, h);
        }
        hSeries = series;
      }
      (h as Head).ts.push(row[2]);
      (h as Head).values.push(row[3] ?? Number.NaN);
      lastRow = row;
    }
    if (lastRow) this.#lastHead = { rowid: lastRow[0], series: lastRow[1], ts: lastRow[2] };
    this.#rawFrom = (this.#st.rawFrom.get() as { v: number } | undefined)?.v ?? 0;
  }

  /** Ends the read started by snapshot (the writer's checkpoints can then pass it). */
  release(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#db.exec("COMMIT");
  }

  select(matchers: Matcher[]): SeriesRef[] {
    return selectSeries(this.#byName, this.#byId, matchers);
  }

  read(id: number, from: number, to: number): Samples {
    return readSamples(this.#st, this.#rawFrom, this.#head.get(id), id, from, to);
  }

  close(): void {
    this.release();
    this.#db.close();
  }
}
