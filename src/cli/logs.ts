/**
 * `herd logs`: print an app's recent log lines and events (or the tenant's
 * whole stream with --all), or follow them. A followed stream that drops is
 * reopened with `after=<seq of the last entry shown>`, so nothing is missed
 * and nothing repeats.
 *
 *   GET /apps/:app/logs?tail=&service=&instance=&level=&text=&stream=&since=[&follow=true&after=seq]
 *     ─► NDJSON LogEntry ─► "TIME web.abc | line  trace=ID"
 */

import { setTimeout as sleep } from "node:timers/promises";
import type { App, Instance, Service } from "../model/objects.ts";
import { parseDurationMicros } from "../observe/traces/span.ts";
import { type ApiClient, ApiError, type Query } from "./api-client.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { parseCount, UsageError } from "./args.ts";
import { type CliContext, type CommandSpec, println, stringFlag } from "./context.ts";
import { formatLogLine } from "./format.ts";
import type { Items, LogEntry } from "./types.ts";

/** Wait between attempts to reopen a dropped log stream. */
const RECONNECT_DELAY_MS = 1000;

/**
 * Remembers the `seq` of the last entry shown, so a reopened stream is asked
 * for exactly what came after it and nothing repeats.
 */
export class LogCursor {
  after: number | undefined;

  /** Whether the entry is a new log line; when it is, it becomes the cursor's position. Pings are not entries. */
  accept(entry: Partial<LogEntry>): entry is LogEntry {
    if (typeof entry.line !== "string" || typeof entry.seq !== "number") return false;
    if (this.after !== undefined && entry.seq <= this.after) return false;
    this.after = entry.seq;
    return true;
  }
}

/**
 * Follows an app's logs until `signal` aborts (returns 0), reconnecting
 * after a dropped connection. API errors (unknown app, bad token) end it.
 */
export async function followLogs(
  ctx: CliContext,
  client: ApiClient,
  path: string,
  query: Query,
  signal: AbortSignal,
  retryDelayMs = RECONNECT_DELAY_MS,
  withApp = false,
): Promise<number> {
  const cursor = new LogCursor();
  let lost = false;
  while (!signal.aborted) {
    const q: Query =
      cursor.after === undefined
        ? { ...query, follow: true }
        : { ...query, tail: undefined, since: undefined, follow: true, after: cursor.after };
    try {
      for await (const entry of client.stream<Partial<LogEntry>>(path, q, signal)) {
        if (lost) {
          ctx.stderr.write("herd: reconnected\n");
          lost = false;
        }
        if (cursor.accept(entry)) printEntry(ctx, entry, withApp);
      }
    } catch (err) {
      if (signal.aborted) break;
      if (err instanceof ApiError && err.status > 0) throw err;
    }
    if (signal.aborted) break;
    if (!lost) ctx.stderr.write("herd: lost the connection to the log stream; reconnecting…\n");
    lost = true;
    try {
      await sleep(retryDelayMs, undefined, { signal });
    } catch {
      break;
    }
  }
  return 0;
}

/**
 * A page in the order things happened. Entries come in the order they were
 * stored, and an event can be stored after lines and events that followed
 * it: an instance's start is recorded when its node's heartbeat tells, with
 * the time it happened. Ties keep the stored order.
 */
export function inTimeOrder(items: LogEntry[]): LogEntry[] {
  // Array sort is stable; every time is ISO in UTC, so text order is time order.
  return [...items].sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
}

function printEntry(ctx: CliContext, entry: LogEntry, withApp = false): void {
  if (ctx.flags.json) ctx.stdout.write(`${JSON.stringify(entry)}\n`);
  else println(ctx.stdout, formatLogLine(entry, withApp));
}

const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];
const STREAMS = ["stdout", "stderr", "event"];

/** `--since 10m` (a duration back from now) or an ISO time; the ISO time the API takes. */
export function sinceTime(value: string, now = Date.now(), command = "logs"): string {
  const us = parseDurationMicros(value);
  if (us !== null && /[a-zµ]$/.test(value.trim())) return new Date(now - us / 1000).toISOString();
  const t = Date.parse(value);
  if (/^\d{4}-\d\d-\d\d/.test(value) && !Number.isNaN(t)) return new Date(t).toISOString();
  throw new UsageError(
    `--since must be a duration like 10m or 2h, or a time like 2026-01-01T12:00:00Z, got ${value}`,
    command,
  );
}

/** The services and instances there are: of one app, or of every app of the tenant (`app` undefined). */
async function whatExists(
  client: ApiClient,
  app: string | undefined,
): Promise<{ services: string[]; instances: Instance[] }> {
  const apps = app === undefined ? (await client.get<Items<App>>("/apps")).items.map((a) => a.name) : [app];
  const services: string[] = [];
  const instances: Instance[] = [];
  for (const name of apps) {
    const appPath = `/apps/${encodeURIComponent(name)}`;
    const [detail, running] = await Promise.all([
      client.get<{ services: Service[] }>(appPath),
      client.get<Items<Instance>>(`${appPath}/instances`),
    ]);
    services.push(...detail.services.map((s) => (app === undefined ? `${name}/${s.name}` : s.name)));
    instances.push(...running.items);
  }
  return { services, instances };
}

/** `a, b, c`, or the first ten and how many more. */
function listed(names: string[], more: string): string {
  if (names.length === 0) return "none";
  if (names.length <= 10) return names.join(", ");
  return `${names.slice(0, 10).join(", ")} and ${names.length - 10} more (${more})`;
}

/**
 * --service and --instance must name something there is: a service or an
 * instance of the app (of any app with --all), or one that is gone but left
 * lines in the log. Else an error naming what there is, instead of an empty
 * answer (or a follow that never prints). `web.hello-web-x1` (as log lines
 * show an instance) is taken for `hello-web-x1`.
 */
export async function checkLogFilters(
  client: ApiClient,
  app: string | undefined,
  path: string,
  filters: { service?: string; instance?: string },
): Promise<{ service?: string; instance?: string }> {
  if (filters.service === undefined && filters.instance === undefined) return filters;
  let there: Awaited<ReturnType<typeof whatExists>>;
  try {
    there = await whatExists(client, app);
  } catch (err) {
    // A token that may read logs but not apps: the server's answer is all there is to go by.
    if (err instanceof ApiError && err.status === 403) return filters;
    throw err;
  }
  const out = { ...filters };
  const ids = there.instances.map((i) => i.id);
  if (out.instance !== undefined && !ids.includes(out.instance)) {
    const dot = out.instance.indexOf(".");
    if (dot > 0 && ids.includes(out.instance.slice(dot + 1))) out.instance = out.instance.slice(dot + 1);
  }
  const hasLines = async (q: Query) =>
    (await client.get<Items<LogEntry>>(path, { ...q, tail: 1 })).items.length > 0;
  const scope = app === undefined ? "any app" : `app ${app}`;
  const serviceNames = app === undefined ? there.services.map((s) => s.split("/")[1]) : there.services;
  if (
    out.service !== undefined &&
    !serviceNames.includes(out.service) &&
    !(await hasLines({ service: out.service }))
  ) {
    throw new Error(
      `no service ${out.service} in ${scope} (nor log lines from one); the services: ${listed(there.services, "herd apps")}`,
    );
  }
  if (
    out.instance !== undefined &&
    !ids.includes(out.instance) &&
    !(await hasLines({ instance: out.instance }))
  ) {
    const shown = there.instances
      .filter((i) => out.service === undefined || i.service === out.service)
      .map((i) => `${i.id} (${app === undefined ? `${i.app}/` : ""}${i.service})`);
    const of = out.service === undefined ? "" : ` of ${out.service}`;
    throw new Error(
      `no instance ${out.instance} in ${scope} (nor log lines from one); the instances${of}: ${listed(shown, "herd ps")}`,
    );
  }
  return out;
}

/** `herd logs [--app NAME | --all] [--follow] [filters] [--tail N]`. */
export const logsCommand: CommandSpec = {
  name: "logs",
  usage:
    "herd logs [--app NAME | --all] [--follow|-f] [--service S] [--instance I] [--level L] [--grep TEXT] [--stream S] [--since T] [--tail|-n N]",
  summary:
    "Print an app's recent log lines and events as `TIME SERVICE.INSTANCE | line`; with --follow, keep printing new ones. A line's trace id shows as `trace=ID`: `herd trace ID` opens the trace.",
  flags: [
    APP_FLAG_HELP,
    ["--all", "the tenant's whole stream: every app (and, for a platform admin, node events: node lost, …)"],
    ["-f, --follow", "keep the stream open, reconnecting if it drops; Ctrl-C stops"],
    ["--service S", "only this service"],
    ["--instance I", "only this instance"],
    [
      "--level L",
      "this level and above: trace, debug, info, warn, error, fatal (lines without a level are left out)",
    ],
    ["--grep TEXT", "only lines containing TEXT, in any case"],
    ["--stream S", "only stdout, stderr or event"],
    ["--since T", "from a time ago (10m, 2h, 1d) or an ISO time"],
    ["-n, --tail N", "start with the last N lines (server default 100)"],
  ],
  options: {
    app: { type: "string" },
    all: { type: "boolean" },
    follow: { type: "boolean", short: "f" },
    service: { type: "string" },
    instance: { type: "string" },
    level: { type: "string" },
    grep: { type: "string" },
    stream: { type: "string" },
    since: { type: "string" },
    tail: { type: "string", short: "n" },
  },
  async run(ctx, values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "logs");
    const tailFlag = stringFlag(values, "tail");
    const tail = tailFlag === undefined ? undefined : parseCount(tailFlag, "tail", "logs");
    const level = stringFlag(values, "level")?.toLowerCase();
    if (level !== undefined && !LEVELS.includes(level))
      throw new UsageError(`--level must be one of ${LEVELS.join(", ")}, got ${level}`, "logs");
    const stream = stringFlag(values, "stream");
    if (stream !== undefined && !STREAMS.includes(stream))
      throw new UsageError(`--stream must be one of ${STREAMS.join(", ")}, got ${stream}`, "logs");
    const sinceFlag = stringFlag(values, "since");
    const all = values.all === true;
    if (all && stringFlag(values, "app")) throw new UsageError("--all and --app do not go together", "logs");
    const app = all ? undefined : await resolveApp(ctx, stringFlag(values, "app"), "logs");
    const client = await ctx.client();
    const path = app === undefined ? "/logs" : `/apps/${encodeURIComponent(app)}/logs`;
    const { service, instance } = await checkLogFilters(client, app, path, {
      service: stringFlag(values, "service"),
      instance: stringFlag(values, "instance"),
    });
    const query: Query = {
      service,
      instance,
      level,
      text: stringFlag(values, "grep"),
      stream,
      since: sinceFlag === undefined ? undefined : sinceTime(sinceFlag),
      tail,
    };
    if (values.follow) return followLogs(ctx, client, path, query, ctx.interrupt(), RECONNECT_DELAY_MS, all);
    const { items } = await client.get<Items<LogEntry>>(path, query);
    for (const entry of inTimeOrder(items)) printEntry(ctx, entry, all);
    return 0;
  },
};
