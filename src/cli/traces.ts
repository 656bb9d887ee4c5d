/**
 * `herd traces`, `herd trace ID`, `herd map` and `herd top`: reading the
 * spans herd keeps. Pure formatters (reply in, text out) plus the commands.
 *
 *   herd traces ─► GET /traces?service=&app=&route=&status=&minDuration=&since= ─► table
 *   herd trace  ─► GET /traces/:id                                           ─► indented tree + timing bars
 *   herd map    ─► GET /traces/map?window=                                   ─► "a → b  12.0/s  err 0.5%  p50 3ms  p99 40ms"
 *   herd top    ─► GET /traces/top?by=&window=&limit= (again every --interval with --watch)
 */

import { setTimeout as sleep } from "node:timers/promises";
import type {
  DependencyMap,
  SpanNode,
  TopBy,
  TopEntry,
  TopN,
  TraceTree,
} from "../observe/traces/analysis.ts";
import { formatMicros, parseDurationMicros } from "../observe/traces/span.ts";
import type { TraceSummary } from "../observe/traces/span-store.ts";
import { ApiError, type Query } from "./api-client.ts";
import { parseCount, UsageError } from "./args.ts";
import { type CommandSpec, type FlagValues, printJson, println, stringFlag } from "./context.ts";
import { renderTable } from "./format.ts";

/** Checks a duration flag (`100ms`, `15m`) before any call; returns it as given. */
function durationFlag(values: FlagValues, name: string, command: string): string | undefined {
  const v = stringFlag(values, name);
  if (v !== undefined && parseDurationMicros(v) === null) {
    throw new UsageError(`--${name} ${v}: expected a duration like 250ms, 2s, 15m or 1h`, command);
  }
  return v;
}

const noArgs = (positionals: string[], command: string) => {
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, command);
};

const percent = (rate: number) => `${Number((rate * 100).toFixed(1))}%`;
const perSecond = (rate: number) =>
  rate > 0 && rate < 0.01
    ? "<0.01/s"
    : `${rate >= 100 ? Math.round(rate) : rate >= 1 || rate === 0 ? rate.toFixed(1) : rate.toFixed(2)}/s`;

/** `herd traces`: one row per trace, newest first. */
export function tracesTable(items: readonly TraceSummary[], nowMs: number): string {
  const rows = items.map((t) => [
    t.traceId,
    `${t.rootService}: ${t.rootName}`,
    formatMicros(t.duration),
    String(t.spans),
    t.errors > 0 ? String(t.errors) : "-",
    t.services.join(","),
    `${formatMicros(Math.max(0, nowMs * 1000 - t.start))} ago`,
  ]);
  return renderTable(["trace", "root", "duration", "spans", "errors", "services", "started"], rows);
}

/**
 * `herd trace ID`: one line per span, indented under its parent, with a bar
 * showing where in the trace it ran:
 *
 *   gateway proxy          |██████████████████████████████| 42ms
 *     web GET /users/:id   |  ████████████████████        | 30ms
 */
export function traceText(tree: TraceTree, barWidth = 30): string {
  const lines: { label: string; span: SpanNode }[] = [];
  const walk = (n: SpanNode) => {
    // A span that names whom it called (a client span, the gateway's span of a proxied request) says so.
    const peer = n.attributes["peer.service"];
    const to = typeof peer === "string" && peer !== "" ? ` → ${peer}` : "";
    lines.push({ label: `${"  ".repeat(n.depth)}${n.service} ${n.name}${to}`, span: n });
    for (const c of n.children) walk(c);
  };
  for (const r of tree.roots) walk(r);
  const width = Math.min(60, Math.max(...lines.map((l) => l.label.length), 4));
  const total = Math.max(1, tree.duration);
  const header = `trace ${tree.traceId}  ${formatMicros(tree.duration)}  ${tree.spans} span${tree.spans === 1 ? "" : "s"}  ${tree.services.length} service${tree.services.length === 1 ? "" : "s"}${tree.errors ? `  ${tree.errors} error${tree.errors === 1 ? "" : "s"}` : ""}`;
  const body = lines.map(({ label, span }) => {
    const from = Math.min(barWidth - 1, Math.floor((span.offset / total) * barWidth));
    const length = Math.max(1, Math.min(barWidth - from, Math.round((span.duration / total) * barWidth)));
    const bar = `${" ".repeat(from)}${"█".repeat(length)}${" ".repeat(barWidth - from - length)}`;
    const shown = label.length > width ? `${label.slice(0, width - 1)}…` : label.padEnd(width);
    const status =
      span.status === "error" ? `  ERROR${span.statusMessage ? ` ${span.statusMessage}` : ""}` : "";
    const code = span.statusCode !== null ? `  ${span.statusCode}` : "";
    return `${shown}  |${bar}| ${formatMicros(span.duration)}${code}${status}`.trimEnd();
  });
  return [header, ...body].join("\n");
}

/** `herd map`: one line per edge, cycles marked, then the cycles themselves. */
/** A note when the server read a sample of a busy window. */
const sampledNote = (every: number | undefined) =>
  every !== undefined && every > 1 ? `(estimated from 1 in ${every} spans of a busy window)` : "";

export function mapText(map: DependencyMap & { sampledEvery?: number }, window: string): string {
  if (map.edges.length === 0) {
    const services = map.nodes.map((n) => n.service).join(", ");
    return `no calls between services in the last ${window}${services ? ` (services seen: ${services})` : ""}`;
  }
  const rows = map.edges.map((e) => [
    `${e.from} → ${e.to}`,
    perSecond(e.rate),
    `err ${percent(e.errorRate)}`,
    `p50 ${formatMicros(e.p50)}`,
    `p99 ${formatMicros(e.p99)}`,
    e.inCycle ? "↺ cycle" : "",
  ]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) =>
    r
      .map((c, i) => (i === 1 ? c.padStart(widths[i]) : i === r.length - 1 ? c : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd(),
  );
  for (const c of map.cycles) lines.push(`cycle: ${[...c, c[0]].join(" → ")}`);
  const note = sampledNote(map.sampledEvery);
  if (note) lines.push(note);
  return lines.join("\n");
}

function topRows(entries: readonly TopEntry[], withRoute: boolean): string[][] {
  return entries.map((e) => [
    ...(withRoute ? [e.service, e.route ?? "-"] : [e.service]),
    String(e.calls),
    perSecond(e.rate),
    percent(e.errorRate),
    formatMicros(e.p50),
    formatMicros(e.p99),
    formatMicros(e.totalTime),
  ]);
}

/** `herd top`: services, then routes, ordered by `top.by`. */
export function topText(top: TopN & { sampledEvery?: number }, window: string): string {
  const by = { calls: "calls", latency: "p99 latency", time: "total time spent" }[top.by];
  const cols = ["calls", "rate", "err", "p50", "p99", "time"];
  return [
    `top by ${by}, last ${window} ${sampledNote(top.sampledEvery)}`.trimEnd(),
    "",
    top.services.length ? renderTable(["service", ...cols], topRows(top.services, false)) : "no requests",
    "",
    top.routes.length ? renderTable(["service", "route", ...cols], topRows(top.routes, true)) : "",
  ]
    .join("\n")
    .trimEnd();
}

/** `herd traces [--app A] [--service APP/SVC] [--route R] [--min-duration 100ms] [--errors] [--since 15m] [--limit N]`. */
export const tracesCommand: CommandSpec = {
  name: "traces",
  usage:
    "herd traces [--app A] [--service APP/SVC] [--route R] [--min-duration 100ms] [--errors] [--since 15m] [--limit N]",
  summary:
    "Search traces: those with a span matching every filter, newest first. Show one with `herd trace ID`.\n" +
    "--app and --service also find the gateway's spans of requests routed there (apps that send no spans).",
  flags: [
    ["--app A", "a span of this app, or of a request the gateway routed to it"],
    [
      "--service S",
      "a span of this service (app/service, or with --app the service's name), or of a request sent to it",
    ],
    ["--route R", "a span with this http.route or name"],
    ["--min-duration D", "a span at least this long (250ms, 2s)"],
    ["--errors", "a span that failed"],
    ["--since D", "how far back (default 1h)"],
    ["--limit N", "at most N traces (default 20)"],
  ],
  options: {
    app: { type: "string" },
    service: { type: "string" },
    route: { type: "string" },
    "min-duration": { type: "string" },
    errors: { type: "boolean" },
    since: { type: "string" },
    limit: { type: "string" },
  },
  async run(ctx, values, positionals) {
    noArgs(positionals, "traces");
    const limit = stringFlag(values, "limit");
    const app = stringFlag(values, "app");
    const service = stringFlag(values, "service");
    const query: Query = {
      app,
      // `--app shop --service web` is shop/web, as in herd logs.
      service:
        app !== undefined && service !== undefined && !service.includes("/") ? `${app}/${service}` : service,
      route: stringFlag(values, "route"),
      minDuration: durationFlag(values, "min-duration", "traces"),
      status: values.errors ? "error" : undefined,
      since: durationFlag(values, "since", "traces"),
      limit: limit === undefined ? undefined : parseCount(limit, "limit", "traces", 1),
    };
    const reply = await (await ctx.client()).get<{ items: TraceSummary[] }>("/traces", query);
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else if (reply.items.length === 0) println(ctx.stdout, "no traces match");
    else println(ctx.stdout, tracesTable(reply.items, ctx.now()));
    return 0;
  },
};

/** `herd trace ID`. */
export const traceCommand: CommandSpec = {
  name: "trace",
  usage: "herd trace ID",
  summary: "Show one trace as a tree of spans, each with a bar for when it ran and its duration.",
  options: {},
  async run(ctx, _values, positionals) {
    const [id, ...extra] = positionals;
    if (!id) throw new UsageError("trace needs a trace id (see `herd traces`)", "trace");
    noArgs(extra, "trace");
    if (!/^(?:[0-9a-fA-F]{16}|[0-9a-fA-F]{32})$/.test(id)) {
      throw new UsageError(`${id}: a trace id is 16 or 32 hex characters`, "trace");
    }
    const tree = await (await ctx.client()).get<TraceTree>(`/traces/${id}`);
    if (ctx.flags.json) printJson(ctx.stdout, tree);
    else println(ctx.stdout, traceText(tree));
    return 0;
  },
};

/** `herd map [--window 15m]`. */
export const mapCommand: CommandSpec = {
  name: "map",
  usage: "herd map [--window 15m]",
  summary:
    "The service dependency map from spans: who calls whom, with call rate, error rate and p50/p99;\n" +
    "calls that form a cycle are marked.",
  flags: [["--window D", "how far back (default 15m)"]],
  options: { window: { type: "string" } },
  async run(ctx, values, positionals) {
    noArgs(positionals, "map");
    const window = durationFlag(values, "window", "map") ?? "15m";
    const map = await (await ctx.client()).get<DependencyMap>("/traces/map", { window });
    if (ctx.flags.json) printJson(ctx.stdout, map);
    else println(ctx.stdout, mapText(map, window));
    return 0;
  },
};

/** `herd top [--by calls|latency|time] [--window 5m] [--limit N] [--watch [--interval 2s]]`. */
export const topCommand: CommandSpec = {
  name: "top",
  usage: "herd top [--by calls|latency|time] [--window 5m] [--limit N] [--watch] [--interval 2s]",
  summary:
    "Top services and routes by calls, by p99 latency, or by total time spent (hot spots).\n" +
    "With --watch, redraws every --interval until Ctrl-C.",
  flags: [
    ["--by K", "calls (default), latency or time"],
    ["--window D", "how far back (default 5m)"],
    ["--limit N", "rows per table (default 10)"],
    ["-w, --watch", "keep refreshing"],
    ["--interval D", "refresh period with --watch (default 2s)"],
  ],
  options: {
    by: { type: "string" },
    window: { type: "string" },
    limit: { type: "string" },
    watch: { type: "boolean", short: "w" },
    interval: { type: "string" },
  },
  async run(ctx, values, positionals) {
    noArgs(positionals, "top");
    const by = stringFlag(values, "by") ?? "calls";
    if (by !== "calls" && by !== "latency" && by !== "time") {
      throw new UsageError(`--by ${by}: expected calls, latency or time`, "top");
    }
    const window = durationFlag(values, "window", "top") ?? "5m";
    const limitFlag = stringFlag(values, "limit");
    const limit = limitFlag === undefined ? undefined : parseCount(limitFlag, "limit", "top", 1);
    const intervalMs = (parseDurationMicros(durationFlag(values, "interval", "top") ?? "2s") ?? 2e6) / 1000;
    const client = await ctx.client();
    const query: Query = { by: by as TopBy, window, limit };
    const show = async () => {
      const top = await client.get<TopN>("/traces/top", query);
      if (ctx.flags.json) {
        // One object per line when watching, so the output is NDJSON.
        ctx.stdout.write(values.watch ? `${JSON.stringify(top)}\n` : `${JSON.stringify(top, null, 2)}\n`);
        return;
      }
      // A terminal is redrawn in place; a pipe gets one block per refresh.
      if (values.watch && ctx.stdout.isTTY) ctx.stdout.write("\x1b[H\x1b[2J");
      println(ctx.stdout, topText(top, window));
      if (values.watch && !ctx.stdout.isTTY) println(ctx.stdout);
    };
    await show();
    if (!values.watch) return 0;
    const signal = ctx.interrupt();
    while (!signal.aborted) {
      try {
        await sleep(Math.max(200, intervalMs), undefined, { signal });
      } catch {
        break;
      }
      // A server restart should not end a watch: say so and try again at the next tick.
      await show().catch((err: unknown) => {
        if (!(err instanceof ApiError) || err.status !== 0) throw err;
        ctx.stderr.write(`herd: ${err.message}; retrying\n`);
      });
    }
    return 0;
  },
};
