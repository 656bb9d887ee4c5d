/**
 * The query API's PromQL jobs, run by QueryPool workers (worker.ts).
 *
 *   routes/metrics.ts ─► promqlPool(dir).run({kind, expr, …}) ─► worker.ts ─► JSON text
 */

import { type QueryLimits, QueryPool } from "../query-pool.ts";
import { QueryError, TooManySamplesError } from "./engine.ts";
import { type Expr, PromqlError } from "./parser.ts";

export type PromqlJob =
  | { kind: "instant"; expr: Expr; time: number; maxSamples: number }
  | { kind: "range"; expr: Expr; start: number; end: number; step: number; maxSamples: number };

/** A pool of PromQL workers reading the Tsdb in `dir`. */
export function promqlPool(dir: string, limits: QueryLimits = {}): QueryPool {
  return new QueryPool(new URL("./worker.ts", import.meta.url), { dir }, limits, rebuild);
}

/** A worker's error as the class the API maps to a status (400, 422). */
function rebuild(e: { name: string; message: string }): Error {
  let err: Error;
  if (e.name === "TooManySamplesError") err = new TooManySamplesError(0);
  else if (e.name === "QueryError") err = new QueryError("");
  else if (e.name === "PromqlError") err = new PromqlError(0, "");
  else err = new Error("");
  err.message = e.message;
  return err;
}
