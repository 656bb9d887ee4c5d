/**
 * PromQL's functions (Prometheus 2.x's list, float samples): of a range
 * vector (rate … holt_winters, the *_over_time family, absent_over_time), of
 * an instant vector (math, trigonometry, clamp, round, dates, labels, sort,
 * histogram_quantile, timestamp, absent) and of none (time, pi).
 */

import { type Labels, NAME } from "../tsdb/labels.ts";
import { expectScalar, expectString, expectVector, instantSelector, rangeWindows } from "./engine.ts";
import { histogramQuantileVector } from "./histogram.ts";
import type { Expr } from "./parser.ts";
import {
  deriv,
  extrapolatedRate,
  holtWinters,
  instantDelta,
  OVER_TIME,
  predictLinear,
  quantile,
} from "./range-functions.ts";
import { dropName, type Env, QueryError, type Sample, type Value } from "./values.ts";

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
  sin: Math.sin,
  cos: Math.cos,
  tan: Math.tan,
  asin: Math.asin,
  acos: Math.acos,
  atan: Math.atan,
  sinh: Math.sinh,
  cosh: Math.cosh,
  tanh: Math.tanh,
  asinh: Math.asinh,
  acosh: Math.acosh,
  atanh: Math.atanh,
  deg: (x) => (x * 180) / Math.PI,
  rad: (x) => (x * Math.PI) / 180,
};

/** Date functions of Unix seconds, in UTC. */
const DATES: Record<string, (d: Date) => number> = {
  day_of_month: (d) => d.getUTCDate(),
  day_of_week: (d) => d.getUTCDay(),
  day_of_year: (d) =>
    (Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) - Date.UTC(d.getUTCFullYear(), 0, 1)) /
      86_400_000 +
    1,
  days_in_month: (d) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate(),
  hour: (d) => d.getUTCHours(),
  minute: (d) => d.getUTCMinutes(),
  month: (d) => d.getUTCMonth() + 1,
  year: (d) => d.getUTCFullYear(),
};

/** Functions of one range vector giving one value per series (or none: undefined). */
const OF_WINDOW: Record<
  string,
  (w: Parameters<typeof deriv>[0], start: number, end: number) => number | undefined
> = {
  rate: (w, s, e) => extrapolatedRate(w, s, e, true, true),
  increase: (w, s, e) => extrapolatedRate(w, s, e, true, false),
  delta: (w, s, e) => extrapolatedRate(w, s, e, false, false),
  irate: (w) => instantDelta(w, true),
  idelta: (w) => instantDelta(w, false),
  deriv: (w) => deriv(w),
};

type Call = Extract<Expr, { type: "call" }>;

function vector(samples: Sample[]): Value {
  return { type: "vector", samples };
}

function mapVector(samples: Sample[], f: (x: number) => number): Value {
  return vector(samples.map((s) => ({ labels: dropName(s.labels), value: f(s.value) })));
}

/** The labels an absent()/absent_over_time() answer has: the selector's equality matchers (once each). */
function absentLabels(e: Expr | undefined): Labels {
  const labels: Labels = {};
  if (e?.type !== "selector") return labels;
  const seen = new Set<string>();
  for (const m of e.matchers) {
    if (m.name === NAME) continue;
    if (m.op === "=" && !seen.has(m.name)) labels[m.name] = m.value;
    else delete labels[m.name];
    seen.add(m.name);
  }
  return labels;
}

export function callFunction(e: Call, t: number, env: Env): Value {
  const { func, args } = e;
  const arity = (n: number, m = n) => {
    if (args.length < n || args.length > m) {
      throw new QueryError(
        `${func}() takes ${n === m ? n : `${n} to ${m}`} argument${m === 1 ? "" : "s"}, got ${args.length}`,
      );
    }
  };
  const ofWindow = OF_WINDOW[func];
  if (ofWindow) {
    arity(1);
    const { windows, start, end } = rangeWindows(args[0], func, t, env);
    const out: Sample[] = [];
    for (const w of windows) {
      const v = ofWindow(w, start, end);
      if (v !== undefined) out.push({ labels: dropName(w.labels), value: v });
    }
    return vector(out);
  }
  const overTime = OVER_TIME[func];
  if (overTime) {
    arity(1);
    return vector(
      rangeWindows(args[0], func, t, env).windows.map((w) => ({
        labels: func === "last_over_time" ? w.labels : dropName(w.labels),
        value: overTime(w.values, w.lo, w.hi),
      })),
    );
  }
  const math = MATH[func];
  if (math) {
    arity(1);
    return mapVector(expectVector(args[0], func, t, env), math);
  }
  const date = DATES[func];
  if (date) {
    arity(0, 1);
    const samples = args[0] ? expectVector(args[0], func, t, env) : [{ labels: {}, value: t / 1000 }];
    return mapVector(samples, (x) => (Number.isFinite(x) ? date(new Date(x * 1000)) : Number.NaN));
  }
  switch (func) {
    case "quantile_over_time": {
      arity(2);
      const q = expectScalar(args[0], func, t, env);
      return vector(
        rangeWindows(args[1], func, t, env).windows.map((w) => ({
          labels: dropName(w.labels),
          value: quantile(q, w.values.slice(w.lo, w.hi)),
        })),
      );
    }
    case "mad_over_time": {
      // Later 2.x (experimental there): the median of the absolute deviations from the median.
      arity(1);
      return vector(
        rangeWindows(args[0], func, t, env).windows.map((w) => {
          const values = w.values.slice(w.lo, w.hi);
          const median = quantile(0.5, values);
          return {
            labels: dropName(w.labels),
            value: quantile(
              0.5,
              values.map((v) => Math.abs(v - median)),
            ),
          };
        }),
      );
    }
    case "sort_by_label":
    case "sort_by_label_desc": {
      // Later 2.x (experimental there): by the named labels' values in natural order, then by all labels.
      if (args.length < 1) throw new QueryError(`${func}() takes at least 1 argument, got 0`);
      const names = args.slice(1).map((a) => expectString(a, func));
      const dir = func === "sort_by_label" ? 1 : -1;
      const natural = new Intl.Collator("en", { numeric: true });
      const v = [...expectVector(args[0], func, t, env)];
      v.sort((a, b) => {
        for (const n of names) {
          const c = natural.compare(a.labels[n] ?? "", b.labels[n] ?? "");
          if (c !== 0) return dir * c;
        }
        return (
          dir *
          natural.compare(
            JSON.stringify(Object.entries(a.labels).sort()),
            JSON.stringify(Object.entries(b.labels).sort()),
          )
        );
      });
      return vector(v);
    }
    case "predict_linear": {
      arity(2);
      const { windows, end } = rangeWindows(args[0], func, t, env);
      const seconds = expectScalar(args[1], func, t, env);
      const out: Sample[] = [];
      for (const w of windows) {
        const v = predictLinear(w, end, seconds);
        if (v !== undefined) out.push({ labels: dropName(w.labels), value: v });
      }
      return vector(out);
    }
    case "holt_winters": {
      arity(3);
      const { windows } = rangeWindows(args[0], func, t, env);
      const sf = expectScalar(args[1], func, t, env);
      const tf = expectScalar(args[2], func, t, env);
      if (!(sf > 0 && sf < 1))
        throw new QueryError(`invalid smoothing factor. Expected: 0 < sf < 1, got: ${sf}`);
      if (!(tf > 0 && tf < 1)) throw new QueryError(`invalid trend factor. Expected: 0 < tf < 1, got: ${tf}`);
      const out: Sample[] = [];
      for (const w of windows) {
        const v = holtWinters(w, sf, tf);
        if (v !== undefined) out.push({ labels: dropName(w.labels), value: v });
      }
      return vector(out);
    }
    case "absent_over_time": {
      arity(1);
      if (rangeWindows(args[0], func, t, env).windows.length > 0) return vector([]);
      const a = args[0];
      return vector([{ labels: absentLabels(a?.type === "subquery" ? a.expr : a), value: 1 }]);
    }
    case "absent": {
      arity(1);
      if (expectVector(args[0], func, t, env).length > 0) return vector([]);
      return vector([{ labels: absentLabels(args[0]), value: 1 }]);
    }
    case "round": {
      arity(1, 2);
      const to = args[1] ? expectScalar(args[1], func, t, env) : 1;
      // Go's math.Floor(x*(1/to)+0.5)/(1/to), as Prometheus rounds.
      const inv = 1 / to;
      return mapVector(expectVector(args[0], func, t, env), (x) => Math.floor(x * inv + 0.5) / inv);
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
      const v = expectVector(args[0], func, t, env);
      if (lo > hi) return vector([]);
      return mapVector(v, (x) => Math.max(lo, Math.min(hi, x)));
    }
    case "time":
      arity(0);
      return { type: "scalar", value: t / 1000 };
    case "pi":
      arity(0);
      return { type: "scalar", value: Math.PI };
    case "vector":
      arity(1);
      return vector([{ labels: {}, value: expectScalar(args[0], func, t, env) }]);
    case "scalar": {
      arity(1);
      const v = expectVector(args[0], func, t, env);
      return { type: "scalar", value: v.length === 1 ? (v[0] as Sample).value : Number.NaN };
    }
    case "sort":
    case "sort_desc": {
      arity(1);
      const dir = func === "sort" ? 1 : -1;
      // NaN last either way; stable otherwise.
      const v = [...expectVector(args[0], func, t, env)];
      v.sort((a, b) =>
        Number.isNaN(a.value)
          ? Number.isNaN(b.value)
            ? 0
            : 1
          : Number.isNaN(b.value)
            ? -1
            : dir * (a.value - b.value),
      );
      return vector(v);
    }
    case "timestamp": {
      arity(1);
      const a = args[0];
      if (a?.type === "selector" && a.rangeMs === undefined) {
        const times: number[] = [];
        const samples = instantSelector(a, t, env, (ms) => times.push(ms));
        return vector(
          samples.map((s, i) => ({ labels: dropName(s.labels), value: (times[i] as number) / 1000 })),
        );
      }
      return mapVector(expectVector(a, func, t, env), () => t / 1000);
    }
    // Of native histograms, which herd does not keep: float samples give nothing, as in Prometheus.
    case "histogram_count":
    case "histogram_sum":
    case "histogram_stddev":
    case "histogram_stdvar":
      arity(1);
      expectVector(args[0], func, t, env);
      return vector([]);
    case "histogram_fraction":
      arity(3);
      expectScalar(args[0], func, t, env);
      expectScalar(args[1], func, t, env);
      expectVector(args[2], func, t, env);
      return vector([]);
    case "histogram_quantile":
      arity(2);
      return histogramQuantileVector(
        expectScalar(args[0], func, t, env),
        expectVector(args[1], func, t, env),
      );
    case "label_replace":
      arity(5);
      return labelReplace(args, t, env);
    case "label_join": {
      if (args.length < 3)
        throw new QueryError(`label_join() takes at least 3 arguments, got ${args.length}`);
      const dst = expectString(args[1], func);
      const sep = expectString(args[2], func);
      const srcs = args.slice(3).map((a) => expectString(a, func));
      checkLabelName(dst, func);
      return vector(
        expectVector(args[0], func, t, env).map((s) => {
          const value = srcs.map((l) => s.labels[l] ?? "").join(sep);
          const labels = { ...s.labels };
          if (value === "") delete labels[dst];
          else labels[dst] = value;
          return { labels, value: s.value };
        }),
      );
    }
  }
  throw new QueryError(`unknown function ${func}()`);
}

function checkLabelName(name: string, func: string): void {
  if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) throw new QueryError(`${func}(): invalid label name "${name}"`);
}

function labelReplace(args: Expr[], t: number, env: Env): Value {
  const [dst, replacement, src, regex] = args.slice(1).map((a) => expectString(a, "label_replace")) as [
    string,
    string,
    string,
    string,
  ];
  checkLabelName(dst, "label_replace");
  let re: RegExp;
  try {
    re = new RegExp(`^(?:${regex})$`);
  } catch (err) {
    throw new QueryError(`label_replace(): invalid regular expression: ${(err as Error).message}`);
  }
  return vector(
    expectVector(args[0], "label_replace", t, env).map((s) => {
      const m = re.exec(s.labels[src] ?? "");
      if (!m) return s;
      // Go's Regexp.Expand: $1, ${1}, $name, ${name}; a name runs as far as [a-zA-Z0-9_] goes.
      const value = replacement.replace(/\$(?:\{(\w+)\}|(\w+))|\$\$/g, (all, braced, bare) => {
        if (all === "$$") return "$";
        const ref = (braced ?? bare) as string;
        return (/^\d+$/.test(ref) ? m[Number(ref)] : m.groups?.[ref]) ?? "";
      });
      const labels = { ...s.labels };
      if (value === "") delete labels[dst];
      else labels[dst] = value;
      return { labels, value: s.value };
    }),
  );
}
