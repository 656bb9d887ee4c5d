/**
 * The size of SQLite's page cache for each of the control plane's databases
 * (state, audit, logs, metrics, spans). SQLite keeps up to `cache_size` of a
 * database's pages in the process's memory once they have been read; a
 * process started small (`herd up --small`) caps every database's cache, so
 * five of them hold at most a few MB however large the files grow
 * (docs/benchmarks.md, Footprint).
 */

/** SQLite's own default page cache per database, in KiB (`PRAGMA cache_size = -2000`). */
export const DEFAULT_CACHE_KIB = 2000;

/** The cap on each database's page cache in a small process, in KiB. */
export const SMALL_CACHE_KIB = 512;

let cap: number | undefined;

/** Caps the page cache of every database this process opens from now on (herd up --small). */
export function capSqliteCaches(kib = SMALL_CACHE_KIB): void {
  cap = kib;
}

/** The `PRAGMA cache_size` statement for a database that wants `kib` of cache (capped when the process is small). */
export function cacheSizePragma(kib = DEFAULT_CACHE_KIB): string {
  return `PRAGMA cache_size = -${Math.max(1, Math.min(kib, cap ?? kib))}`;
}
