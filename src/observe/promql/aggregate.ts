/**
 * Aggregation operators: sum, avg, min, max, count, group, stddev, stdvar,
 * quantile, topk, bottomk, count_values, by (…) or without (…).
 */

import { type Labels, labelsKey } from "../tsdb/labels.ts";
import { expectScalar, expectVector } from "./engine.ts";
import { formatValue } from "./format.ts";
import type { Expr } from "./parser.ts";
import { quantile, variance } from "./range-functions.ts";
import { type Env, groupLabels, QueryError, type Sample, type Value } from "./values.ts";

export function aggregate(e: Extract<Expr, { type: "aggregate" }>, t: number, env: Env): Value {
  const samples = expectVector(e.expr, e.op, t, env);
  let param = 0;
  let label = "";
  if (e.op === "count_values") {
    if (e.param?.type !== "string")
      throw new QueryError("count_values() needs a label name as a string first");
    label = e.param.value;
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(label)) throw new QueryError(`invalid label name "${label}"`);
  } else if (e.param) param = expectScalar(e.param, e.op, t, env);
  const groups = new Map<string, { labels: Labels; items: Sample[] }>();
  for (const s of samples) {
    let labels = groupLabels(s.labels, e.grouping, e.without);
    if (e.op === "count_values") labels = { ...labels, [label]: formatValue(s.value) };
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
    const push = (value: number) => out.push({ labels: g.labels, value });
    switch (e.op) {
      case "sum":
        push(v.reduce((a, b) => a + b, 0));
        break;
      case "avg":
        push(mean(v));
        break;
      case "min":
        push(v.reduce((a, b) => (b < a || Number.isNaN(a) ? b : a)));
        break;
      case "max":
        push(v.reduce((a, b) => (b > a || Number.isNaN(a) ? b : a)));
        break;
      case "count":
      case "count_values":
        push(v.length);
        break;
      case "group":
        push(1);
        break;
      case "stddev":
        push(Math.sqrt(variance(v)));
        break;
      case "stdvar":
        push(variance(v));
        break;
      case "quantile":
        push(quantile(param, v));
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

/** The mean, as Prometheus 2.x computes it (incremental, so huge values do not overflow). */
function mean(v: number[]): number {
  let m = 0;
  let n = 0;
  for (const x of v) {
    n++;
    // An infinite mean stays as it is, unless a NaN or the other infinity comes.
    if (n > 1 && (m === Infinity || m === -Infinity) && (m === x || Number.isFinite(x))) continue;
    m += x / n - m / n;
  }
  return m;
}
