/**
 * Evaluates parsed PromQL against the Tsdb, at one instant or at every step of
 * a range, with Prometheus 2.x's semantics.
 *
 *   Expr ─► load every selector's samples once (all the times it is evaluated at) ─► evaluate per step ─► vector/matrix
 *
 * Selectors read their series once for the whole query, then every step looks
 * at a window of those arrays (binary search), so a range query costs one
 * storage read per series however many steps it has. Windows are closed,
 * [t - range, t], and an instant selector takes the last sample in
 * [t - 5m, t], as in Prometheus 2.x. A subquery evaluates its expression at
 * times aligned to its step (kept per time: the next step reuses them).
 *
 * Modules: functions.ts (calls), range-functions.ts (functions of a window),
 * aggregate.ts, binary.ts (operators, vector matching), histogram.ts,
 * values.ts (types, Env), range-fast.ts (common chart expressions, column-wise).
 */

import type { Labels } from "../tsdb/labels.ts";
import type { Tsdb } from "../tsdb/tsdb.ts";
import { aggregate } from "./aggregate.ts";
import { binary } from "./binary.ts";
import { callFunction } from "./functions.ts";
import { type Expr, PromqlError, parsePromql, typeOfExpr } from "./parser.ts";
import { fastRange } from "./range-fast.ts";
import {
  atTime,
  DEFAULT_SUBQUERY_STEP_MS,
  dropName,
  type Env,
  keyOf,
  LOOKBACK_MS,
  type Loaded,
  lowerBound,
  MAX_QUERY_SAMPLES,
  newEnv,
  QueryError,
  type RangeSeries,
  type Sample,
  TooManySamplesError,
  upperBound,
  type Value,
  type Window,
} from "./values.ts";

/** What a query reads from: the Tsdb itself, or a TsdbReader in a query worker. */
export type SeriesSource = Pick<Tsdb, "select" | "read">;

export {
  dropName,
  type Env,
  LOOKBACK_MS,
  MAX_QUERY_SAMPLES,
  PromqlError,
  QueryError,
  type RangeSeries,
  type Sample,
  TooManySamplesError,
  type Value,
};

export interface QueryOptions {
  /** Refuse queries that read more samples than this (default MAX_QUERY_SAMPLES). */
  maxSamples?: number;
}

/** The static type of an expression, for argument checks. */
export const typeOf = typeOfExpr;

/**
 * Reads every selector's series once, for evaluation times in [from, to]
 * (plus its range or the lookback, moved by its offset, or at its `@` time).
 */
function load(db: SeriesSource, expr: Expr, from: number, to: number, env: Env): void {
  switch (expr.type) {
    case "selector": {
      const [a, b] = expr.at !== undefined ? [atTime(expr.at, env), atTime(expr.at, env)] : [from, to];
      const back = expr.rangeMs ?? LOOKBACK_MS;
      const loaded: Loaded[] = [];
      for (const s of db.select(expr.matchers)) {
        const data = db.read(s.id, a - expr.offsetMs - back, b - expr.offsetMs);
        env.samples += data.ts.length;
        if (env.samples > env.maxSamples) throw new TooManySamplesError(env.maxSamples);
        loaded.push({ labels: s.labels, data });
      }
      env.loaded.set(expr, loaded);
      return;
    }
    case "subquery": {
      const [a, b] = expr.at !== undefined ? [atTime(expr.at, env), atTime(expr.at, env)] : [from, to];
      load(db, expr.expr, a - expr.offsetMs - expr.rangeMs, b - expr.offsetMs, env);
      return;
    }
    case "call":
      for (const arg of expr.args) load(db, arg, from, to, env);
      return;
    case "aggregate":
      if (expr.param) load(db, expr.param, from, to, env);
      load(db, expr.expr, from, to, env);
      return;
    case "binary":
      load(db, expr.lhs, from, to, env);
      load(db, expr.rhs, from, to, env);
      return;
    case "neg":
      load(db, expr.expr, from, to, env);
      return;
    default:
      return;
  }
}

/** Evaluates at one instant `t` (ms). */
export function instantQuery(
  db: SeriesSource,
  query: string | Expr,
  t: number,
  options: QueryOptions = {},
): Value {
  const expr = typeof query === "string" ? parsePromql(query) : query;
  const env = newEnv(t, t, options.maxSamples ?? MAX_QUERY_SAMPLES);
  load(db, expr, t, t, env);
  return evaluate(expr, t, env);
}

/**
 * Evaluates at start, start+step, … ≤ end; the answer is a matrix (scalars
 * become one series without labels). Common chart expressions go series by
 * series (range-fast.ts); `stepwise` forces the general path (tests compare both).
 */
export function rangeQuery(
  db: SeriesSource,
  query: string | Expr,
  start: number,
  end: number,
  step: number,
  options: QueryOptions & { stepwise?: boolean } = {},
): RangeSeries[] {
  const expr = typeof query === "string" ? parsePromql(query) : query;
  if (step <= 0) throw new QueryError("step must be positive");
  if ((end - start) / step > 11_000) {
    throw new QueryError(
      "exceeded maximum resolution of 11,000 points per series: use a larger step or a shorter range",
    );
  }
  const t0 = typeOf(expr);
  if (t0 !== "vector" && t0 !== "scalar") {
    throw new QueryError(`a range query needs an instant vector or scalar expression, got ${t0}`);
  }
  const env = newEnv(start, end, options.maxSamples ?? MAX_QUERY_SAMPLES);
  load(db, expr, start, end, env);
  if (!options.stepwise) {
    const steps: number[] = [];
    for (let t = start; t <= end; t += step) steps.push(t);
    const fast = fastRange(expr, steps, env);
    if (fast) return fast;
  }
  const out = new Map<string, RangeSeries>();
  // Most steps hand back the same labels objects (see dropName): look those up by identity first.
  const byObject = new Map<Labels, RangeSeries>();
  for (let t = start; t <= end; t += step) {
    const v = evaluate(expr, t, env);
    const samples =
      v.type === "scalar" ? [{ labels: {}, value: v.value }] : v.type === "vector" ? v.samples : [];
    for (const s of samples) {
      let series = byObject.get(s.labels);
      if (!series) {
        const key = keyOf(s.labels);
        series = out.get(key);
        if (!series) {
          series = { labels: s.labels, ts: [], values: [] };
          out.set(key, series);
        }
        byObject.set(s.labels, series);
      }
      series.ts.push(t);
      series.values.push(s.value);
    }
  }
  return [...out.values()];
}

export function evaluate(e: Expr, t: number, env: Env): Value {
  switch (e.type) {
    case "number":
      return { type: "scalar", value: e.value };
    case "string":
      return { type: "string", value: e.value };
    case "selector":
      if (e.rangeMs === undefined) return { type: "vector", samples: instantSelector(e, t, env) };
      return { type: "matrix", series: matrixOf(rangeWindows(e, "a range selector", t, env).windows) };
    case "subquery":
      return { type: "matrix", series: matrixOf(rangeWindows(e, "a subquery", t, env).windows) };
    case "neg": {
      const v = evaluate(e.expr, t, env);
      if (v.type === "scalar") return { type: "scalar", value: -v.value };
      if (v.type === "vector")
        return unique({
          type: "vector",
          samples: v.samples.map((s) => ({ labels: dropName(s.labels), value: -s.value })),
        });
      throw new QueryError("unary minus needs a scalar or an instant vector");
    }
    case "call":
      return unique(callFunction(e, t, env));
    case "aggregate":
      return aggregate(e, t, env);
    case "binary":
      return unique(binary(e, t, env));
  }
}

/**
 * Prometheus' rule: a vector (at one step) never holds two samples with one
 * label set, which dropping the name (`rate({__name__=~"a|b"}[1m])`, `x * 2`)
 * or relabeling can make.
 */
function unique(v: Value): Value {
  if (v.type !== "vector" || v.samples.length < 2) return v;
  const seen = new Set<string>();
  for (const s of v.samples) {
    const key = keyOf(s.labels);
    if (seen.has(key)) throw new QueryError("vector cannot contain metrics with the same labelset");
    seen.add(key);
  }
  return v;
}

function matrixOf(windows: Window[]): RangeSeries[] {
  return windows.map((w) => ({
    labels: w.labels,
    ts: w.ts.slice(w.lo, w.hi),
    values: w.values.slice(w.lo, w.hi),
  }));
}

type Selector = Extract<Expr, { type: "selector" }>;

/** The last sample of each series at `t` (moved by offset / `@`) within the lookback; `withTime` adds its time. */
export function instantSelector(e: Selector, t: number, env: Env, withTime?: (ms: number) => void): Sample[] {
  const at = (e.at !== undefined ? atTime(e.at, env) : t) - e.offsetMs;
  const samples: Sample[] = [];
  for (const s of env.loaded.get(e) ?? []) {
    const i = upperBound(s.data.ts, at) - 1;
    if (i >= 0 && (s.data.ts[i] as number) >= at - LOOKBACK_MS) {
      samples.push({ labels: s.labels, value: s.data.values[i] as number });
      withTime?.(s.data.ts[i] as number);
    }
  }
  return samples;
}

/**
 * The windows of a range vector at `t`: a range selector's (views of its
 * loaded arrays, no copies: the hot path of rate() charts) or a subquery's
 * (its expression evaluated at each aligned step in the range).
 */
export function rangeWindows(
  e: Expr | undefined,
  func: string,
  t: number,
  env: Env,
): { windows: Window[]; start: number; end: number } {
  if (e?.type === "subquery") return subqueryWindows(e, t, env);
  if (e?.type !== "selector" || e.rangeMs === undefined) {
    throw new QueryError(`${func}() needs a range vector such as x[5m], got ${e ? typeOf(e) : "nothing"}`);
  }
  const end = (e.at !== undefined ? atTime(e.at, env) : t) - e.offsetMs;
  const start = end - e.rangeMs;
  const windows: Window[] = [];
  for (const s of env.loaded.get(e) ?? []) {
    const lo = lowerBound(s.data.ts, start);
    const hi = upperBound(s.data.ts, end);
    if (hi > lo) windows.push({ labels: s.labels, ts: s.data.ts, values: s.data.values, lo, hi });
  }
  return { windows, start, end };
}

function subqueryWindows(
  e: Extract<Expr, { type: "subquery" }>,
  t: number,
  env: Env,
): { windows: Window[]; start: number; end: number } {
  const end = (e.at !== undefined ? atTime(e.at, env) : t) - e.offsetMs;
  const start = end - e.rangeMs;
  const step = e.stepMs ?? DEFAULT_SUBQUERY_STEP_MS;
  let memo = env.inner.get(e);
  if (!memo) {
    memo = new Map();
    env.inner.set(e, memo);
  }
  const series = new Map<string, Window>();
  // The first time at or after the window's start that is a multiple of the step.
  for (let at = Math.ceil(start / step) * step; at <= end; at += step) {
    let samples = memo.get(at);
    if (!samples) {
      const v = evaluate(e.expr, at, env);
      if (v.type !== "vector") throw new QueryError("a subquery needs an instant vector expression");
      samples = v.samples;
      // What a subquery keeps counts against the query's sample limit, as in Prometheus.
      env.samples += samples.length;
      if (env.samples > env.maxSamples) throw new TooManySamplesError(env.maxSamples);
      memo.set(at, samples);
    }
    for (const s of samples) {
      const key = keyOf(s.labels);
      let w = series.get(key);
      if (!w) {
        w = { labels: s.labels, ts: [], values: [], lo: 0, hi: 0 };
        series.set(key, w);
      }
      w.ts.push(at);
      w.values.push(s.value);
      w.hi++;
    }
  }
  return { windows: [...series.values()], start, end };
}

export function expectVector(e: Expr | undefined, func: string, t: number, env: Env): Sample[] {
  if (!e || typeOf(e) !== "vector") throw new QueryError(`${func}() needs an instant vector argument`);
  return (evaluate(e, t, env) as Extract<Value, { type: "vector" }>).samples;
}

export function expectScalar(e: Expr | undefined, func: string, t: number, env: Env): number {
  if (!e || typeOf(e) !== "scalar") throw new QueryError(`${func}() needs a scalar argument`);
  return (evaluate(e, t, env) as Extract<Value, { type: "scalar" }>).value;
}

export function expectString(e: Expr | undefined, func: string): string {
  if (e?.type !== "string") throw new QueryError(`${func}() needs a string argument`);
  return e.value;
}
