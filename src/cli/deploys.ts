/**
 * `herd deploys`: an app's deploy history and one deploy's log.
 *
 *   herd deploys [--app A] [--limit N]   ─► GET /apps/A/deploys          ─► id, state, release, who, when, duration, error
 *   herd deploys show ID [--app A]       ─► GET /apps/A/deploys/ID + /log ─► the deploy, then its build output and steps
 */

import { formatDeployEntry } from "../common/deploy-log-format.ts";
import type { Deploy } from "../model/objects.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { parseCount, UsageError } from "./args.ts";
import { type CommandSpec, printJson, println, stringFlag } from "./context.ts";
import { formatAge, renderTable } from "./format.ts";
import type { DeployLogEntry } from "./types.ts";

/** GET /apps/:app/deploys (api/routes/deploys.ts). */
interface DeployList {
  items: (Deploy & { durationMs?: number; log: boolean })[];
  total: number;
  logsKept: number;
}

/** `herd deploys [--app A] [--limit N]`, `herd deploys show ID [--app A]`. */
export const deploysCommand: CommandSpec = {
  name: "deploys",
  usage: "herd deploys [--app NAME] [--limit N]\nherd deploys show ID [--app NAME]",
  summary:
    "An app's deploys and rollbacks, newest first: state, release, who started it, when, how long\n" +
    "it took and why it failed. `show ID` prints one deploy's build output and rollout steps (kept\n" +
    "for each app's last deploys).",
  flags: [APP_FLAG_HELP, ["--limit N", "at most N deploys (default 50)"]],
  options: { app: { type: "string" }, limit: { type: "string" } },
  async run(ctx, values, positionals) {
    const app = await resolveApp(ctx, stringFlag(values, "app"), "deploys");
    const client = await ctx.client();
    const base = `/apps/${encodeURIComponent(app)}/deploys`;
    if (positionals[0] === "show") {
      if (positionals.length !== 2)
        throw new UsageError("show takes one deploy id: herd deploys show ID", "deploys");
      if (values.limit !== undefined) throw new UsageError("--limit is not for show", "deploys");
      const id = positionals[1];
      const deploy = await client.get<Deploy>(`${base}/${encodeURIComponent(id)}`);
      const entries: DeployLogEntry[] = [];
      for await (const e of client.stream<DeployLogEntry>(`${base}/${encodeURIComponent(id)}/log`)) {
        if (ctx.flags.json) entries.push(e);
        else println(ctx.stdout, formatDeployEntry(e));
      }
      if (ctx.flags.json) printJson(ctx.stdout, { deploy, log: entries });
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "deploys");
    const limitFlag = stringFlag(values, "limit");
    const limit = limitFlag === undefined ? undefined : parseCount(limitFlag, "limit", "deploys", 1);
    const reply = await client.get<DeployList>(base, { limit });
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else if (reply.items.length === 0) println(ctx.stdout, `${app} has no deploys yet.`);
    else println(ctx.stdout, deploysTable(reply.items, ctx.now()));
    return 0;
  },
};

/** One row per deploy; a failed one's reason (first line) last. */
export function deploysTable(items: DeployList["items"], now: number): string {
  const rows = items.map((d) => [
    d.id,
    d.rollback ? `${d.state} (rollback)` : d.state,
    d.release === undefined ? "-" : `v${d.release}`,
    d.createdBy ?? "-",
    formatAge(d.createdAt, now),
    d.durationMs === undefined ? "-" : formatSeconds(d.durationMs),
    d.state === "failed" ? (d.message.split("\n")[0] ?? "") : "",
  ]);
  return renderTable(["id", "state", "release", "by", "started", "took", "error"], rows);
}

/** 850 ms → "0.9s", 75 s → "1m15s". */
function formatSeconds(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}
