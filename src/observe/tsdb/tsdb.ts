/**
 * Embedded time-series storage in one SQLite file (`<data>/metrics/metrics.db`).
 *
 *   append ─► head (append-only table + memory) ─► flush ─► chunks (10-minute blobs per series)
 *                                                              │ older than raw retention
 *                                                              ▼
 *                                               down (1-minute last/min/max/sum/count rows)
 *
 * Why this shape: an insert into a B-tree keyed by (series, time) touches one
 * page per series per scrape; the head table is keyed by rowid, so every write
 * goes to the end of the file. Every few minutes the head is moved into one
 * blob per series (a "chunk": samples of a series within one aligned hour);
 * once an hour is over, its chunks are merged into one (compaction), so a
 * 1-hour chart reads two or three rows per series.
 *
 * Acknowledged write: `append` returns after its SQLite transaction committed
 * (WAL, synchronous=NORMAL). Killing the process (kill -9) then loses nothing
 * acknowledged; a power loss can lose the last transactions of the WAL.
 *
 * Rules for samples: a series accepts samples in time order only (a sample at
 * or before the series' last one is counted as out of order and dropped), and
 * nothing older than the raw retention.
 */

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { cacheSizePragma } from "../../common/sqlite-cache.ts";
import { compileMatcher, type Labels, labelsKey, type Matcher, NAME, normalizeLabels } from "./labels.ts";

/** Chunks hold the samples of one series within one aligned window of this length. */
export const CHUNK_WINDOW_MS = 3600_000;
const MINUTE = 60_000;

export interface TsdbOptions {
  /** Directory of the database (created). */
  dir: string;
  /** Raw samples are kept this long, then only 1-minute aggregates (default 24 h). */
  rawRetentionMs?: number;
  /** 1-minute aggregates are kept this long (default 30 days). */
  downsampledRetentionMs?: number;
  /** Hard limit of the database's size in bytes; the oldest data goes first (default 1 GiB). */
  maxBytes?: number;
  /** The head is moved into chunks at least this often (default 5 min). */
  headFlushMs?: number;
  /** …or when it holds this many samples (default 1,000,000). */
  headMaxSamples?: number;
  /** Milliseconds since the epoch; tests pass their own. */
  now?: () => number;
}

/** One series in a write: its labels (`__name__` included) and samples [ms, value]. */
export interface WriteSeries {
  labels: Labels;
  samples: [number, number][];
}

export interface AppendResult {
  accepted: number;
  /** Samples at or before the series' last sample: dropped. */
  outOfOrder: number;
  /** Samples older than the raw retention: dropped. */
  tooOld: number;
}

/** A series found by a selector. */
export interface SeriesRef {
  id: number;
  labels: Labels;
}

/** Samples of one series in time order. */
export interface Samples {
  ts: number[];
  values: number[];
}

export interface TsdbStats {
  series: number;
  headSamples: number;
  chunks: number;
  downsampledRows: number;
  bytes: number;
  maxBytes: number;
  /** Raw samples before this time have been downsampled (ms). */
  rawFrom: number;
  /** The oldest data point kept (ms), or null when empty. */
  oldest: number | null;
}

export interface Head {
  ts: number[];
  values: number[];
}

interface MemSeries {
  id: number;
  labels: Labels;
  /** Time of the last sample accepted (out-of-order check). */
  last: number;
  head: Head | undefined;
}

/** Encodes samples as [n:u32, pad:u32, ts:f64×n, v:f64×n]. */
export function encodeChunk(ts: number[], values: number[], from = 0, to = ts.length): Uint8Array {
  const n = to - from;
  const buf = new ArrayBuffer(8 + 16 * n);
  new Uint32Array(buf, 0, 1)[0] = n;
  const t = new Float64Array(buf, 8, n);
  const v = new Float64Array(buf, 8 + 8 * n, n);
  for (let i = 0; i < n; i++) {
    t[i] = ts[from + i] as number;
    v[i] = values[from + i] as number;
  }
  return new Uint8Array(buf);
}

export function decodeChunk(data: Uint8Array): { ts: Float64Array; values: Float64Array } {
  // Float64Array needs an 8-aligned offset: copy when SQLite's buffer is not.
  const bytes = data.byteOffset % 8 === 0 ? data : data.slice();
  const n = new Uint32Array(bytes.buffer, bytes.byteOffset, 1)[0] as number;
  return {
    ts: new Float64Array(bytes.buffer, bytes.byteOffset + 8, n),
    values: new Float64Array(bytes.buffer, bytes.byteOffset + 8 + 8 * n, n),
  };
}

export class Tsdb {
  readonly #db: DatabaseSync;
  readonly #now: () => number;
  readonly #appendListeners: ((series: WriteSeries[]) => void)[] = [];
  readonly rawRetentionMs: number;
  readonly downsampledRetentionMs: number;
  readonly maxBytes: number;
  readonly #headFlushMs: number;
  readonly #headMaxSamples: number;
  readonly #byKey = new Map<string, MemSeries>();
  readonly #byId = new Map<number, MemSeries>();
  readonly #byName = new Map<string, MemSeries[]>();
  #headSamples = 0;
  #lastFlush: number;
  /** Raw data before this has been downsampled (persisted in meta). */
  #rawFrom: number;
  /** Rough bytes written since the size was last measured, so the limit holds between maintenance runs. */
  #writtenSince = 0;
  #bytesAtMeasure = 0;
  /** Windows before this are compacted (one chunk per series); 0 = look at everything once. */
  #compactedUpTo = 0;
  readonly #st: {
    insertSeries: StatementSync;
    insertHead: StatementSync;
    insertChunk: StatementSync;
    readChunks: StatementSync;
    anyChunk: StatementSync;
    anyDown: StatementSync;
    readDown: StatementSync;
  };

  constructor(options: TsdbOptions) {
    mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    this.#now = options.now ?? Date.now;
    this.rawRetentionMs = options.rawRetentionMs ?? 24 * 3600_000;
    this.downsampledRetentionMs = options.downsampledRetentionMs ?? 30 * 24 * 3600_000;
    this.maxBytes = options.maxBytes ?? 1024 ** 3;
    this.#headFlushMs = options.headFlushMs ?? 5 * 60_000;
    this.#headMaxSamples = options.headMaxSamples ?? 1_000_000;
    this.#db = new DatabaseSync(join(options.dir, "metrics.db"));
    // auto_vacuum must be chosen before the first table: it lets deletes give space back to the disk.
    this.#db.exec(`
      PRAGMA auto_vacuum = INCREMENTAL;
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      ${cacheSizePragma()};
      CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, labels TEXT NOT NULL);
      -- SQLite stores NaN as NULL: value columns allow NULL, read back as NaN.
      CREATE TABLE IF NOT EXISTS head (series INTEGER NOT NULL, ts INTEGER NOT NULL, v REAL);
      CREATE TABLE IF NOT EXISTS chunks (series INTEGER NOT NULL, mint INTEGER NOT NULL, maxt INTEGER NOT NULL,
        data BLOB NOT NULL, PRIMARY KEY (series, mint)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS chunks_mint ON chunks (mint);
      CREATE TABLE IF NOT EXISTS down (series INTEGER NOT NULL, ts INTEGER NOT NULL, last REAL,
        min REAL, max REAL, sum REAL, count INTEGER NOT NULL,
        PRIMARY KEY (series, ts)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS down_ts ON down (ts);
      CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
    `);
    this.#st = {
      insertSeries: this.#db.prepare("INSERT INTO series (key, labels) VALUES (?, ?) RETURNING id"),
      insertHead: this.#db.prepare("INSERT INTO head (series, ts, v) VALUES (?, ?, ?)"),
      insertChunk: this.#db.prepare("INSERT INTO chunks (series, mint, maxt, data) VALUES (?, ?, ?, ?)"),
      readChunks: this.#db.prepare(READ_CHUNKS_SQL),
      anyChunk: this.#db.prepare("SELECT 1 FROM chunks WHERE series = ? AND mint <= ? AND maxt >= ? LIMIT 1"),
      anyDown: this.#db.prepare("SELECT 1 FROM down WHERE series = ? AND ts >= ? AND ts <= ? LIMIT 1"),
      readDown: this.#db.prepare(READ_DOWN_SQL),
    };
    const meta = this.#db.prepare("SELECT v FROM meta WHERE k = 'raw_from'").get() as
      | { v: number }
      | undefined;
    this.#rawFrom = meta?.v ?? 0;
    this.#load();
    this.#lastFlush = this.#now();
    this.#bytesAtMeasure = this.usedBytes();
    // Rows come back as arrays: no object per chunk on the query path.
    this.#st.readChunks.setReturnArrays(true);
  }

  /** Loads the series index and replays the head table (what was written since the last flush). */
  #load(): void {
    for (const row of this.#db.prepare("SELECT id, key, labels FROM series").iterate()) {
      const r = row as { id: number; key: string; labels: string };
      this.#index(
        { id: r.id, labels: JSON.parse(r.labels) as Labels, last: -Infinity, head: undefined },
        r.key,
      );
    }
    for (const row of this.#db
      .prepare("SELECT series, max(maxt) AS t FROM chunks GROUP BY series")
      .iterate()) {
      const r = row as { series: number; t: number };
      const s = this.#byId.get(r.series);
      if (s) s.last = r.t;
    }
    for (const row of this.#db.prepare("SELECT series, ts, v FROM head ORDER BY rowid").iterate()) {
      const r = row as { series: number; ts: number; v: number | null };
      const s = this.#byId.get(r.series);
      if (!s) continue;
      s.head ??= { ts: [], values: [] };
      s.head.ts.push(r.ts);
      s.head.values.push(r.v ?? Number.NaN);
      s.last = r.ts;
      this.#headSamples++;
    }
  }

  #index(s: MemSeries, key: string): void {
    this.#byKey.set(key, s);
    this.#byId.set(s.id, s);
    const name = s.labels[NAME] ?? "";
    const list = this.#byName.get(name);
    if (list) list.push(s);
    else this.#byName.set(name, [s]);
  }

  /** The series of a label set, created when new (and listed in `created`, to undo on rollback). */
  #intern(labels: Labels, created: { s: MemSeries; key: string }[]): MemSeries {
    const key = labelsKey(labels);
    const found = this.#byKey.get(key);
    if (found) return found;
    const norm = normalizeLabels(labels);
    const row = this.#st.insertSeries.get(key, JSON.stringify(norm)) as { id: number };
    const s: MemSeries = { id: row.id, labels: norm, last: -Infinity, head: undefined };
    this.#index(s, key);
    created.push({ s, key });
    this.#writtenSince += key.length * 2 + 16;
    return s;
  }

  /** Writes samples in one transaction; returns once it committed (the write is then acknowledged). */
  /** Hears every committed append: the samples it accepted, per series (remote-write.ts). */
  onAppend(listener: (series: WriteSeries[]) => void): void {
    this.#appendListeners.push(listener);
  }

  #tellAppended(added: readonly { s: MemSeries; ts: number; v: number }[]): void {
    const bySeries = new Map<MemSeries, WriteSeries>();
    for (const { s, ts, v } of added) {
      let w = bySeries.get(s);
      if (!w) {
        w = { labels: s.labels, samples: [] };
        bySeries.set(s, w);
      }
      w.samples.push([ts, v]);
    }
    const series = [...bySeries.values()];
    for (const listener of this.#appendListeners) listener(series);
  }

  append(batch: WriteSeries[]): AppendResult {
    const result: AppendResult = { accepted: 0, outOfOrder: 0, tooOld: 0 };
    const oldest = Math.max(this.#rawFrom, this.#now() - this.rawRetentionMs);
    const added: { s: MemSeries; ts: number; v: number }[] = [];
    const lastBefore = new Map<MemSeries, number>();
    const created: { s: MemSeries; key: string }[] = [];
    this.#db.exec("BEGIN");
    try {
      for (const w of batch) {
        const s = this.#intern(w.labels, created);
        if (!lastBefore.has(s)) lastBefore.set(s, s.last);
        for (const [ts, v] of w.samples) {
          if (ts < oldest) {
            result.tooOld++;
            continue;
          }
          if (ts <= s.last) {
            result.outOfOrder++;
            continue;
          }
          this.#st.insertHead.run(s.id, ts, v);
          s.last = ts;
          added.push({ s, ts, v });
        }
      }
      this.#db.exec("COMMIT");
    } catch (err) {
      this.#db.exec("ROLLBACK");
      for (const [s, last] of lastBefore) s.last = last;
      // Their rows are gone with the transaction: SQLite would hand their ids out again.
      for (const { s, key } of created) {
        this.#byKey.delete(key);
        this.#byId.delete(s.id);
        const list = this.#byName.get(s.labels[NAME] ?? "");
        if (list) list.splice(list.indexOf(s), 1);
      }
      throw err;
    }
    for (const { s, ts, v } of added) {
      s.head ??= { ts: [], values: [] };
      s.head.ts.push(ts);
      s.head.values.push(v);
    }
    if (this.#appendListeners.length > 0 && added.length > 0) this.#tellAppended(added);
    result.accepted = added.length;
    this.#headSamples += added.length;
    this.#writtenSince += added.length * 40;
    // The size limit holds between maintenance runs too: measure and trim once the rough count says so.
    if (this.#bytesAtMeasure + this.#writtenSince > this.maxBytes) this.enforceSizeLimit();
    else if (this.#headSamples >= this.#headMaxSamples) this.flushHead();
    return result;
  }

  /** Moves the head into chunks (one per series and aligned window) and empties the head table. */
  flushHead(): void {
    if (this.#headSamples === 0) return;
    this.#db.exec("BEGIN");
    try {
      for (const s of this.#byId.values()) {
        const h = s.head;
        if (!h) continue;
        let from = 0;
        while (from < h.ts.length) {
          const window = Math.floor((h.ts[from] as number) / CHUNK_WINDOW_MS);
          let to = from + 1;
          while (to < h.ts.length && Math.floor((h.ts[to] as number) / CHUNK_WINDOW_MS) === window) to++;
          this.#st.insertChunk.run(
            s.id,
            h.ts[from] as number,
            h.ts[to - 1] as number,
            encodeChunk(h.ts, h.values, from, to),
          );
          from = to;
        }
      }
      this.#db.exec("DELETE FROM head");
      this.#db.exec("COMMIT");
    } catch (err) {
      this.#db.exec("ROLLBACK");
      throw err;
    }
    for (const s of this.#byId.values()) s.head = undefined;
    this.#headSamples = 0;
    this.#lastFlush = this.#now();
  }

  /** Series whose labels match every matcher. */
  select(matchers: Matcher[]): SeriesRef[] {
    return selectSeries(this.#byName, this.#byId, matchers);
  }

  /**
   * Samples of a series with from ≤ t ≤ to. Before the raw retention's edge
   * the points are 1-minute aggregates (their last value, at the minute's start).
   */
  read(id: number, from: number, to: number): Samples {
    return readSamples(this.#st, this.#rawFrom, this.#byId.get(id)?.head, id, from, to);
  }

  /** Whether the series with these labels is known (for a scrape's scrape_series_added). */
  hasSeries(labels: Labels): boolean {
    return this.#byKey.has(labelsKey(labels));
  }

  /** Whether a series has samples (or aggregates) between from and to (ms, inclusive): /series, /labels with start/end. */
  hasSamples(id: number, from: number, to: number): boolean {
    const head = this.#byId.get(id)?.head;
    if (head?.ts.some((t) => t >= from && t <= to)) return true;
    if (this.#st.anyChunk.get(id, to, from)) return true;
    return (
      from < this.#rawFrom && this.#st.anyDown.get(id, from, Math.min(to, this.#rawFrom - 1)) !== undefined
    );
  }

  /** Label names in use (of series matching, when matchers are given). */
  labelNames(matchers: Matcher[] = []): string[] {
    const names = new Set<string>();
    const series = matchers.length > 0 ? this.select(matchers) : this.#byId.values();
    for (const s of series) for (const k of Object.keys(s.labels)) names.add(k);
    return [...names].sort();
  }

  /** Values of one label (of series matching, when matchers are given). */
  labelValues(name: string, matchers: Matcher[] = []): string[] {
    const values = new Set<string>();
    const series = matchers.length > 0 ? this.select(matchers) : this.#byId.values();
    for (const s of series) {
      const v = s.labels[name];
      if (v !== undefined) values.add(v);
    }
    return [...values].sort();
  }

  /**
   * The background work: flush an old head, downsample raw data past its
   * retention into 1-minute aggregates, drop aggregates past theirs, keep
   * the size limit. Safe to call any time.
   */
  maintain(): void {
    const now = this.#now();
    if (this.#headSamples > 0 && now - this.#lastFlush >= this.#headFlushMs) this.flushHead();
    this.compact();
    const cutoff = Math.floor((now - this.rawRetentionMs) / MINUTE) * MINUTE;
    if (cutoff > this.#rawFrom) this.#downsample(cutoff);
    this.#db.prepare("DELETE FROM down WHERE ts < ?").run(now - this.downsampledRetentionMs);
    this.enforceSizeLimit();
  }

  /**
   * Merges the chunks of each series within each finished window (one chunk
   * per head flush) into one, so reads fetch one row per series per hour.
   */
  compact(): void {
    const upTo = Math.floor(this.#lastFlush / CHUNK_WINDOW_MS) * CHUNK_WINDOW_MS;
    if (upTo <= this.#compactedUpTo) return;
    const groups = this.#db
      .prepare(
        `SELECT series, (mint / ${CHUNK_WINDOW_MS}) * ${CHUNK_WINDOW_MS} AS w, count(*) AS n FROM chunks
         WHERE mint >= ? AND mint < ? GROUP BY series, w HAVING n > 1`,
      )
      .all(this.#compactedUpTo, upTo) as { series: number; w: number }[];
    const read = this.#db.prepare(
      "SELECT data FROM chunks WHERE series = ? AND mint >= ? AND mint < ? ORDER BY mint",
    );
    const del = this.#db.prepare("DELETE FROM chunks WHERE series = ? AND mint >= ? AND mint < ?");
    this.#db.exec("BEGIN");
    try {
      for (const g of groups) {
        const ts: number[] = [];
        const values: number[] = [];
        for (const row of read.iterate(g.series, g.w, g.w + CHUNK_WINDOW_MS)) {
          const c = decodeChunk((row as { data: Uint8Array }).data);
          for (let i = 0; i < c.ts.length; i++) {
            ts.push(c.ts[i] as number);
            values.push(c.values[i] as number);
          }
        }
        del.run(g.series, g.w, g.w + CHUNK_WINDOW_MS);
        this.#st.insertChunk.run(
          g.series,
          ts[0] as number,
          ts[ts.length - 1] as number,
          encodeChunk(ts, values),
        );
      }
      this.#db.exec("COMMIT");
    } catch (err) {
      this.#db.exec("ROLLBACK");
      throw err;
    }
    this.#compactedUpTo = upTo;
  }

  /** Moves raw samples before `cutoff` (a minute boundary) into 1-minute aggregates. */
  #downsample(cutoff: number): void {
    if (this.#headSamples > 0) this.flushHead();
    const upsert = this.#db.prepare(`
      INSERT INTO down (series, ts, last, min, max, sum, count) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (series, ts) DO UPDATE SET last = excluded.last, min = min(min, excluded.min),
        max = max(max, excluded.max), sum = sum + excluded.sum, count = count + excluded.count`);
    const old = this.#db
      .prepare("SELECT series, mint, data FROM chunks WHERE mint < ? ORDER BY series, mint")
      .all(cutoff) as { series: number; mint: number; data: Uint8Array }[];
    const del = this.#db.prepare("DELETE FROM chunks WHERE series = ? AND mint = ?");
    this.#db.exec("BEGIN");
    try {
      for (const c of old) {
        const { ts, values } = decodeChunk(c.data);
        let i = 0;
        while (i < ts.length && (ts[i] as number) < cutoff) {
          const minute = Math.floor((ts[i] as number) / MINUTE) * MINUTE;
          let last = values[i] as number;
          let min = last;
          let max = last;
          let sum = 0;
          let count = 0;
          while (i < ts.length && (ts[i] as number) < minute + MINUTE && (ts[i] as number) < cutoff) {
            last = values[i] as number;
            if (last < min) min = last;
            if (last > max) max = last;
            sum += last;
            count++;
            i++;
          }
          upsert.run(c.series, minute, last, min, max, sum, count);
        }
        del.run(c.series, c.mint);
        if (i < ts.length) {
          const rest = { ts: Array.from(ts.subarray(i)), values: Array.from(values.subarray(i)) };
          this.#st.insertChunk.run(
            c.series,
            rest.ts[0] as number,
            rest.ts[rest.ts.length - 1] as number,
            encodeChunk(rest.ts, rest.values),
          );
        }
      }
      this.#db
        .prepare(
          "INSERT INTO meta (k, v) VALUES ('raw_from', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        )
        .run(cutoff);
      this.#db.exec("COMMIT");
    } catch (err) {
      this.#db.exec("ROLLBACK");
      throw err;
    }
    this.#rawFrom = cutoff;
  }

  /** Bytes the database holds (pages in use, plus the WAL's share is checkpointed away by the trim). */
  usedBytes(): number {
    const get = (p: string) => (this.#db.prepare(`PRAGMA ${p}`).get() as Record<string, number>)[p] as number;
    return (get("page_count") - get("freelist_count")) * get("page_size");
  }

  /**
   * Keeps the database under maxBytes: drops the oldest hour of data (aggregates
   * first, they are the oldest) until it is under 90% of the limit, then gives
   * the space back to the disk.
   */
  enforceSizeLimit(): void {
    let used = this.usedBytes();
    if (used > this.maxBytes) {
      const low = this.maxBytes * 0.9;
      const step = 3600_000;
      for (let round = 0; used > low && round < 10_000; round++) {
        const downMin = (this.#db.prepare("SELECT min(ts) AS t FROM down").get() as { t: number | null }).t;
        if (downMin !== null) {
          this.#db.prepare("DELETE FROM down WHERE ts < ?").run(downMin + step);
        } else {
          if (this.#headSamples > 0) this.flushHead();
          const chunkMin = (
            this.#db.prepare("SELECT min(mint) AS t FROM chunks").get() as { t: number | null }
          ).t;
          if (chunkMin === null) break;
          this.#db.prepare("DELETE FROM chunks WHERE mint < ?").run(chunkMin + step);
          const edge = Math.floor((chunkMin + step) / MINUTE) * MINUTE;
          if (edge > this.#rawFrom) {
            this.#rawFrom = edge;
            this.#db
              .prepare(
                "INSERT INTO meta (k, v) VALUES ('raw_from', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
              )
              .run(edge);
          }
        }
        used = this.usedBytes();
      }
      this.#db.exec("PRAGMA incremental_vacuum");
      this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      used = this.usedBytes();
    }
    this.#bytesAtMeasure = used;
    this.#writtenSince = 0;
  }

  stats(): TsdbStats {
    const count = (sql: string) => (this.#db.prepare(sql).get() as { n: number | null }).n;
    const oldest = [
      count("SELECT min(ts) AS n FROM down"),
      count("SELECT min(mint) AS n FROM chunks"),
      ...[...this.#byId.values()].map((s) => s.head?.ts[0] ?? null),
    ].filter((t): t is number => t !== null);
    return {
      series: this.#byId.size,
      headSamples: this.#headSamples,
      chunks: count("SELECT count(*) AS n FROM chunks") ?? 0,
      downsampledRows: count("SELECT count(*) AS n FROM down") ?? 0,
      bytes: this.usedBytes(),
      maxBytes: this.maxBytes,
      rawFrom: this.#rawFrom,
      oldest: oldest.length > 0 ? Math.min(...oldest) : null,
    };
  }

  /** Flushes nothing (the head table already holds every acknowledged sample) and closes the file. */
  close(): void {
    this.#db.close();
  }
}

/** The statements a read needs (prepared on the writer's connection or a reader's). */
export interface ReadStatements {
  readChunks: StatementSync;
  readDown: StatementSync;
}

export const READ_CHUNKS_SQL =
  "SELECT data FROM chunks WHERE series = ? AND mint >= ? AND mint <= ? AND maxt >= ? ORDER BY mint";
export const READ_DOWN_SQL = "SELECT ts, last FROM down WHERE series = ? AND ts >= ? AND ts <= ? ORDER BY ts";

/** Series whose labels match every matcher, found through the by-name index when the name is given. */
export function selectSeries(
  byName: ReadonlyMap<string, readonly SeriesRef[]>,
  byId: ReadonlyMap<number, SeriesRef>,
  matchers: Matcher[],
): SeriesRef[] {
  const nameEq = matchers.find((m) => m.name === NAME && m.op === "=");
  const candidates: Iterable<SeriesRef> = nameEq ? (byName.get(nameEq.value) ?? []) : byId.values();
  const tests = matchers.filter((m) => m !== nameEq).map(compileMatcher);
  const out: SeriesRef[] = [];
  for (const s of candidates) {
    if (tests.every((t) => t(s.labels))) out.push({ id: s.id, labels: s.labels });
  }
  return out;
}

/**
 * Samples of a series with from ≤ t ≤ to: aggregates before `rawFrom`,
 * then chunks, then the head (samples not yet in chunks).
 */
export function readSamples(
  st: ReadStatements,
  rawFromEdge: number,
  head: Head | undefined,
  id: number,
  from: number,
  to: number,
): Samples {
  const out: Samples = { ts: [], values: [] };
  if (from < rawFromEdge) {
    for (const row of st.readDown.iterate(id, from, Math.min(to, rawFromEdge - 1))) {
      const r = row as { ts: number; last: number | null };
      out.ts.push(r.ts);
      out.values.push(r.last ?? Number.NaN);
    }
  }
  const rawFrom = Math.max(from, rawFromEdge);
  if (rawFrom > to) return out;
  const firstWindow = Math.floor(rawFrom / CHUNK_WINDOW_MS) * CHUNK_WINDOW_MS;
  const rows = st.readChunks.all(id, firstWindow, to, rawFrom) as unknown as [Uint8Array][];
  for (const row of rows) {
    const { ts, values } = decodeChunk(row[0]);
    const n = ts.length;
    if (n > 0 && (ts[0] as number) >= rawFrom && (ts[n - 1] as number) <= to) {
      // The whole chunk is in range (the usual case): no per-sample checks.
      for (let i = 0; i < n; i++) {
        out.ts.push(ts[i] as number);
        out.values.push(values[i] as number);
      }
      continue;
    }
    for (let i = 0; i < n; i++) {
      const t = ts[i] as number;
      if (t < rawFrom) continue;
      if (t > to) break;
      out.ts.push(t);
      out.values.push(values[i] as number);
    }
  }
  if (head) {
    for (let i = 0; i < head.ts.length; i++) {
      const t = head.ts[i] as number;
      if (t < rawFrom) continue;
      if (t > to) break;
      out.ts.push(t);
      out.values.push(head.values[i] as number);
    }
  }
  return out;
}
