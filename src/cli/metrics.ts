/**
 * `herd metrics QUERY [--range 1h --step 15s] [--time T]`: runs PromQL
 * against the server and prints the answer as a table.
 *
 *   instant: GET /prom/api/v1/query?query=&time=        ─► SERIES | VALUE
 *   range:   GET /prom/api/v1/query_range?start=&end=&step= ─► TIME | one column per series
 *            (more than 8 series: SERIES | POINTS | MIN | AVG | MAX | LAST)
 */

import { parseDuration } from "../observe/promql/parser.ts";
import { UsageError } from "./args.ts";
import { type CliContext, type CommandSpec, printJson, println, stringFlag } from "./context.ts";
import { renderTable } from "./format.ts";

type Labels = Record<string, string>;
interface PromReply<T> {
  status: string;
  data: { resultType: string; result: T };
}
type InstantResult = { metric: Labels; value: [number, string] }[] | [number, string];
type RangeResult = { metric: Labels; values: [number, string][] }[];

/** Most series a range prints as columns; more are summarized one per row. */
const MAX_COLUMNS = 8;

/** `name{a="1", b="2"}`; `{}` for no labels. */
export function seriesName(labels: Labels, omit: ReadonlySet<string> = new Set()): string {
  const name = omit.has("__name__") ? "" : (labels.__name__ ?? "");
  const rest = Object.keys(labels)
    .filter((k) => k !== "__name__" && !omit.has(k))
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`);
  if (rest.length === 0) return name || "{}";
  return `${name}{${rest.join(", ")}}`;
}

/** A number for people: integers as they are, others with up to 6 significant digits. */
export function formatNumber(s: string): string {
  const v = Number(s);
  if (!Number.isFinite(v) || Number.isInteger(v)) return s;
  return String(Number(v.toPrecision(6)));
}

/** Labels with the same value in every series say nothing in a column header: leave them out. */
function commonLabels(series: Labels[]): Set<string> {
  const common = new Set<string>();
  if (series.length < 2) return common;
  const first = series[0] as Labels;
  for (const [k, v] of Object.entries(first)) {
    if (series.every((s) => s[k] === v)) common.add(k);
  }
  return common;
}

function formatTime(sec: number, spanSec: number): string {
  const iso = new Date(sec * 1000).toISOString();
  return spanSec > 86_400 ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(11, 19);
}

/** The table for a range answer. */
export function rangeTable(result: RangeResult): string {
  if (result.length === 0) return "no data";
  if (result.length > MAX_COLUMNS) {
    const rows = result.map((s) => {
      const v = s.values.map(([, x]) => Number(x)).filter((x) => !Number.isNaN(x));
      const sum = v.reduce((a, b) => a + b, 0);
      const fmt = (x: number | undefined) => (x === undefined ? "-" : formatNumber(String(x)));
      return [
        seriesName(s.metric),
        String(s.values.length),
        fmt(v.length ? Math.min(...v) : undefined),
        fmt(v.length ? sum / v.length : undefined),
        fmt(v.length ? Math.max(...v) : undefined),
        s.values.length ? formatNumber((s.values[s.values.length - 1] as [number, string])[1]) : "-",
      ];
    });
    return renderTable(["series", "points", "min", "avg", "max", "last"], rows);
  }
  const omit = commonLabels(result.map((s) => s.metric));
  const times = [...new Set(result.flatMap((s) => s.values.map(([t]) => t)))].sort((a, b) => a - b);
  const span = times.length ? (times[times.length - 1] as number) - (times[0] as number) : 0;
  const byTime = result.map((s) => new Map(s.values.map(([t, v]) => [t, v])));
  const rows = times.map((t) => [formatTime(t, span), ...byTime.map((m) => formatNumber(m.get(t) ?? "-"))]);
  // Series names keep their case: the header goes in as a data row (renderTable capitalizes headers).
  const names = ["TIME", ...result.map((s) => seriesName(s.metric, omit))];
  const [, ...lines] = renderTable(
    names.map(() => ""),
    [names, ...rows],
  ).split("\n");
  return lines.join("\n");
}

/** The table for an instant answer. */
export function instantTable(resultType: string, result: InstantResult): string {
  if (resultType === "scalar" || resultType === "string") {
    return formatNumber((result as [number, string])[1]);
  }
  const vector = result as { metric: Labels; value: [number, string] }[];
  if (vector.length === 0) return "no data";
  return renderTable(
    ["series", "value"],
    vector.map((s) => [seriesName(s.metric), formatNumber(s.value[1])]),
  );
}

/** `--time`: RFC 3339, Unix seconds, or a duration ago (`5m`). */
function parseWhen(value: string, now: number): number {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  const ago = parseDuration(value);
  if (ago !== undefined) return (now - ago) / 1000;
  const ms = Date.parse(value);
  if (Number.isNaN(ms))
    throw new UsageError(
      `--time ${value}: give RFC 3339, Unix seconds or a duration ago such as 5m`,
      "metrics",
    );
  return ms / 1000;
}

export const metricsCommand: CommandSpec = {
  name: "metrics",
  usage: "herd metrics QUERY [--range DURATION [--step DURATION]] [--time TIME]",
  summary:
    "Run a PromQL query against herd's metrics and print the series as a table.\n" +
    "Example: herd metrics 'sum by (route) (rate(herd_api_requests_total[5m]))' --range 1h",
  flags: [
    ["--range DURATION", "a range query over the last DURATION (e.g. 1h) instead of one instant"],
    ["--step DURATION", "time between points of a range (default: range / 60, at least 15s)"],
    ["--time TIME", "evaluate at TIME (RFC 3339, Unix seconds, or a duration ago like 5m); default now"],
  ],
  options: { range: { type: "string" }, step: { type: "string" }, time: { type: "string" } },
  async run(ctx: CliContext, values, positionals) {
    const [query, ...extra] = positionals;
    if (!query) throw new UsageError("metrics needs a PromQL query, e.g. herd metrics up", "metrics");
    if (extra.length > 0)
      throw new UsageError(`unexpected argument: ${extra[0]} (quote the query)`, "metrics");
    const rangeFlag = stringFlag(values, "range");
    const stepFlag = stringFlag(values, "step");
    const timeFlag = stringFlag(values, "time");
    const end = timeFlag ? parseWhen(timeFlag, ctx.now()) : ctx.now() / 1000;
    const client = await ctx.client();
    if (!rangeFlag) {
      if (stepFlag) throw new UsageError("--step needs --range", "metrics");
      const reply = await client.get<PromReply<InstantResult>>("/prom/api/v1/query", { query, time: end });
      if (ctx.flags.json) printJson(ctx.stdout, reply.data);
      else println(ctx.stdout, instantTable(reply.data.resultType, reply.data.result));
      return 0;
    }
    const range = parseDuration(rangeFlag);
    if (!range) throw new UsageError(`--range ${rangeFlag}: give a duration such as 30m or 1h`, "metrics");
    const step = stepFlag ? parseDuration(stepFlag) : Math.max(15_000, Math.ceil(range / 60 / 1000) * 1000);
    if (!step) throw new UsageError(`--step ${stepFlag}: give a duration such as 15s`, "metrics");
    // The last point is `end` itself, so the newest data shows whatever the step (a 12 h step
    // aligned on the clock could end hours ago and, with the 5 m lookback, miss recent series).
    const stepSec = step / 1000;
    const reply = await client.get<PromReply<RangeResult>>("/prom/api/v1/query_range", {
      query,
      start: end - Math.floor(range / step) * stepSec,
      end,
      step: stepSec,
    });
    if (ctx.flags.json) printJson(ctx.stdout, reply.data);
    else println(ctx.stdout, rangeTable(reply.data.result));
    return 0;
  },
};
