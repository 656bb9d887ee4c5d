/**
 * `herd logs`: print an app's recent log lines, or follow them. A followed
 * stream that drops is reopened with `after=<seq of the last line shown>`,
 * so nothing is missed and nothing repeats.
 *
 *   GET /apps/:app/logs?tail=&service=&instance=[&follow=true&after=seq] ─► NDJSON LogEntry ─► "TIME web.abc | line"
 */

import { setTimeout as sleep } from "node:timers/promises";
import { type ApiClient, ApiError, type Query } from "./api-client.ts";
import { resolveApp } from "./app-name.ts";
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
): Promise<number> {
  const cursor = new LogCursor();
  let lost = false;
  while (!signal.aborted) {
    const q: Query =
      cursor.after === undefined
        ? { ...query, follow: true }
        : { ...query, tail: undefined, follow: true, after: cursor.after };
    try {
      for await (const entry of client.stream<Partial<LogEntry>>(path, q, signal)) {
        if (lost) {
          ctx.stderr.write("herd: reconnected\n");
          lost = false;
        }
        if (cursor.accept(entry)) printEntry(ctx, entry);
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

function printEntry(ctx: CliContext, entry: LogEntry): void {
  if (ctx.flags.json) ctx.stdout.write(`${JSON.stringify(entry)}\n`);
  else println(ctx.stdout, formatLogLine(entry));
}

/** `herd logs [--app NAME] [--follow] [--service S] [--instance I] [--tail N]`. */
export const logsCommand: CommandSpec = {
  name: "logs",
  usage: "herd logs [--app NAME] [--follow|-f] [--service S] [--instance I] [--tail N]",
  summary:
    "Print an app's recent log lines as `TIME SERVICE.INSTANCE | line`; with --follow, keep printing new ones.",
  flags: [
    ["--app NAME", "the app (default: `app:` in ./herd.yaml)"],
    ["-f, --follow", "keep the stream open, reconnecting if it drops; Ctrl-C stops"],
    ["--service S", "only this service"],
    ["--instance I", "only this instance"],
    ["--tail N", "start with the last N lines (server default 100)"],
  ],
  options: {
    app: { type: "string" },
    follow: { type: "boolean", short: "f" },
    service: { type: "string" },
    instance: { type: "string" },
    tail: { type: "string" },
  },
  async run(ctx, values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "logs");
    const tailFlag = stringFlag(values, "tail");
    const tail = tailFlag === undefined ? undefined : parseCount(tailFlag, "tail", "logs");
    const app = await resolveApp(ctx, stringFlag(values, "app"), "logs");
    const client = await ctx.client();
    const path = `/apps/${encodeURIComponent(app)}/logs`;
    const query: Query = {
      service: stringFlag(values, "service"),
      instance: stringFlag(values, "instance"),
      tail,
    };
    if (values.follow) return followLogs(ctx, client, path, query, ctx.interrupt());
    const { items } = await client.get<Items<LogEntry>>(path, query);
    for (const entry of items) printEntry(ctx, entry);
    return 0;
  },
};
