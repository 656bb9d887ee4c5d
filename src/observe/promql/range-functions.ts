/**
 * The functions of a range vector, each on one series' window: values (and
 * times) [lo, hi) of its arrays, never empty. As Prometheus 2.x computes
 * them: rate/increase/delta extrapolate, deriv and predict_linear fit a least
 * squares line, holt_winters smooths twice.
 */

export interface Span {
  ts: number[];
  values: number[];
  lo: number;
  hi: number;
}

/**
 * Prometheus' extrapolated rate: the increase within the window (counter
 * resets added back), extrapolated to the window's edges when the samples
 * stop short of them by less than 1.1 sample intervals.
 */
export function extrapolatedRate(
  w: Span,
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

/** irate / idelta: from the last two samples (irate: a drop is a counter reset). */
export function instantDelta(w: Span, isRate: boolean): number | undefined {
  const { ts, values, lo, hi } = w;
  if (hi - lo < 2) return undefined;
  const last = values[hi - 1] as number;
  const prev = values[hi - 2] as number;
  let d = isRate && last < prev ? last : last - prev;
  if (isRate) d /= ((ts[hi - 1] as number) - (ts[hi - 2] as number)) / 1000;
  return d;
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

/** Population variance (Welford's running mean, as Prometheus). */
export function variance(v: number[], lo = 0, hi = v.length): number {
  let count = 0;
  let mean = 0;
  let m2 = 0;
  for (let i = lo; i < hi; i++) {
    const x = v[i] as number;
    count++;
    const delta = x - mean;
    mean += delta / count;
    m2 += delta * (x - mean);
  }
  return m2 / count;
}

/** φ-quantile of values (linear interpolation, as Prometheus' quantile). */
export function quantile(q: number, values: number[]): number {
  if (values.length === 0 || Number.isNaN(q)) return Number.NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  // NaN first, as Prometheus sorts them here (so a NaN counts as the smallest value).
  const sorted = [...values].sort((a, b) =>
    Number.isNaN(a) ? (Number.isNaN(b) ? 0 : -1) : Number.isNaN(b) ? 1 : a - b,
  );
  const rank = q * (sorted.length - 1);
  const lo = Math.max(0, Math.floor(rank));
  const hi = Math.min(lo + 1, sorted.length - 1);
  const w = rank - Math.floor(rank);
  return (sorted[lo] as number) * (1 - w) + (sorted[hi] as number) * w;
}

/** The *_over_time functions of one argument, over values[lo, hi) (never empty). */
export const OVER_TIME: Record<string, (v: number[], lo: number, hi: number) => number> = {
  avg_over_time: (v, lo, hi) => sumOf(v, lo, hi) / (hi - lo),
  sum_over_time: sumOf,
  min_over_time: (v, lo, hi) => extreme(v, lo, hi, false),
  max_over_time: (v, lo, hi) => extreme(v, lo, hi, true),
  count_over_time: (_v, lo, hi) => hi - lo,
  last_over_time: (v, _lo, hi) => v[hi - 1] as number,
  present_over_time: () => 1,
  stddev_over_time: (v, lo, hi) => Math.sqrt(variance(v, lo, hi)),
  stdvar_over_time: (v, lo, hi) => variance(v, lo, hi),
  /** How often the value changed (NaN to NaN is no change). */
  changes: (v, lo, hi) => {
    let n = 0;
    for (let i = lo + 1; i < hi; i++) {
      const a = v[i - 1] as number;
      const b = v[i] as number;
      if (a !== b && !(Number.isNaN(a) && Number.isNaN(b))) n++;
    }
    return n;
  },
  /** How often a counter went down. */
  resets: (v, lo, hi) => {
    let n = 0;
    for (let i = lo + 1; i < hi; i++) if ((v[i] as number) < (v[i - 1] as number)) n++;
    return n;
  },
};

/** Least squares slope and intercept (at `interceptMs`) of the window's points, time in seconds. */
export function linearRegression(w: Span, interceptMs: number): { slope: number; intercept: number } {
  const { ts, values, lo, hi } = w;
  let n = 0;
  let sumX = 0;
  let sumY = 0;
  let sumXY = 0;
  let sumX2 = 0;
  const initY = values[lo] as number;
  let constY = true;
  for (let i = lo; i < hi; i++) {
    const y = values[i] as number;
    if (constY && i > lo && y !== initY) constY = false;
    const x = ((ts[i] as number) - interceptMs) / 1000;
    n++;
    sumX += x;
    sumY += y;
    sumXY += x * y;
    sumX2 += x * x;
  }
  if (constY) {
    if (!Number.isFinite(initY)) return { slope: Number.NaN, intercept: Number.NaN };
    return { slope: 0, intercept: initY };
  }
  const covXY = sumXY - (sumX * sumY) / n;
  const varX = sumX2 - (sumX * sumX) / n;
  const slope = covXY / varX;
  return { slope, intercept: sumY / n - (slope * sumX) / n };
}

/** Per-second derivative: the least squares slope (needs two points). */
export function deriv(w: Span): number | undefined {
  if (w.hi - w.lo < 2) return undefined;
  return linearRegression(w, w.ts[w.lo] as number).slope;
}

/** The value `seconds` after `atMs`, from the least squares line (needs two points). */
export function predictLinear(w: Span, atMs: number, seconds: number): number | undefined {
  if (w.hi - w.lo < 2) return undefined;
  const { slope, intercept } = linearRegression(w, atMs);
  return slope * seconds + intercept;
}

/** Double exponential smoothing with smoothing factor sf and trend factor tf (both in (0, 1)). */
export function holtWinters(w: Span, sf: number, tf: number): number | undefined {
  const { values, lo, hi } = w;
  if (hi - lo < 2) return undefined;
  let s0 = 0;
  let s1 = values[lo] as number;
  let b = (values[lo + 1] as number) - s1;
  for (let i = lo + 1; i < hi; i++) {
    const x = sf * (values[i] as number);
    if (i > lo + 1) b = tf * (s1 - s0) + (1 - tf) * b;
    const y = (1 - sf) * (s1 + b);
    s0 = s1;
    s1 = x + y;
  }
  return s1;
}
