/**
 * `herd jobs`: an app's scheduled jobs and the history of its runs.
 *
 *   herd jobs [list] --app A            ─► GET /apps/A/jobs: schedule, policy, next time, last run
 *   herd jobs runs --app A [--job J]    ─► GET /apps/A/runs: state, exit code, when, how long
 *   herd jobs logs --app A RUN|--job J  ─► GET /apps/A/logs?instance=RUN: the run's output (the job's latest run)
 *   herd jobs stop --app A RUN          ─► POST /apps/A/runs/RUN/stop
 */

import type { JobView, Run } from "../model/job.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { parseCount, UsageError } from "./args.ts";
import { type CommandSpec, printJson, println, stringFlag } from "./context.ts";
import { formatAge, renderTable } from "./format.ts";
import type { Items, LogEntry } from "./types.ts";

export const jobsCommand: CommandSpec = {
  name: "jobs",
  usage:
    "herd jobs [list] [--app A]\nherd jobs runs [--app A] [--job J] [--limit N]\nherd jobs logs [--app A] (RUN | --job J)\nherd jobs stop [--app A] RUN",
  summary:
    "Scheduled jobs (herd.yaml `jobs:`) and runs: one-off (`herd run`), release phases and\n" +
    "scheduled ones, with their state, exit code and output.",
  flags: [
    APP_FLAG_HELP,
    ["--job J", "runs: only this job's; logs: its latest run that ended"],
    ["--limit N", "runs: at most N (default 20)"],
  ],
  options: { app: { type: "string" }, job: { type: "string" }, limit: { type: "string" } },
  async run(ctx, values, positionals) {
    const [action = "list", ...rest] = positionals;
    const app = await resolveApp(ctx, stringFlag(values, "app"), "jobs");
    const client = await ctx.client();
    const base = `/apps/${encodeURIComponent(app)}`;
    const job = stringFlag(values, "job");
    const now = ctx.now();
    if (action === "list") {
      if (rest.length > 0) throw new UsageError(`unexpected argument: ${rest[0]}`, "jobs");
      const { items } = await client.get<Items<JobView>>(`${base}/jobs`);
      if (ctx.flags.json) {
        printJson(ctx.stdout, { items });
        return 0;
      }
      if (items.length === 0) {
        println(ctx.stdout, `${app} has no scheduled jobs (herd.yaml jobs:)`);
        return 0;
      }
      println(
        ctx.stdout,
        renderTable(
          ["JOB", "SERVICE", "SCHEDULE", "CONCURRENCY", "NEXT", "LAST"],
          items.map((j) => [
            j.name,
            j.service,
            j.schedule,
            j.concurrency,
            j.next ?? "-",
            j.last
              ? `${j.last.state}${exitText(j.last.exitCode)} ${formatAge(j.last.finishedAt ?? j.last.startedAt, now)}`
              : "-",
          ]),
        ),
      );
      return 0;
    }
    if (action === "runs") {
      if (rest.length > 0) throw new UsageError(`unexpected argument: ${rest[0]}`, "jobs");
      const limit = values.limit === undefined ? 20 : parseCount(String(values.limit), "limit", "jobs", 1);
      const { items } = await client.get<Items<Run>>(`${base}/runs`, { job, limit });
      if (ctx.flags.json) {
        printJson(ctx.stdout, { items });
        return 0;
      }
      if (items.length === 0) {
        println(ctx.stdout, `no runs of ${job ? `job ${job}` : app} yet`);
        return 0;
      }
      println(
        ctx.stdout,
        renderTable(
          ["RUN", "WHAT", "STATE", "EXIT", "STARTED", "TOOK", "MESSAGE"],
          items.map((r) => [
            r.id,
            r.job ? `job ${r.job}` : r.kind,
            r.state,
            r.exitCode === undefined || r.exitCode === null ? "-" : String(r.exitCode),
            formatAge(r.startedAt ?? r.createdAt, now),
            r.startedAt && r.finishedAt
              ? `${((Date.parse(r.finishedAt) - Date.parse(r.startedAt)) / 1000).toFixed(1)}s`
              : "-",
            r.message,
          ]),
        ),
      );
      return 0;
    }
    if (action === "logs") {
      let id = rest[0];
      if (rest.length > 1) throw new UsageError(`unexpected argument: ${rest[1]}`, "jobs");
      if (id === undefined) {
        if (!job) throw new UsageError("jobs logs needs a run id, or --job J for its latest run", "jobs");
        const items = (await client.get<Items<Run>>(`${base}/runs`, { job, limit: 50 })).items.filter(
          (r) => r.state !== "skipped",
        );
        // The latest that ended (its output is whole), else the latest.
        const latest = items.find((r) => r.finishedAt !== undefined) ?? items[0];
        if (!latest) throw new Error(`job ${job} of ${app} has no runs yet`);
        id = latest.id;
      }
      const run = await client.get<Run>(`${base}/runs/${encodeURIComponent(id)}`);
      const { items } = await client.get<Items<LogEntry>>(`${base}/logs`, { instance: id, tail: 10000 });
      if (ctx.flags.json) {
        printJson(ctx.stdout, { run, items });
        return 0;
      }
      for (const e of items)
        if (e.stream !== "event") (e.stream === "stderr" ? ctx.stderr : ctx.stdout).write(`${e.line}\n`);
      ctx.stderr.write(
        `${run.id}: ${run.state}${exitText(run.exitCode)}${run.message ? ` (${run.message})` : ""}\n`,
      );
      return 0;
    }
    if (action === "stop") {
      if (rest.length !== 1) throw new UsageError("jobs stop needs one run id", "jobs");
      const run = await client.post<Run>(`${base}/runs/${encodeURIComponent(rest[0])}/stop`);
      if (ctx.flags.json) printJson(ctx.stdout, run);
      else println(ctx.stdout, `${run.id}: ${run.stop ? "stopping" : run.state}`);
      return 0;
    }
    throw new UsageError(`unknown jobs action: ${action} (list, runs, logs, stop)`, "jobs");
  },
};

function exitText(code: number | null | undefined): string {
  return typeof code === "number" ? ` (exit ${code})` : "";
}
