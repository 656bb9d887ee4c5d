/**
 * What PromQL evaluation works with: samples, values, the query's state
 * (Env: every selector's series, read once), the errors, and small helpers
 * shared by the evaluation modules (engine.ts and the ones it calls).
 */

import { type Labels, labelsKey, NAME } from "../tsdb/labels.ts";
import type { Samples } from "../tsdb/tsdb.ts";
import type { At, Expr } from "./parser.ts";

/** How far back an instant selector looks for a sample (Prometheus' default). */
export const LOOKBACK_MS = 5 * 60_000;

/** A subquery's step when it names none: Prometheus' default evaluation interval. */
export const DEFAULT_SUBQUERY_STEP_MS = 60_000;

/** Most samples one query may read (about 16 bytes each in memory), like Prometheus' query.max-samples. */
export const MAX_QUERY_SAMPLES = 10_000_000;

export interface Sample {
  labels: Labels;
  value: number;
}

/** One series' points as parallel arrays (ms, value). */
export interface RangeSeries {
  labels: Labels;
  ts: number[];
  values: number[];
}

export type Value =
  | { type: "scalar"; value: number }
  | { type: "string"; value: string }
  | { type: "vector"; samples: Sample[] }
  | { type: "matrix"; series: RangeSeries[] };

/** Evaluation problems (wrong argument types, unknown functions) are bad input too. */
export class QueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QueryError";
  }
}

/** Prometheus' words (its --query.max-samples), and the limit. */
export class TooManySamplesError extends QueryError {
  constructor(max: number) {
    super(
      `query processing would load too many samples into memory in query execution (more than ${max.toLocaleString("en-US")}): narrow the selectors or the range`,
    );
    this.name = "TooManySamplesError";
  }
}

export interface Loaded {
  labels: Labels;
  data: Samples;
}

/** What a query has read (every selector's series, for all the times it is evaluated at) and its bounds. */
export interface Env {
  loaded: Map<Expr, Loaded[]>;
  samples: number;
  maxSamples: number;
  /** The query's first and last evaluation times (ms): what `@ start()` and `@ end()` mean. */
  start: number;
  end: number;
  /** A subquery's inner results, by subquery and inner evaluation time (steps are aligned, so they repeat). */
  inner: Map<Expr, Map<number, Sample[]>>;
}

export function newEnv(start: number, end: number, maxSamples: number): Env {
  return { loaded: new Map(), samples: 0, maxSamples, start, end, inner: new Map() };
}

/** The time an `@` names, in ms. */
export function atTime(at: At, env: Env): number {
  return at === "start" ? env.start : at === "end" ? env.end : at;
}

/**
 * Labels without the metric name. Memoized by object: a series keeps the same
 * labels object at every step of a range query, so the result's label sets
 * (and their keys) are built once per series, not once per step.
 */
const withoutName = new WeakMap<Labels, Labels>();
export const dropName = (l: Labels): Labels => {
  if (!(NAME in l)) return l;
  let out = withoutName.get(l);
  if (!out) {
    const { [NAME]: _, ...rest } = l;
    out = rest;
    withoutName.set(l, out);
  }
  return out;
};

const keys = new WeakMap<Labels, string>();
/** labelsKey, memoized by object (see dropName). */
export function keyOf(l: Labels): string {
  let k = keys.get(l);
  if (k === undefined) {
    k = labelsKey(l);
    keys.set(l, k);
  }
  return k;
}

/** Index of the first element > t. */
export function upperBound(ts: number[], t: number): number {
  let lo = 0;
  let hi = ts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((ts[mid] as number) <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first element ≥ t. */
export function lowerBound(ts: number[], t: number): number {
  let lo = 0;
  let hi = ts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((ts[mid] as number) < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** One series' samples within a range window: indices [lo, hi) of its arrays. */
export interface Window {
  labels: Labels;
  ts: number[];
  values: number[];
  lo: number;
  hi: number;
}

/** The labels `by` keeps or `without` leaves (without also drops the metric name). */
export function groupLabels(labels: Labels, grouping: string[], without: boolean): Labels {
  const out: Labels = {};
  if (without) {
    for (const [k, v] of Object.entries(labels)) if (k !== NAME && !grouping.includes(k)) out[k] = v;
    return out;
  }
  for (const k of grouping) {
    const v = labels[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}
