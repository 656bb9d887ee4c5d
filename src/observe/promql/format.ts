/**
 * Query answers in the Prometheus HTTP API's JSON (the `data` member):
 * written as text, by hand for matrices (range answers are large: no tuple
 * per point), so a query worker can hand back one string.
 */

import type { RangeSeries, Value } from "./engine.ts";

/** How Prometheus writes a float in JSON: a string, with NaN and ±Inf spelled its way. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** An instant query's answer at `t` (ms). */
export function valueJson(v: Value, t: number): string {
  const sec = t / 1000;
  switch (v.type) {
    case "scalar":
      return JSON.stringify({ resultType: "scalar", result: [sec, formatValue(v.value)] });
    case "string":
      return JSON.stringify({ resultType: "string", result: [sec, v.value] });
    case "vector":
      return JSON.stringify({
        resultType: "vector",
        result: v.samples.map((s) => ({ metric: s.labels, value: [sec, formatValue(s.value)] })),
      });
    case "matrix":
      return matrixJson(v.series);
  }
}

/** `{"resultType":"matrix","result":[{"metric":{…},"values":[[sec,"v"],…]},…]}` */
export function matrixJson(series: RangeSeries[]): string {
  const parts: string[] = [];
  // Every series steps through the same times: write each `[sec,"` once.
  const prefixes = new Map<number, string>();
  for (const s of series) {
    let values = "";
    for (let i = 0; i < s.ts.length; i++) {
      const t = s.ts[i] as number;
      let prefix = prefixes.get(t);
      if (prefix === undefined) {
        prefix = `[${t / 1000},"`;
        prefixes.set(t, prefix);
      }
      const v = s.values[i] as number;
      values += `${i === 0 ? "" : ","}${prefix}${Number.isFinite(v) ? v : formatValue(v)}"]`;
    }
    parts.push(`{"metric":${JSON.stringify(s.labels)},"values":[${values}]}`);
  }
  return `{"resultType":"matrix","result":[${parts.join(",")}]}`;
}
