/**
 * One-off processes and scheduled jobs: the wire types of runs (`herd run`,
 * a release phase, a cron job's run) and the herd.yaml `jobs:` and `release:`
 * schemas. A run is a store object (kind `run`, key = its id, global like an
 * instance id): the agent runs it from the release's slug like an instance,
 * its log lines are kept under its id, and its exit code is its outcome.
 */

import { type Static, Type as T } from "@sinclair/typebox";
import { Cron } from "croner";
import type { InstanceRun } from "./objects.ts";
import { DEADLINE_HELP, parseDeadline } from "./rollout.ts";

/** What started a run. */
export type RunKind = "one-off" | "release" | "job";

/**
 * pending   — waiting for a node
 * starting  — on a node, being unpacked and started
 * running   — process up
 * succeeded — exited with code 0
 * failed    — exited non-zero, could not start, or its node was lost
 * stopped   — stopped on request (`herd run` Ctrl-C, `herd jobs stop`, concurrency: replace)
 * timed_out — stopped at its deadline
 * skipped   — a scheduled run not started (concurrency: forbid and the previous run still runs)
 */
export type RunState =
  | "pending"
  | "starting"
  | "running"
  | "succeeded"
  | "failed"
  | "stopped"
  | "timed_out"
  | "skipped";

/** States a run does not leave. */
export const FINISHED: ReadonlySet<RunState> = new Set([
  "succeeded",
  "failed",
  "stopped",
  "timed_out",
  "skipped",
]);

/** A one-off process from a release's slug, with its service's env, secrets and resources. */
export interface Run {
  /** `run-…` (herd run), `rel-…` (release phase), `job-…` (scheduled; derived from job and time, so a slot has one run). */
  id: string;
  tenant: string;
  app: string;
  /** The service whose release, env, secrets and resources it runs with. */
  service: string;
  release: number;
  kind: RunKind;
  /** The scheduled job it belongs to. */
  job?: string;
  /** The schedule's time it stands for (ISO). */
  scheduledAt?: string;
  /** The deploy whose release phase it is. */
  deploy?: string;
  command: string;
  /** The node it runs on; null while pending. */
  node: string | null;
  /** Set to stop it: the agent stops the process (SIGTERM, then SIGKILL after 10 s). */
  stop?: { reason: "stopped" | "timed_out"; message: string };
  state: RunState;
  message: string;
  /** Its process (the shell running the command) on its node, once up. */
  pid?: number;
  exitCode?: number | null;
  signal?: string | null;
  /** Its last log lines once it ended (the agent's view; all lines are in the log store). */
  logTail?: string[];
  timeoutMs: number;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  /** Who started it (user or token name), for one-off runs. */
  createdBy?: string;
  /** What the agent needs to run it (health: the process stays up). */
  spec: InstanceRun;
}

/** A scheduled job as a release keeps it. */
export interface JobSpec {
  /** Cron: 5 fields (minute hour day month weekday), or 6 with seconds first. */
  schedule: string;
  command: string;
  concurrency: "allow" | "forbid" | "replace";
  timeoutMs: number;
  /** Finished runs kept (older ones are deleted). */
  history: number;
}

/** A scheduled job as `GET /apps/:app/jobs` shows it: its spec, next time and last run. */
export interface JobView extends JobSpec {
  name: string;
  service: string;
  release: number;
  /** The schedule's next time (ISO). */
  next: string | null;
  last?: Pick<Run, "id" | "state" | "exitCode" | "scheduledAt" | "startedAt" | "finishedAt" | "message">;
}

/** The release phase of a service: run once before a new release rolls out. */
export interface ReleasePhaseSpec {
  command: string;
  timeoutMs: number;
}

/** The file in a run's data dir its shell writes its exit code to (controllers/jobs.ts, agent/run-exit.ts). */
export const EXIT_CODE_FILE = ".herd-exit-code";

export const DEFAULT_JOB_TIMEOUT_MS = 3600_000;
export const DEFAULT_RELEASE_TIMEOUT_MS = 600_000;
export const DEFAULT_HISTORY = 10;
export const MAX_HISTORY = 100;

const Duration = T.Union([T.String({ pattern: "^[0-9]{1,6}(s|m|h)$" }), T.Number({ minimum: 1 })], {
  description: DEADLINE_HELP,
});

/** herd.yaml `jobs.<name>` (or `services.<s>.jobs.<name>`). */
export const JobManifestSchema = T.Object(
  {
    schedule: T.String({ minLength: 1, description: 'cron: "*/5 * * * *" (or 6 fields, seconds first)' }),
    command: T.String({ minLength: 1 }),
    service: T.Optional(
      T.String({ description: "whose release, env and resources (default: web, or the only service)" }),
    ),
    concurrency: T.Optional(
      T.Union([T.Literal("allow"), T.Literal("forbid"), T.Literal("replace")], {
        description: "allow, forbid or replace",
      }),
    ),
    timeout: T.Optional(Duration),
    history: T.Optional(T.Integer({ minimum: 1, maximum: MAX_HISTORY })),
  },
  { additionalProperties: false },
);

/** herd.yaml `release:`: a command, or `{command, timeout, service}`. */
export const ReleaseManifestSchema = T.Union(
  [
    T.String({ minLength: 1 }),
    T.Object(
      {
        command: T.String({ minLength: 1 }),
        service: T.Optional(T.String()),
        // Any string or number here: a wrong one is named as release.timeout (jobsProblems), not as the whole union.
        timeout: T.Optional(T.Union([T.String(), T.Number()])),
      },
      { additionalProperties: false },
    ),
  ],
  { description: "a command, or {command, timeout, service}" },
);

export type JobManifest = Static<typeof JobManifestSchema>;
export type ReleaseManifest = Static<typeof ReleaseManifestSchema>;

/** A paused croner job for a schedule, in UTC (whatever the server's time zone). */
function cron(schedule: string): Cron {
  return new Cron(schedule, { paused: true, timezone: "Etc/UTC" });
}

const CRON_HELP = '(cron: "minute hour day month weekday", or 6 fields with seconds first)';
/** The fields of a 5- or 6-field cron, in order, with the values each takes. */
const CRON_FIELDS: Record<number, [name: string, range: string][]> = {
  5: [
    ["minute", "0-59"],
    ["hour", "0-23"],
    ["day", "1-31"],
    ["month", "1-12 or jan-dec"],
    ["weekday", "0-7 or sun-sat"],
  ],
};
CRON_FIELDS[6] = [["second", "0-59"], ...CRON_FIELDS[5]];
/** The shorthands croner takes. */
const CRON_NICKNAMES = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"];
/**
 * What is wrong with a cron expression, or undefined when croner takes it:
 * the field by its name and the text written there (croner's own messages
 * count from 0, name a day one below what was written, and accept a 7th
 * field, the year, which herd does not document).
 */
export function cronProblem(schedule: string): string | undefined {
  const text = schedule.trim();
  const fields = text.split(/\s+/);
  if (!text.startsWith("@") && !CRON_FIELDS[fields.length])
    return `"${text}" has ${fields.length} field${fields.length === 1 ? "" : "s"}; a cron has 5: minute hour day month weekday, or 6 with seconds first`;
  if (text.startsWith("@") && !CRON_NICKNAMES.includes(text))
    return `"${text}" is not one of ${CRON_NICKNAMES.join(", ")} ${CRON_HELP}`;
  try {
    cron(text);
    return undefined;
  } catch (err) {
    const message = (err as Error).message.replace(/^CronPattern: /, "");
    const named = CRON_FIELDS[fields.length] ?? [];
    const value = /^Invalid value for (\w+):/.exec(message);
    // croner names the weekday field dayOfWeek.
    const at = value ? named.findIndex(([n]) => n === (value[1] === "dayOfWeek" ? "weekday" : value[1])) : -1;
    if (at >= 0) {
      const [name, range] = named[at] as [string, string];
      return `the ${name} field "${fields[at]}" is out of range (${range}) ${CRON_HELP}`;
    }
    const entry = /^configuration entry (\d+) \(([^)]*)\) contains illegal characters/.exec(message);
    const field = entry ? named[Number(entry[1]) - (fields.length === 5 ? 1 : 0)] : undefined;
    if (entry && field)
      return `the ${field[0]} field "${entry[2]}" is not a number, *, a range (1-5), a list (1,3) or a step (*/5) ${CRON_HELP}`;
    return `${message} ${CRON_HELP}`;
  }
}

/** A job's normalised spec; problems name the field under `at` (e.g. `jobs.cleanup`). */
export function normalizeJob(
  at: string,
  j: JobManifest,
): { spec?: JobSpec; problems: { field: string; message: string }[] } {
  const problems: { field: string; message: string }[] = [];
  const cron = cronProblem(j.schedule);
  if (cron) problems.push({ field: `${at}.schedule`, message: cron });
  const timeoutMs = j.timeout === undefined ? DEFAULT_JOB_TIMEOUT_MS : parseDeadline(j.timeout);
  if (timeoutMs === undefined) problems.push({ field: `${at}.timeout`, message: `must be ${DEADLINE_HELP}` });
  if (problems.length > 0 || timeoutMs === undefined) return { problems };
  return {
    problems,
    spec: {
      schedule: j.schedule,
      command: j.command,
      concurrency: j.concurrency ?? "forbid",
      timeoutMs,
      history: j.history ?? DEFAULT_HISTORY,
    },
  };
}

/** A release phase's normalised spec; problems name the field `at` (e.g. `release`). */
export function normalizeReleasePhase(
  at: string,
  r: ReleaseManifest,
): { spec?: ReleasePhaseSpec; problems: { field: string; message: string }[] } {
  if (typeof r === "string")
    return { problems: [], spec: { command: r, timeoutMs: DEFAULT_RELEASE_TIMEOUT_MS } };
  const timeoutMs = r.timeout === undefined ? DEFAULT_RELEASE_TIMEOUT_MS : parseDeadline(r.timeout);
  if (timeoutMs === undefined)
    return { problems: [{ field: `${at}.timeout`, message: `must be ${DEADLINE_HELP}` }] };
  return { problems: [], spec: { command: r.command, timeoutMs } };
}

/** The next time a schedule fires after `after` (ms), or undefined when it never does. */
export function nextFire(schedule: string, after: number): number | undefined {
  const next = cron(schedule).nextRun(new Date(after));
  return next ? next.getTime() : undefined;
}

/** The latest time a schedule fired at or before `now`, if that is at or after `since` (ms). */
export function lastFire(schedule: string, since: number, now: number): number | undefined {
  const prev = cron(schedule).previousRuns(1, new Date(now + 1))[0];
  return prev && prev.getTime() >= since ? prev.getTime() : undefined;
}

/** The part of herd.yaml (app or service) that holds a release phase and jobs. */
interface JobsHolder {
  release?: ReleaseManifest;
  jobs?: Record<string, JobManifest>;
}

/** `release` and `jobs` of a service as its spec keeps them (the schema and jobsProblems checked them). */
export function normalizeJobs(
  at: string,
  s: JobsHolder,
): { release?: ReleasePhaseSpec; jobs?: Record<string, JobSpec> } {
  const out: { release?: ReleasePhaseSpec; jobs?: Record<string, JobSpec> } = {};
  if (s.release !== undefined) {
    const r = normalizeReleasePhase(`${at}.release`, s.release);
    if (r.spec) out.release = r.spec;
  }
  const jobs = Object.entries(s.jobs ?? {}).flatMap(([name, j]) => {
    const spec = normalizeJob(`${at}.jobs.${name}`, j).spec;
    return spec ? [[name, spec] as const] : [];
  });
  if (jobs.length > 0) out.jobs = Object.fromEntries(jobs);
  return out;
}

/** The service app-level `release:` and `jobs:` run in when they name none: web, else the only service. */
export function defaultJobService(services: readonly string[]): string | undefined {
  if (services.includes("web")) return "web";
  return services.length === 1 ? services[0] : undefined;
}

/**
 * What is wrong with herd.yaml's release phases and jobs beyond the schema:
 * cron expressions, timeouts, the service an app-level one names, and a job
 * name used twice.
 */
export function jobsProblems(m: JobsHolder & { services: Record<string, JobsHolder> }): {
  field: string;
  message: string;
}[] {
  const problems: { field: string; message: string }[] = [];
  const names = Object.keys(m.services);
  const serviceOf = (field: string, named: string | undefined): void => {
    if (named !== undefined && !names.includes(named))
      problems.push({
        field,
        message: `no service ${named} in this herd.yaml (there are: ${names.join(", ")})`,
      });
    else if (named === undefined && defaultJobService(names) === undefined)
      problems.push({
        field,
        message: `name the service it runs in (there is no web service): ${names.join(", ")}`,
      });
  };
  const seen = new Map<string, string>();
  const check = (at: string, h: JobsHolder, appLevel: boolean) => {
    if (h.release !== undefined) {
      problems.push(...normalizeReleasePhase(`${at}release`, h.release).problems);
      if (appLevel) {
        const named = typeof h.release === "string" ? undefined : h.release.service;
        serviceOf(typeof h.release === "string" ? "release" : "release.service", named);
      } else if (typeof h.release !== "string" && h.release.service !== undefined)
        problems.push({
          field: `${at}release.service`,
          message: "only an app-level release names a service",
        });
    }
    for (const [name, j] of Object.entries(h.jobs ?? {})) {
      const field = `${at}jobs.${name}`;
      problems.push(...normalizeJob(field, j).problems);
      if (appLevel) serviceOf(j.service === undefined ? field : `${field}.service`, j.service);
      else if (j.service !== undefined)
        problems.push({
          field: `${field}.service`,
          message: "a service's own job runs in that service; leave it out",
        });
      const before = seen.get(name);
      if (before !== undefined) problems.push({ field, message: `job ${name} is also defined at ${before}` });
      else seen.set(name, field);
    }
  };
  check("", m, true);
  for (const [name, s] of Object.entries(m.services)) check(`services.${name}.`, s, false);
  if (m.release !== undefined) {
    const target =
      typeof m.release === "string"
        ? defaultJobService(names)
        : (m.release.service ?? defaultJobService(names));
    if (target !== undefined && m.services[target]?.release !== undefined)
      problems.push({
        field: "release",
        message: `service ${target} has its own release phase (services.${target}.release)`,
      });
  }
  return problems;
}

/**
 * Folds app-level `release:` and `jobs:` into the spec of the service that
 * runs them (jobsProblems checked there is one). Returns new specs.
 */
export function foldAppJobs<S extends { release?: ReleasePhaseSpec; jobs?: Record<string, JobSpec> }>(
  m: JobsHolder,
  services: Record<string, S>,
): Record<string, S> {
  if (m.release === undefined && m.jobs === undefined) return services;
  const out = { ...services };
  const names = Object.keys(services);
  const target = (named: string | undefined) => named ?? defaultJobService(names);
  if (m.release !== undefined) {
    const name = target(typeof m.release === "string" ? undefined : m.release.service);
    const spec = normalizeReleasePhase("release", m.release).spec;
    if (name && out[name] && spec) out[name] = { ...out[name], release: spec };
  }
  for (const [job, j] of Object.entries(m.jobs ?? {})) {
    const name = target(j.service);
    const spec = normalizeJob(`jobs.${job}`, j).spec;
    if (name && out[name] && spec) out[name] = { ...out[name], jobs: { ...out[name].jobs, [job]: spec } };
  }
  return out;
}
