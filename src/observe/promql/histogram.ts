/**
 * histogram_quantile for classic histograms: buckets are series of one
 * histogram told apart by `le` (the upper bound), counts cumulative.
 */

import { type Labels, labelsKey } from "../tsdb/labels.ts";
import { dropName, type Sample, type Value } from "./values.ts";

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

export function histogramQuantileVector(q: number, samples: Sample[]): Value {
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
