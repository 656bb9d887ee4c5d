/**
 * Argument checks and error wording shared by the stores in this folder, so
 * every store rejects the same inputs with the same codes and messages.
 */

import { HerdError } from "../common/errors.ts";
import type { Kind } from "../model/objects.ts";
import type { ListOptions, PutOptions } from "./store.ts";

/** The default number of changes a store keeps for watches that start at a revision. */
export const DEFAULT_HISTORY_LIMIT = 10_000;

/** Returns a valid history limit (a positive integer), or throws `invalid`. */
export function checkHistoryLimit(limit: number | undefined): number {
  const value = limit ?? DEFAULT_HISTORY_LIMIT;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new HerdError("invalid", `historyLimit must be a positive integer, got ${limit}`);
  }
  return value;
}

/** Returns the expected revision of a put or delete (undefined = any), or throws `invalid`. */
export function checkExpectRevision(options: PutOptions | undefined): number | undefined {
  const expected = options?.expectRevision;
  if (expected !== undefined && !(Number.isSafeInteger(expected) && expected >= 0)) {
    throw new HerdError("invalid", `expectRevision must be an integer >= 0, got ${expected}`);
  }
  return expected;
}

/** Returns the list limit (undefined = all), or throws `invalid`. */
export function checkListLimit(options: ListOptions | undefined): number | undefined {
  const limit = options?.limit;
  if (limit !== undefined && !(Number.isSafeInteger(limit) && limit >= 1)) {
    throw new HerdError("invalid", `list limit must be a positive integer, got ${limit}`);
  }
  return limit;
}

/**
 * Throws `conflict` when an object at `actual` (0 = absent) is not at the
 * expected revision. Nothing to check when `expected` is undefined.
 */
export function checkRevisionMatches(
  kind: Kind,
  key: string,
  actual: number,
  expected: number | undefined,
): void {
  if (expected === undefined || expected === actual) return;
  const found = actual === 0 ? "does not exist" : `is at revision ${actual}`;
  const wanted = expected === 0 ? "expected it not to exist" : `expected revision ${expected}`;
  throw new HerdError("conflict", `${kind} "${key}" ${found}, ${wanted}; read it again and retry`);
}

/** The `gone` error for a watch that starts before the history kept. */
export function compactedError(fromRevision: number, compacted: number): HerdError {
  return new HerdError(
    "gone",
    `watch from revision ${fromRevision} is no longer possible: history before revision ${compacted + 1} was compacted; relist and watch from the list's revision`,
  );
}

/** The error for any call on a closed store. */
export function closedStoreError(): HerdError {
  return new HerdError("unavailable", "the store is closed");
}
