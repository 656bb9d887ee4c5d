import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { test } from "node:test";
import { cacheSizePragma, capSqliteCaches, DEFAULT_CACHE_KIB, SMALL_CACHE_KIB } from "./sqlite-cache.ts";

/** The page cache a database has after running the pragma, in KiB. */
function cacheKib(pragma: string): number {
  const db = new DatabaseSync(":memory:");
  try {
    db.exec(pragma);
    return -(db.prepare("PRAGMA cache_size").get() as { cache_size: number }).cache_size;
  } finally {
    db.close();
  }
}

test("a database gets the cache it asks for until the process caps them, then at most the cap", () => {
  assert.equal(cacheKib(cacheSizePragma()), DEFAULT_CACHE_KIB);
  assert.equal(cacheKib(cacheSizePragma(32_000)), 32_000);
  capSqliteCaches();
  assert.equal(cacheKib(cacheSizePragma()), SMALL_CACHE_KIB);
  assert.equal(cacheKib(cacheSizePragma(32_000)), SMALL_CACHE_KIB);
  assert.equal(cacheKib(cacheSizePragma(100)), 100, "a smaller wish is kept");
});
