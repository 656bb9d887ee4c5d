/**
 * Range queries series by series, for the expressions charts use most:
 * selectors, rate/irate/increase/delta/*_over_time of a range selector,
 * sum/avg/min/max/count/group by|without, histogram_quantile, arithmetic and
 * comparisons with a scalar, unary minus.
 *
 *   loaded series ─► one column per series (a value per step, walked with two pointers) ─► combined per step
 *
 * Why: the general path evaluates the whole expression once per step, with
 * objects per sample per step; here a series' labels, groups and windows are
 * worked out once, and each step is a few array reads. Anything else returns
 * undefined and the general path answers; both give the same results (tested).
 */

import { type Labels, labelsKey } from "../tsdb/labels.ts";
import { arith } from "./binary.ts";
import { bucketQuantile } from "./histogram.ts";
import { type Expr, isComparison } from "./parser.ts";
import { extrapolatedRate, OVER_TIME } from "./range-functions.ts";
import { dropName, type Env, groupLabels, LOOKBACK_MS, type RangeSeries } from "./values.ts";

/** One series at every step: `values[i]` counts only where `present[i]` is 1. */
interface Column {
  labels: Labels;
  values: Float64Array;
  present: Uint8Array;
}

type Result = { scalar: number } | Column[];

const RATES = new Set(["rate", "increase", "delta", "irate", "idelta"]);
const AGGREGATIONS = new Set(["sum", "avg", "min", "max", "count", "group"]);

function column(labels: Labels, n: number): Column {
  return { labels, values: new Float64Array(n), present: new Uint8Array(n) };
}

/** The answer as RangeSeries, or undefined when the expression is not one this path handles. */
export function fastRange(expr: Expr, steps: number[], env: Env): RangeSeries[] | undefined {
  const r = evaluate(expr, steps, env);
  if (!r) return undefined;
  if (!Array.isArray(r)) return [{ labels: {}, ts: steps.slice(), values: steps.map(() => r.scalar) }];
  const out: RangeSeries[] = [];
  const seen = new Set<string>();
  for (const c of r) {
    const key = labelsKey(c.labels);
    // Two series with one label set (e.g. rate() of two metrics): let the general path decide.
    if (seen.has(key)) return undefined;
    seen.add(key);
    const s: RangeSeries = { labels: c.labels, ts: [], values: [] };
    for (let i = 0; i < steps.length; i++) {
      if (c.present[i]) {
        s.ts.push(steps[i] as number);
        s.values.push(c.values[i] as number);
      }
    }
    if (s.ts.length > 0) out.push(s);
  }
  return out;
}

function evaluate(e: Expr, steps: number[], env: Env): Result | undefined {
  switch (e.type) {
    case "number":
      return { scalar: e.value };
    case "selector":
      return e.rangeMs === undefined && e.at === undefined ? instantSelector(e, steps, env) : undefined;
    case "call":
      return call(e, steps, env);
    case "aggregate":
      return aggregate(e, steps, env);
    case "neg": {
      const r = evaluate(e.expr, steps, env);
      if (!r) return undefined;
      if (!Array.isArray(r)) return { scalar: -r.scalar };
      return r.map((c) => ({
        labels: dropName(c.labels),
        values: c.values.map((v) => -v),
        present: c.present,
      }));
    }
    case "binary":
      return binary(e, steps, env);
    default:
      return undefined;
  }
}

function instantSelector(e: Extract<Expr, { type: "selector" }>, steps: number[], env: Env): Column[] {
  const out: Column[] = [];
  for (const s of env.loaded.get(e) ?? []) {
    const c = column(s.labels, steps.length);
    const { ts, values } = s.data;
    let j = 0;
    for (let i = 0; i < steps.length; i++) {
      const at = (steps[i] as number) - e.offsetMs;
      while (j < ts.length && (ts[j] as number) <= at) j++;
      if (j > 0 && (ts[j - 1] as number) >= at - LOOKBACK_MS) {
        c.values[i] = values[j - 1] as number;
        c.present[i] = 1;
      }
    }
    out.push(c);
  }
  return out;
}

function call(e: Extract<Expr, { type: "call" }>, steps: number[], env: Env): Result | undefined {
  const overTime = OVER_TIME[e.func];
  if ((!RATES.has(e.func) && !overTime) || e.args.length !== 1) {
    if (e.func === "histogram_quantile" && e.args.length === 2) return histogramQuantile(e, steps, env);
    return undefined;
  }
  const sel = e.args[0] as Expr;
  if (sel.type !== "selector" || sel.rangeMs === undefined || sel.at !== undefined) return undefined;
  const range = sel.rangeMs;
  const out: Column[] = [];
  for (const s of env.loaded.get(sel) ?? []) {
    const c = column(e.func === "last_over_time" ? s.labels : dropName(s.labels), steps.length);
    const w = { ts: s.data.ts, values: s.data.values, lo: 0, hi: 0 };
    const n = w.ts.length;
    for (let i = 0; i < steps.length; i++) {
      const at = (steps[i] as number) - sel.offsetMs;
      // The window [at - range, at]: both edges only move forward.
      while (w.lo < n && (w.ts[w.lo] as number) < at - range) w.lo++;
      while (w.hi < n && (w.ts[w.hi] as number) <= at) w.hi++;
      if (w.hi <= w.lo) continue;
      let v: number | undefined;
      if (overTime) v = overTime(w.values, w.lo, w.hi);
      else if (e.func === "irate" || e.func === "idelta") {
        if (w.hi - w.lo < 2) continue;
        const last = w.values[w.hi - 1] as number;
        const prev = w.values[w.hi - 2] as number;
        v = e.func === "irate" && last < prev ? last : last - prev;
        if (e.func === "irate") v /= ((w.ts[w.hi - 1] as number) - (w.ts[w.hi - 2] as number)) / 1000;
      } else {
        v = extrapolatedRate(w, at - range, at, e.func !== "delta", e.func === "rate");
      }
      if (v === undefined) continue;
      c.values[i] = v;
      c.present[i] = 1;
    }
    out.push(c);
  }
  return out;
}

/** Columns grouped by a label set worked out once per column. */
function groupColumns(
  columns: Column[],
  labelsOf: (l: Labels) => Labels | undefined,
): { labels: Labels; members: Column[] }[] {
  const groups = new Map<string, { labels: Labels; members: Column[] }>();
  for (const c of columns) {
    const labels = labelsOf(c.labels);
    if (!labels) continue;
    const key = labelsKey(labels);
    let g = groups.get(key);
    if (!g) {
      g = { labels, members: [] };
      groups.set(key, g);
    }
    g.members.push(c);
  }
  return [...groups.values()];
}

function aggregate(e: Extract<Expr, { type: "aggregate" }>, steps: number[], env: Env): Column[] | undefined {
  if (!AGGREGATIONS.has(e.op) || e.param) return undefined;
  const r = evaluate(e.expr, steps, env);
  if (!r || !Array.isArray(r)) return undefined;
  const out: Column[] = [];
  for (const g of groupColumns(r, (l) => groupLabels(l, e.grouping, e.without))) {
    const c = column(g.labels, steps.length);
    for (let i = 0; i < steps.length; i++) {
      let count = 0;
      let acc = 0;
      for (const m of g.members) {
        if (!m.present[i]) continue;
        const v = m.values[i] as number;
        if (count === 0) acc = e.op === "sum" || e.op === "avg" ? 0 : v;
        count++;
        if (e.op === "sum" || e.op === "avg") acc += v;
        else if (e.op === "min") acc = v < acc || Number.isNaN(acc) ? v : acc;
        else if (e.op === "max") acc = v > acc || Number.isNaN(acc) ? v : acc;
      }
      if (count === 0) continue;
      c.present[i] = 1;
      c.values[i] = e.op === "avg" ? acc / count : e.op === "count" ? count : e.op === "group" ? 1 : acc;
    }
    out.push(c);
  }
  return out;
}

function histogramQuantile(
  e: Extract<Expr, { type: "call" }>,
  steps: number[],
  env: Env,
): Column[] | undefined {
  const [phi, arg] = e.args as [Expr, Expr];
  if (phi.type !== "number") return undefined;
  const r = evaluate(arg, steps, env);
  if (!r || !Array.isArray(r)) return undefined;
  const uppers = new Map<Column, number>();
  const groups = groupColumns(r, (l) => {
    if (l.le === undefined) return undefined;
    const { le: _, ...rest } = dropName(l);
    return rest;
  });
  for (const c of r) {
    const le = c.labels.le;
    if (le !== undefined) uppers.set(c, le === "+Inf" || le === "Inf" ? Infinity : Number(le));
  }
  const out: Column[] = [];
  for (const g of groups) {
    const members = g.members.filter((m) => !Number.isNaN(uppers.get(m)));
    const c = column(g.labels, steps.length);
    for (let i = 0; i < steps.length; i++) {
      const buckets: { upper: number; count: number }[] = [];
      for (const m of members) {
        if (m.present[i]) buckets.push({ upper: uppers.get(m) as number, count: m.values[i] as number });
      }
      if (buckets.length === 0) continue;
      c.present[i] = 1;
      c.values[i] = bucketQuantile(phi.value, buckets);
    }
    out.push(c);
  }
  return out;
}

function binary(e: Extract<Expr, { type: "binary" }>, steps: number[], env: Env): Result | undefined {
  if (e.op === "and" || e.op === "or" || e.op === "unless") return undefined;
  const l = evaluate(e.lhs, steps, env);
  const r = evaluate(e.rhs, steps, env);
  if (!l || !r) return undefined;
  const cmp = isComparison(e.op);
  if (!Array.isArray(l) && !Array.isArray(r)) {
    if (cmp && !e.bool) return undefined;
    return { scalar: arith(e.op, l.scalar, r.scalar) };
  }
  if (Array.isArray(l) && Array.isArray(r)) return undefined;
  const columns = (Array.isArray(l) ? l : r) as Column[];
  const scalar = (Array.isArray(l) ? r : l) as { scalar: number };
  const scalarLeft = !Array.isArray(l);
  const filter = cmp && !e.bool;
  return columns.map((c) => {
    const out = column(filter ? c.labels : dropName(c.labels), steps.length);
    for (let i = 0; i < steps.length; i++) {
      if (!c.present[i]) continue;
      const v = scalarLeft
        ? arith(e.op, scalar.scalar, c.values[i] as number)
        : arith(e.op, c.values[i] as number, scalar.scalar);
      if (filter) {
        if (v !== 1) continue;
        out.values[i] = c.values[i] as number;
      } else out.values[i] = v;
      out.present[i] = 1;
    }
    return out;
  });
}
