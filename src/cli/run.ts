/**
 * `herd run --app A [--service S] [--timeout 10m] -- CMD ARGS`: a one-off
 * process from the app's current release (like `heroku run`), its output on
 * this terminal, its exit code as herd's.
 *
 *   GET  /apps/A/logs?tail=1          ─► the app's last seq (the run's lines come after it)
 *   POST /apps/A/runs {command}       ─► Run (pending → a node)
 *   GET  /apps/A/logs?instance=ID&follow=true&after=SEQ ─► its stdout/stderr lines, printed as they are
 *   GET  /apps/A/runs/ID (every 300 ms) until it ended ─► exit code
 *   Ctrl-C ─► POST /apps/A/runs/ID/stop, then wait for it to end (exit 130)
 *
 * There is no stdin and no terminal: the process reads an empty stdin.
 */

import { setTimeout as sleep } from "node:timers/promises";
import type { Run } from "../model/job.ts";
import type { ApiClient } from "./api-client.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { UsageError } from "./args.ts";
import { type CliContext, type CommandSpec, stringFlag } from "./context.ts";
import type { Items, LogEntry } from "./types.ts";

/** How often the run's state is read. */
const POLL_MS = 300;
/** After the run ended: how long its last lines may take to arrive (the agent ships every 250 ms). */
const DRAIN_MS = 5000;
/** Printed lines kept per stream to compare with the run's tail (the agent's tail has 20). */
const TAIL_KEPT = 100;
/** Exit codes like `timeout` (124) and a shell's Ctrl-C (130). */
export const TIMED_OUT_EXIT = 124;
export const INTERRUPTED_EXIT = 130;

export const runCommand: CommandSpec = {
  name: "run",
  usage: "herd run [--app A] [--service S] [--timeout 10m] [--detach] -- COMMAND [ARGS...]",
  summary:
    "Run a one-off process from the app's current release, with the service's env, secrets and\n" +
    "resources, in the same sandbox as its instances, on a node the scheduler picks. Its output\n" +
    "is printed as it comes; herd exits with its exit code (124 on --timeout, 130 after Ctrl-C,\n" +
    "which stops it). No stdin, no terminal. The run stays in `herd jobs runs`.",
  flags: [
    APP_FLAG_HELP,
    ["--service S", "whose env, secrets and resources (default: web, or the only service)"],
    ["--timeout D", "stop it after D (90s, 10m, 2h; default 1h)"],
    ["--detach", "start it and print its id; read its output with `herd jobs logs ID`"],
  ],
  options: {
    app: { type: "string" },
    service: { type: "string" },
    timeout: { type: "string" },
    detach: { type: "boolean" },
  },
  async run(ctx, values, positionals) {
    if (positionals.length === 0)
      throw new UsageError("herd run needs a command after --: herd run --app A -- node migrate.js", "run");
    const app = await resolveApp(ctx, stringFlag(values, "app"), "run");
    const client = await ctx.client();
    const base = `/apps/${encodeURIComponent(app)}`;
    const before = (await client.get<Items<LogEntry>>(`${base}/logs`, { tail: 1 })).items.at(-1)?.seq ?? 0;
    const run = await client.post<Run>(`${base}/runs`, {
      command: commandLine(positionals),
      ...(stringFlag(values, "service") ? { service: stringFlag(values, "service") } : {}),
      ...(stringFlag(values, "timeout") ? { timeout: stringFlag(values, "timeout") } : {}),
    });
    if (values.detach === true) {
      ctx.stdout.write(`${ctx.flags.json ? JSON.stringify(run) : run.id}\n`);
      return 0;
    }
    ctx.stderr.write(`Running ${run.command} on ${app} v${run.release} (${run.service}) as ${run.id}…\n`);
    return attach(ctx, client, base, run.id, before);
  },
};

/** Prints a run's output until it ended and its last lines arrived; returns the exit code herd should end with. */
async function attach(
  ctx: CliContext,
  client: ApiClient,
  base: string,
  id: string,
  after: number,
): Promise<number> {
  const streamDone = new AbortController();
  const interrupt = ctx.interrupt();
  /** The last lines printed per stream (the agent reads stdout and stderr apart, so either may come last). */
  const printed = { stdout: [] as string[], stderr: [] as string[] };
  let cursor = after;
  const printing = (async () => {
    while (!streamDone.signal.aborted) {
      try {
        const q = { instance: id, follow: true, after: cursor };
        for await (const e of client.stream<Partial<LogEntry>>(`${base}/logs`, q, streamDone.signal)) {
          if (typeof e.seq !== "number" || typeof e.line !== "string" || e.seq <= cursor) continue;
          cursor = e.seq;
          if (e.stream === "event") continue;
          const stream = e.stream === "stderr" ? "stderr" : "stdout";
          ctx[stream].write(`${e.line}\n`);
          printed[stream].push(e.line);
          if (printed[stream].length > TAIL_KEPT) printed[stream].shift();
        }
      } catch {
        // A dropped stream is opened again from the cursor (nothing repeats, nothing is missed).
      }
      await sleep(200, undefined, { signal: streamDone.signal }).catch(() => {});
    }
  })();
  let stopAsked = false;
  let run: Run;
  for (;;) {
    if (interrupt.aborted && !stopAsked) {
      stopAsked = true;
      ctx.stderr.write(`herd: stopping ${id}…\n`);
      await client.post<Run>(`${base}/runs/${id}/stop`).catch(() => {});
    }
    run = await client.get<Run>(`${base}/runs/${id}`);
    if (["succeeded", "failed", "stopped", "timed_out", "skipped"].includes(run.state)) break;
    await sleep(POLL_MS);
  }
  // Its last lines may still be on their way: wait until every line of the tail the agent read at
  // its end is printed (a line of stderr may arrive a round before the stdout line written first).
  const tail = run.logTail ?? [];
  const until = Date.now() + DRAIN_MS;
  while (tail.length > 0 && !tailPrinted(tail, printed) && Date.now() < until) await sleep(100);
  if (tail.length === 0) await sleep(600);
  streamDone.abort();
  await printing;
  return exitCodeOf(ctx, run, stopAsked);
}

/**
 * Whether a run's log tail (the agent's: stdout's last lines, then stderr's)
 * has been printed: some split of it ends what was printed on each stream.
 */
export function tailPrinted(
  tail: readonly string[],
  printed: { stdout: string[]; stderr: string[] },
): boolean {
  const endsWith = (lines: string[], end: readonly string[]) =>
    end.length <= lines.length && end.every((l, i) => lines[lines.length - end.length + i] === l);
  for (let split = 0; split <= tail.length; split++)
    if (endsWith(printed.stdout, tail.slice(0, split)) && endsWith(printed.stderr, tail.slice(split)))
      return true;
  return false;
}

/** herd's exit code for a run that ended, with a line on stderr when it did not end by itself. */
export function exitCodeOf(ctx: Pick<CliContext, "stderr">, run: Run, interrupted = false): number {
  switch (run.state) {
    case "succeeded":
      return 0;
    case "timed_out":
      ctx.stderr.write(`herd: ${run.id} timed out: ${run.message}\n`);
      return TIMED_OUT_EXIT;
    case "stopped":
      ctx.stderr.write(`herd: ${run.id} stopped: ${run.message}\n`);
      return INTERRUPTED_EXIT;
    default:
      if (typeof run.exitCode === "number" && run.exitCode !== 0) return run.exitCode;
      ctx.stderr.write(`herd: ${run.id} ${run.state}: ${run.message}\n`);
      return interrupted ? INTERRUPTED_EXIT : 1;
  }
}

/** One argument is a shell command line as written (`herd run -- "a && b"`); several are words, quoted where needed. */
export function commandLine(args: readonly string[]): string {
  return args.length === 1 ? args[0] : args.map(shellWord).join(" ");
}

/** A word as the shell reads it back: quoted unless it is plain. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
