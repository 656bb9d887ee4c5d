/**
 * Evaluates parsed PromQL against the Tsdb, at one instant or at every step of
 * a range, with Prometheus' semantics for the subset herd supports.
 *
 *   Expr ─► load every selector's samples once (whole query range) ─► evaluate per step ─► vector/matrix
 *
 * Selectors read their series once for the whole query, then every step looks
 * at a window of those arrays (binary search), so a range query costs one
 * storage read per series however many steps it has.
 */

import { type Labels, labelsKey, NAME } from "../tsdb/labels.ts";
import type { Samples, Tsdb } from "../tsdb/tsdb.ts";

/** What a query reads from: the Tsdb itself, or a TsdbReader in a query worker. */
export type SeriesSource = Pick<Tsdb, "select" | "read">;

import { type Expr, isComparison, PromqlError, parsePromql } from "./parser.ts";
import { fastRange } from "./range-fast.ts";

/** How far back an instant selector looks for a sample (Prometheus' default). */
export const LOOKBACK_MS = 5 * 60_000;

export interface Sample {
  labels: Labels;
  value: number;
}
export type Value =
  | { type: "scalar"; value: number }
  | { type: "string"; value: string }
  | { type: "vector"; samples: Sample[] }
  | { type: "matrix"; series: { labels: Labels; ts: number[]; values: number[] }[] };

/** A range query's answer: one series per label set, its points as parallel arrays (ms, value). */
export interface RangeSeries {
  labels: Labels;
  ts: number[];
  values: number[];
}

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

interface Loaded {
  labels: Labels;
  data: Samples;
}

/** What a query has read: every selector's series, for the whole query range. */
export type Env = { loaded: Map<Expr, Loaded[]>; samples: number; maxSamples: number };

/** Most samples one query may read (about 16 bytes each in memory), like Prometheus' query.max-samples. */
export const MAX_QUERY_SAMPLES = 10_000_000;

export interface QueryOptions {
  /** Refuse queries that read more samples than this (default MAX_QUERY_SAMPLES). */
  maxSamples?: number;
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
function keyOf(l: Labels): string {
  let k = keys.get(l);
  if (k === undefined) {
    k = labelsKey(l);
    keys.set(l, k);
  }
  return k;
}

/** Index of the first element > t. */
function upperBound(ts: number[], t: number): number {
  let lo = 0;
  let hi = ts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((ts[mid] as number) <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Reads every selector's series once for [start, end] (plus its range, lookback and offset). */
function load(db: SeriesSource, expr: Expr, start: number, end: number, env: Env): void {
  switch (expr.type) {
    case "selector": {
      const back = expr.rangeMs ?? LOOKBACK_MS;
      const from = start - expr.offsetMs - back;
      const to = end - expr.offsetMs;
      const loaded: Loaded[] = [];
      for (const s of db.select(expr.matchers)) {
        const data = db.read(s.id, from, to);
        env.samples += data.ts.length;
        if (env.samples > env.maxSamples) {
          throw new TooManySamplesError(env.maxSamples);
        }
        loaded.push({ labels: s.labels, data });
      }
      env.loaded.set(expr, loaded);
      return;
    }
    case "call":
      for (const a of expr.args) load(db, a, start, end, env);
      return;
    case "aggregate":
      if (expr.param) load(db, expr.param, start, end, env);
      load(db, expr.expr, start, end, env);
      return;
    case "binary":
      load(db, expr.lhs, start, end, env);
      load(db, expr.rhs, start, end, env);
      return;
    case "neg":
      load(db, expr.expr, start, end, env);
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
  const env: Env = { loaded: new Map(), samples: 0, maxSamples: options.maxSamples ?? MAX_QUERY_SAMPLES };
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
  const env: Env = { loaded: new Map(), samples: 0, maxSamples: options.maxSamples ?? MAX_QUERY_SAMPLES };
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

/** The static type of an expression, for argument checks. */
export function typeOf(e: Expr): "scalar" | "string" | "vector" | "matrix" {
  switch (e.type) {
    case "number":
      return "scalar";
    case "string":
      return "string";
    case "selector":
      return e.rangeMs !== undefined ? "matrix" : "vector";
    case "neg":
      return typeOf(e.expr);
    case "aggregate":
      return "vector";
    case "binary":
      return typeOf(e.lhs) === "scalar" && typeOf(e.rhs) === "scalar" ? "scalar" : "vector";
    case "call":
      return e.func === "time" || e.func === "scalar" || e.func === "pi" ? "scalar" : "vector";
  }
}

function evaluate(e: Expr, t: number, env: Env): Value {
  switch (e.type) {
    case "number":
      return { type: "scalar", value: e.value };
    case "string":
      return { type: "string", value: e.value };
    case "selector":
      return selectorAt(e, t, env);
    case "neg": {
      const v = evaluate(e.expr, t, env);
      if (v.type === "scalar") return { type: "scalar", value: -v.value };
      if (v.type === "vector")
        return {
          type: "vector",
          samples: v.samples.map((s) => ({ labels: dropName(s.labels), value: -s.value })),
        };
      throw new QueryError("unary minus needs a scalar or an instant vector");
    }
    case "call":
      return callFunction(e, t, env);
    case "aggregate":
      return aggregate(e, t, env);
    case "binary":
      return binary(e, t, env);
  }
}

function selectorAt(e: Extract<Expr, { type: "selector" }>, t: number, env: Env): Value {
  const loaded = env.loaded.get(e) ?? [];
  const at = t - e.offsetMs;
  if (e.rangeMs !== undefined) {
    // Windows are left-open: (at - range, at], as in Prometheus 3.
    const series: { labels: Labels; ts: number[]; values: number[] }[] = [];
    for (const s of loaded) {
      const lo = upperBound(s.data.ts, at - e.rangeMs);
      const hi = upperBound(s.data.ts, at);
      if (hi > lo) {
        series.push({ labels: s.labels, ts: s.data.ts.slice(lo, hi), values: s.data.values.slice(lo, hi) });
      }
    }
    return { type: "matrix", series };
  }
  const samples: Sample[] = [];
  for (const s of loaded) {
    const i = upperBound(s.data.ts, at) - 1;
    if (i >= 0 && (s.data.ts[i] as number) > at - LOOKBACK_MS) {
      samples.push({ labels: s.labels, value: s.data.values[i] as number });
    }
  }
  return { type: "vector", samples };
}

/** One series' samples within a range window: indices [lo, hi) of its loaded arrays. */
interface Window {
  labels: Labels;
  ts: number[];
  values: number[];
  lo: number;
  hi: number;
}

/** The windows of a range selector at `t`, without copying samples (the hot path of rate() charts). */
function rangeWindows(
  e: Expr | undefined,
  func: string,
  t: number,
  env: Env,
): { windows: Window[]; start: number; end: number } {
  if (e?.type !== "selector" || e.rangeMs === undefined) {
    throw new QueryError(`${func}() needs a range vector such as x[5m], got ${e ? typeOf(e) : "nothing"}`);
  }
  const at = t - e.offsetMs;
  const windows: Window[] = [];
  for (const s of env.loaded.get(e) ?? []) {
    const lo = upperBound(s.data.ts, at - e.rangeMs);
    const hi = upperBound(s.data.ts, at);
    if (hi > lo) windows.push({ labels: s.labels, ts: s.data.ts, values: s.data.values, lo, hi });
  }
  return { windows, start: at - e.rangeMs, end: at };
}

function expectVector(e: Expr | undefined, func: string, t: number, env: Env): Sample[] {
  if (!e || typeOf(e) !== "vector") throw new QueryError(`${func}() needs an instant vector argument`);
  return (evaluate(e, t, env) as Extract<Value, { type: "vector" }>).samples;
}

function expectScalar(e: Expr | undefined, func: string, t: number, env: Env): number {
  if (!e || typeOf(e) !== "scalar") throw new QueryError(`${func}() needs a scalar argument`);
  return (evaluate(e, t, env) as Extract<Value, { type: "scalar" }>).value;
}

/**
 * Prometheus' extrapolated rate: the increase within the window (counter
 * resets added back), extrapolated to the window's edges when the samples
 * stop short of them by less than 1.1 sample intervals.
 */
export function extrapolatedRate(
  w: { ts: number[]; values: number[]; lo: number; hi: number },
  rangeStart: number,
  rangeEnd: number,
  isCounter: boolean,
  isRate: boolean,
): number | undefined {
  const { ts, values, lo, hi } = w;
  const n = hi - lo;
  if (n < 2) return undefined;
  const first = values[lo] as number;
  const last = values[hi - 1] as number;
  let result = last - first;
  if (isCounter) {
    for (let i = lo + 1; i < hi; i++) {
      if ((values[i] as number) < (values[i - 1] as number)) result += values[i - 1] as number;
    }
  }
  let durationToStart = ((ts[lo] as number) - rangeStart) / 1000;
  const durationToEnd = (rangeEnd - (ts[hi - 1] as number)) / 1000;
  const sampled = ((ts[hi - 1] as number) - (ts[lo] as number)) / 1000;
  const avgStep = sampled / (n - 1);
  if (isCounter && result > 0 && first >= 0) {
    // A counter does not go below zero: do not extrapolate past the time it would have been 0.
    const durationToZero = sampled * (first / result);
    if (durationToZero < durationToStart) durationToStart = durationToZero;
  }
  const threshold = avgStep * 1.1;
  let interval = sampled;
  interval += durationToStart < threshold ? durationToStart : avgStep / 2;
  interval += durationToEnd < threshold ? durationToEnd : avgStep / 2;
  result *= interval / sampled;
  if (isRate) result /= (rangeEnd - rangeStart) / 1000;
  return result;
}

function sumOf(v: number[], lo: number, hi: number): number {
  let sum = 0;
  for (let i = lo; i < hi; i++) sum += v[i] as number;
  return sum;
}

function extreme(v: number[], lo: number, hi: number, max: boolean): number {
  let out = v[lo] as number;
  for (let i = lo + 1; i < hi; i++) {
    const x = v[i] as number;
    if (Number.isNaN(out) || (max ? x > out : x < out)) out = x;
  }
  return out;
}

/** The *_over_time functions, over values[lo, hi) (never empty). */
export const OVER_TIME: Record<string, (v: number[], lo: number, hi: number) => number> = {
  avg_over_time: (v, lo, hi) => sumOf(v, lo, hi) / (hi - lo),
  sum_over_time: sumOf,
  min_over_time: (v, lo, hi) => extreme(v, lo, hi, false),
  max_over_time: (v, lo, hi) => extreme(v, lo, hi, true),
  count_over_time: (_v, lo, hi) => hi - lo,
  last_over_time: (v, _lo, hi) => v[hi - 1] as number,
  stddev_over_time: (v, lo, hi) => Math.sqrt(variance(v.slice(lo, hi))),
  stdvar_over_time: (v, lo, hi) => variance(v.slice(lo, hi)),
};

function variance(v: number[]): number {
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  return v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length;
}

const MATH: Record<string, (x: number) => number> = {
  abs: Math.abs,
  ceil: Math.ceil,
  floor: Math.floor,
  exp: Math.exp,
  sqrt: Math.sqrt,
  ln: Math.log,
  log2: Math.log2,
  log10: Math.log10,
  sgn: Math.sign,
};

function callFunction(e: Extract<Expr, { type: "call" }>, t: number, env: Env): Value {
  const { func, args } = e;
  const arity = (n: number, m = n) => {
    if (args.length < n || args.length > m) {
      throw new QueryError(
        `${func}() takes ${n === m ? n : `${n} to ${m}`} argument${m === 1 ? "" : "s"}, got ${args.length}`,
      );
    }
  };
  if (func === "rate" || func === "increase" || func === "delta") {
    arity(1);
    const { windows, start, end } = rangeWindows(args[0], func, t, env);
    const samples: Sample[] = [];
    for (const w of windows) {
      const v = extrapolatedRate(w, start, end, func !== "delta", func === "rate");
      if (v !== undefined) samples.push({ labels: dropName(w.labels), value: v });
    }
    return { type: "vector", samples };
  }
  if (func === "irate" || func === "idelta") {
    arity(1);
    const samples: Sample[] = [];
    for (const s of rangeWindows(args[0], func, t, env).windows) {
      const n = s.hi;
      if (n - s.lo < 2) continue;
      const last = s.values[n - 1] as number;
      const prev = s.values[n - 2] as number;
      let d = func === "irate" && last < prev ? last : last - prev;
      if (func === "irate") d /= ((s.ts[n - 1] as number) - (s.ts[n - 2] as number)) / 1000;
      samples.push({ labels: dropName(s.labels), value: d });
    }
    return { type: "vector", samples };
  }
  const overTime = OVER_TIME[func];
  if (overTime) {
    arity(1);
    const samples = rangeWindows(args[0], func, t, env).windows.map((s) => ({
      labels: func === "last_over_time" ? s.labels : dropName(s.labels),
      value: overTime(s.values, s.lo, s.hi),
    }));
    return { type: "vector", samples };
  }
  if (func === "quantile_over_time") {
    arity(2);
    const q = expectScalar(args[0], func, t, env);
    const samples = rangeWindows(args[1], func, t, env).windows.map((s) => ({
      labels: dropName(s.labels),
      value: quantile(q, s.values.slice(s.lo, s.hi)),
    }));
    return { type: "vector", samples };
  }
  const math = MATH[func];
  if (math) {
    arity(1);
    return mapVector(expectVector(args[0], func, t, env), math);
  }
  switch (func) {
    case "round": {
      arity(1, 2);
      const to = args[1] ? expectScalar(args[1], func, t, env) : 1;
      return mapVector(expectVector(args[0], func, t, env), (x) => Math.floor(x / to + 0.5) * to);
    }
    case "clamp_min":
    case "clamp_max": {
      arity(2);
      const b = expectScalar(args[1], func, t, env);
      return mapVector(expectVector(args[0], func, t, env), (x) =>
        func === "clamp_min" ? Math.max(x, b) : Math.min(x, b),
      );
    }
    case "clamp": {
      arity(3);
      const lo = expectScalar(args[1], func, t, env);
      const hi = expectScalar(args[2], func, t, env);
      return mapVector(expectVector(args[0], func, t, env), (x) => Math.max(lo, Math.min(hi, x)));
    }
    case "time":
      arity(0);
      return { type: "scalar", value: t / 1000 };
    case "pi":
      arity(0);
      return { type: "scalar", value: Math.PI };
    case "vector":
      arity(1);
      return { type: "vector", samples: [{ labels: {}, value: expectScalar(args[0], func, t, env) }] };
    case "scalar": {
      arity(1);
      const v = expectVector(args[0], func, t, env);
      return { type: "scalar", value: v.length === 1 ? (v[0] as Sample).value : Number.NaN };
    }
    case "absent": {
      arity(1);
      const v = expectVector(args[0], func, t, env);
      if (v.length > 0) return { type: "vector", samples: [] };
      const labels: Labels = {};
      const a = args[0] as Expr;
      if (a.type === "selector") {
        for (const m of a.matchers) if (m.op === "=" && m.name !== NAME) labels[m.name] = m.value;
      }
      return { type: "vector", samples: [{ labels, value: 1 }] };
    }
    case "timestamp": {
      arity(1);
      const a = args[0] as Expr;
      if (a.type !== "selector" || a.rangeMs !== undefined)
        throw new QueryError("timestamp() needs a metric selector");
      const samples: Sample[] = [];
      for (const s of env.loaded.get(a) ?? []) {
        const at = t - a.offsetMs;
        const i = upperBound(s.data.ts, at) - 1;
        if (i >= 0 && (s.data.ts[i] as number) > at - LOOKBACK_MS) {
          samples.push({ labels: dropName(s.labels), value: (s.data.ts[i] as number) / 1000 });
        }
      }
      return { type: "vector", samples };
    }
    case "histogram_quantile": {
      arity(2);
      return histogramQuantileVector(
        expectScalar(args[0], func, t, env),
        expectVector(args[1], func, t, env),
      );
    }
    case "label_replace": {
      arity(5);
      const strs = args.slice(1).map((a) => {
        if (a.type !== "string")
          throw new QueryError("label_replace() needs string arguments after the vector");
        return a.value;
      }) as [string, string, string, string];
      const [dst, replacement, src, regex] = strs;
      let re: RegExp;
      try {
        re = new RegExp(`^(?:${regex})$`);
      } catch (err) {
        throw new QueryError(`label_replace(): invalid regular expression: ${(err as Error).message}`);
      }
      const samples = expectVector(args[0], func, t, env).map((s) => {
        const m = re.exec(s.labels[src] ?? "");
        if (!m) return s;
        const value = replacement.replace(/\$(\d+)|\$\{(\w+)\}/g, (_, n, name) => m[Number(n ?? name)] ?? "");
        const labels = { ...s.labels };
        if (value === "") delete labels[dst];
        else labels[dst] = value;
        return { labels, value: s.value };
      });
      return { type: "vector", samples };
    }
  }
  throw new QueryError(`unknown or unsupported function ${func}()`);
}

function mapVector(samples: Sample[], f: (x: number) => number): Value {
  return { type: "vector", samples: samples.map((s) => ({ labels: dropName(s.labels), value: f(s.value) })) };
}

/** φ-quantile of values (linear interpolation, as Prometheus' quantile). */
function quantile(q: number, values: number[]): number {
  if (values.length === 0) return Number.NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = q * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(lo + 1, sorted.length - 1);
  const w = rank - lo;
  return (sorted[lo] as number) * (1 - w) + (sorted[hi] as number) * w;
}

/**
 * The φ-quantile from classic histogram buckets (cumulative counts by upper
 * bound `le`), interpolated linearly within the bucket, as Prometheus does.
 */
export function bucketQuantile(q: number, buckets: { upper: number; count: number }[]): number {
  if (Number.isNaN(q)) return Number.NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  const sorted = [...buckets].sort((a, b) => a.upper - b.upper);
  // Buckets with the same bound (from several series) are added together.
  const merged: { upper: number; count: number }[] = [];
  for (const b of sorted) {
    const last = merged[merged.length - 1];
    if (last && last.upper === b.upper) last.count += b.count;
    else merged.push({ ...b });
  }
  if (merged.length < 2 || merged[merged.length - 1]?.upper !== Infinity) return Number.NaN;
  // Counts must not fall with the bound (rate() of buckets can, by a little): carry the maximum forward.
  for (let i = 1; i < merged.length; i++) {
    const b = merged[i] as { upper: number; count: number };
    const prev = merged[i - 1] as { upper: number; count: number };
    if (b.count < prev.count) b.count = prev.count;
  }
  const total = (merged[merged.length - 1] as { count: number }).count;
  if (total === 0 || Number.isNaN(total)) return Number.NaN;
  let rank = q * total;
  let b = merged.findIndex((x) => x.count >= rank);
  if (b < 0) b = merged.length - 1;
  if (b === merged.length - 1) return (merged[merged.length - 2] as { upper: number }).upper;
  const bucket = merged[b] as { upper: number; count: number };
  if (b === 0 && bucket.upper <= 0) return bucket.upper;
  let start = 0;
  let count = bucket.count;
  if (b > 0) {
    const prev = merged[b - 1] as { upper: number; count: number };
    start = prev.upper;
    count -= prev.count;
    rank -= prev.count;
  }
  return start + (bucket.upper - start) * (rank / count);
}

function histogramQuantileVector(q: number, samples: Sample[]): Value {
  const groups = new Map<string, { labels: Labels; buckets: { upper: number; count: number }[] }>();
  for (const s of samples) {
    const le = s.labels.le;
    if (le === undefined) continue;
    const upper = le === "+Inf" || le === "Inf" ? Infinity : Number(le);
    if (Number.isNaN(upper)) continue;
    const { le: _, ...rest } = dropName(s.labels);
    const key = labelsKey(rest);
    let g = groups.get(key);
    if (!g) {
      g = { labels: rest, buckets: [] };
      groups.set(key, g);
    }
    g.buckets.push({ upper, count: s.value });
  }
  return {
    type: "vector",
    samples: [...groups.values()].map((g) => ({ labels: g.labels, value: bucketQuantile(q, g.buckets) })),
  };
}

export function groupLabels(labels: Labels, grouping: string[], without: boolean): Labels {
  if (without) {
    const out: Labels = {};
    for (const [k, v] of Object.entries(labels)) if (k !== NAME && !grouping.includes(k)) out[k] = v;
    return out;
  }
  const out: Labels = {};
  for (const k of grouping) {
    const v = labels[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function aggregate(e: Extract<Expr, { type: "aggregate" }>, t: number, env: Env): Value {
  const samples = expectVector(e.expr, e.op, t, env);
  const param = e.param ? expectScalar(e.param, e.op, t, env) : 0;
  const groups = new Map<string, { labels: Labels; items: Sample[] }>();
  for (const s of samples) {
    const labels = groupLabels(s.labels, e.grouping, e.without);
    const key = labelsKey(labels);
    let g = groups.get(key);
    if (!g) {
      g = { labels, items: [] };
      groups.set(key, g);
    }
    g.items.push(s);
  }
  const out: Sample[] = [];
  for (const g of groups.values()) {
    const v = g.items.map((s) => s.value);
    switch (e.op) {
      case "sum":
        out.push({ labels: g.labels, value: v.reduce((a, b) => a + b, 0) });
        break;
      case "avg":
        out.push({ labels: g.labels, value: v.reduce((a, b) => a + b, 0) / v.length });
        break;
      case "min":
        out.push({ labels: g.labels, value: v.reduce((a, b) => (b < a || Number.isNaN(a) ? b : a)) });
        break;
      case "max":
        out.push({ labels: g.labels, value: v.reduce((a, b) => (b > a || Number.isNaN(a) ? b : a)) });
        break;
      case "count":
        out.push({ labels: g.labels, value: v.length });
        break;
      case "group":
        out.push({ labels: g.labels, value: 1 });
        break;
      case "stddev":
        out.push({ labels: g.labels, value: Math.sqrt(variance(v)) });
        break;
      case "stdvar":
        out.push({ labels: g.labels, value: variance(v) });
        break;
      case "quantile":
        out.push({ labels: g.labels, value: quantile(param, v) });
        break;
      case "topk":
      case "bottomk": {
        // topk keeps the samples' own labels; NaN sorts last either way.
        const k = Math.floor(param);
        const dir = e.op === "topk" ? -1 : 1;
        const sorted = [...g.items].sort((a, b) =>
          Number.isNaN(a.value) ? 1 : Number.isNaN(b.value) ? -1 : dir * (a.value - b.value),
        );
        out.push(...sorted.slice(0, Math.max(0, k)));
        break;
      }
      default:
        throw new QueryError(`unsupported aggregation ${e.op}`);
    }
  }
  return { type: "vector", samples: out };
}

export function arith(op: string, a: number, b: number): number {
  switch (op) {
    case "+":
      return a + b;
    case "-":
      return a - b;
    case "*":
      return a * b;
    case "/":
      return a / b;
    case "%":
      return a % b;
    case "^":
      return a ** b;
    case "atan2":
      return Math.atan2(a, b);
    case "==":
      return a === b ? 1 : 0;
    case "!=":
      return a !== b ? 1 : 0;
    case "<":
      return a < b ? 1 : 0;
    case "<=":
      return a <= b ? 1 : 0;
    case ">":
      return a > b ? 1 : 0;
    case ">=":
      return a >= b ? 1 : 0;
  }
  throw new QueryError(`unknown operator ${op}`);
}

function matchKey(labels: Labels, matching: { on: boolean; labels: string[] } | undefined): string {
  if (!matching) return keyOf(dropName(labels));
  return labelsKey(groupLabels(labels, matching.labels, !matching.on));
}

function binary(e: Extract<Expr, { type: "binary" }>, t: number, env: Env): Value {
  const { op } = e;
  const cmp = isComparison(op);
  const l = evaluate(e.lhs, t, env);
  const r = evaluate(e.rhs, t, env);
  if (op === "and" || op === "or" || op === "unless") {
    if (l.type !== "vector" || r.type !== "vector")
      throw new QueryError(`${op} needs instant vectors on both sides`);
    const rightKeys = new Set(r.samples.map((s) => matchKey(s.labels, e.matching)));
    if (op === "and")
      return {
        type: "vector",
        samples: l.samples.filter((s) => rightKeys.has(matchKey(s.labels, e.matching))),
      };
    if (op === "unless")
      return {
        type: "vector",
        samples: l.samples.filter((s) => !rightKeys.has(matchKey(s.labels, e.matching))),
      };
    const leftKeys = new Set(l.samples.map((s) => matchKey(s.labels, e.matching)));
    return {
      type: "vector",
      samples: [...l.samples, ...r.samples.filter((s) => !leftKeys.has(matchKey(s.labels, e.matching)))],
    };
  }
  if (l.type === "scalar" && r.type === "scalar") {
    if (cmp && !e.bool) throw new QueryError(`comparisons between scalars need the bool modifier`);
    return { type: "scalar", value: arith(op, l.value, r.value) };
  }
  // Arithmetic drops the metric name; a filtering comparison keeps the sample as it is.
  const keepName = cmp && !e.bool;
  if (l.type === "vector" && r.type === "scalar")
    return vectorScalar(l.samples, r.value, op, false, cmp, e.bool, keepName);
  if (l.type === "scalar" && r.type === "vector")
    return vectorScalar(r.samples, l.value, op, true, cmp, e.bool, keepName);
  if (l.type === "vector" && r.type === "vector") {
    const right = new Map<string, Sample>();
    for (const s of r.samples) {
      const key = matchKey(s.labels, e.matching);
      if (right.has(key)) {
        throw new QueryError(
          `many-to-many matching not allowed: several series on the right side of ${op} have the labels ${key || "{}"}; aggregate them or use on(...)`,
        );
      }
      right.set(key, s);
    }
    const seen = new Set<string>();
    const out: Sample[] = [];
    for (const s of l.samples) {
      const key = matchKey(s.labels, e.matching);
      const other = right.get(key);
      if (!other) continue;
      if (seen.has(key)) {
        throw new QueryError(
          `found duplicate series for the match group ${key || "{}"} on the left side of ${op}: aggregate them or use on(...)`,
        );
      }
      seen.add(key);
      const v = arith(op, s.value, other.value);
      if (cmp && !e.bool) {
        if (v === 1) out.push(s);
        continue;
      }
      const labels = e.matching?.on ? groupLabels(s.labels, e.matching.labels, false) : dropName(s.labels);
      out.push({ labels, value: v });
    }
    return { type: "vector", samples: out };
  }
  throw new QueryError(`operator ${op} does not apply to ${l.type} and ${r.type}`);
}

function vectorScalar(
  samples: Sample[],
  scalar: number,
  op: string,
  scalarLeft: boolean,
  cmp: boolean,
  bool: boolean,
  keepName: boolean,
): Value {
  const out: Sample[] = [];
  for (const s of samples) {
    const v = scalarLeft ? arith(op, scalar, s.value) : arith(op, s.value, scalar);
    if (cmp && !bool) {
      if (v === 1) out.push(s);
      continue;
    }
    out.push({ labels: keepName ? s.labels : dropName(s.labels), value: v });
  }
  return { type: "vector", samples: out };
}

export { PromqlError };
