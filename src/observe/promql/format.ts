/**
 * Query answers in the Prometheus HTTP API's JSON (the `data` member):
 * written as text, by hand for matrices (range answers are large: no tuple
 * per point), so a query worker can hand back one string.
 */

import type { RangeSeries, Value } from "./engine.ts";

/**
 * How Prometheus writes a float in JSON (Go's strconv.FormatFloat(v, 'f', -1, 64)):
 * the shortest digits that read back the same, never an exponent; NaN and ±Inf its way.
 */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  if (v === 0) return Object.is(v, -0) ? "-0" : "0";
  const s = String(v);
  if (!s.includes("e")) return s;
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (!m) return s;
  const [, sign, first, rest = "", e] = m as unknown as [string, string, string, string | undefined, string];
  const digits = first + rest;
  const exp = Number(e);
  // JavaScript uses an exponent from 1e21 and below 1e-6: digits never run past the point there.
  return exp >= 0 ? sign + digits.padEnd(exp + 1, "0") : `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
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
      values += `${i === 0 ? "" : ","}${prefix}${formatValue(v)}"]`;
    }
    parts.push(`{"metric":${JSON.stringify(s.labels)},"values":[${values}]}`);
  }
  return `{"resultType":"matrix","result":[${parts.join(",")}]}`;
}
