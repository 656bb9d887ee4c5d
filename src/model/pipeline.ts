/**
 * Environments: a pipeline groups apps as its stages (staging → production),
 * and a promotion ships one stage's release, slug and all, to the next
 * without a rebuild; the target keeps what is its own (env values, secrets,
 * config, hosts, instance counts). Preview apps are short-lived copies of an
 * app with a stored deadline (docs/releases.md, "Environments").
 *
 * Keys: pipeline `<tenant>/<pipeline>`, preview `<tenant>/<preview app>`.
 */

import type { FieldProblem } from "../common/errors.ts";
import { NAME_PATTERN } from "./manifest.ts";
import { parseDuration } from "./progressive.ts";
import type { Route, ServiceSpec } from "./service-spec.ts";

/** One environment of a pipeline: a stage name and the app that is it. */
export interface PipelineStage {
  name: string;
  app: string;
}

/** Apps grouped as environments, in promotion order (first stage promotes to the next). */
export interface Pipeline {
  tenant: string;
  name: string;
  stages: PipelineStage[];
  createdAt: string;
}

/** Where a promoted release came from (kept on the target's release). */
export interface PromotedFrom {
  pipeline: string;
  stage: string;
  app: string;
  version: number;
}

/** A preview app: a copy of `of` named `<of>-<name>`, destroyed at `expiresAt`. */
export interface Preview {
  tenant: string;
  /** The preview app's own name. */
  app: string;
  /** The app it previews. */
  of: string;
  name: string;
  createdAt: string;
  /** The stored deadline: the previews controller destroys the app after it, even across restarts. */
  expiresAt: string;
}

export const MAX_STAGES = 10;
export const PREVIEW_TTL_DEFAULT_MS = 24 * 3600_000;
export const PREVIEW_TTL_MIN_MS = 1000;
export const PREVIEW_TTL_MAX_MS = 30 * 24 * 3600_000;

export const pipelineKey = (tenant: string, name: string): string => `${tenant}/${name}`;
export const previewKey = (tenant: string, app: string): string => `${tenant}/${app}`;

const nameOk = (s: unknown): s is string => typeof s === "string" && new RegExp(NAME_PATTERN).test(s);

/**
 * Checks a pipeline's stages: 2 to 10, names and apps valid and each used once.
 * Returns every problem, each naming its field (`stages.1.app`).
 */
export function validateStages(stages: PipelineStage[]): FieldProblem[] {
  const problems: FieldProblem[] = [];
  if (stages.length < 2 || stages.length > MAX_STAGES)
    problems.push({ field: "stages", message: `must have 2 to ${MAX_STAGES} stages; got ${stages.length}` });
  const names = new Set<string>();
  const apps = new Set<string>();
  stages.forEach((s, i) => {
    if (!nameOk(s.name)) problems.push({ field: `stages.${i}.name`, message: `must match ${NAME_PATTERN}` });
    else if (names.has(s.name))
      problems.push({ field: `stages.${i}.name`, message: `stage ${s.name} is named twice` });
    if (!nameOk(s.app)) problems.push({ field: `stages.${i}.app`, message: `must match ${NAME_PATTERN}` });
    else if (apps.has(s.app))
      problems.push({ field: `stages.${i}.app`, message: `app ${s.app} is in two stages` });
    names.add(s.name);
    apps.add(s.app);
  });
  return problems;
}

/** `staging=shop-staging` → a stage; a string describing the problem otherwise. */
export function parseStage(text: string): PipelineStage | string {
  const m = /^([^=]+)=(.+)$/.exec(text.trim());
  if (!m) return `a stage is NAME=APP, e.g. staging=shop-staging; got ${JSON.stringify(text)}`;
  return { name: m[1]!.trim(), app: m[2]!.trim() };
}

/**
 * The stages of a promotion from `from` to `to`: only forward along the
 * pipeline (a later stage; skipping stages is allowed). Returns the two
 * stages, or the problem naming the field.
 */
export function promotionStages(
  p: Pipeline,
  from: string,
  to: string,
): { from: PipelineStage; to: PipelineStage } | FieldProblem {
  const order = p.stages.map((s) => s.name).join(" → ");
  const i = p.stages.findIndex((s) => s.name === from);
  const j = p.stages.findIndex((s) => s.name === to);
  if (i < 0) return { field: "from", message: `pipeline ${p.name} has no stage ${from} (${order})` };
  if (j < 0) return { field: "to", message: `pipeline ${p.name} has no stage ${to} (${order})` };
  if (j <= i)
    return {
      field: "to",
      message: `promotion goes forward along the pipeline (${order}); ${to} does not come after ${from}`,
    };
  return { from: p.stages[i]!, to: p.stages[j]! };
}

/** Whether `host` is an app's own local host: `<app>.localhost` or a name under it. */
const localHostOf = (host: string, app: string): boolean =>
  host === `${app}.localhost` || host.endsWith(`.${app}.localhost`);

/**
 * The services a promotion gives the target: the source release's specs
 * (command, health, routes' paths…) with what belongs to the environment
 * taken from the target's current release, for each service it has:
 * - env: the target's values win; variables only the source has come along;
 * - instances: the target's count (its size), when it has the service;
 * - routes: hosts under `<source>.localhost` become `<target>.localhost`;
 *   routes on other hosts (real domains) are the environment's own: the
 *   source's are left out and the target's current ones kept.
 * Secrets are referenced by name; their values are the target app's own.
 */
export function retargetServices(
  source: Record<string, ServiceSpec>,
  sourceApp: string,
  target: Record<string, ServiceSpec> | undefined,
  targetApp: string,
): Record<string, ServiceSpec> {
  const out: Record<string, ServiceSpec> = {};
  for (const [name, spec] of Object.entries(source)) {
    const mine = target?.[name];
    const moved: Route[] = spec.routes
      .filter((r) => localHostOf(r.host, sourceApp))
      .map((r) => ({
        ...r,
        host: `${r.host.slice(0, -`${sourceApp}.localhost`.length)}${targetApp}.localhost`,
      }));
    const own = (mine?.routes ?? []).filter((r) => !localHostOf(r.host, targetApp));
    out[name] = {
      ...spec,
      env: { ...spec.env, ...(mine?.env ?? {}) },
      instances: mine ? mine.instances : spec.instances,
      routes: [...moved, ...own],
    };
  }
  return out;
}

/** The preview app's name for app `of` and preview `name`, or the problem (too long, bad name). */
export function previewAppName(of: string, name: string): string | FieldProblem {
  if (!nameOk(name)) return { field: "name", message: `must match ${NAME_PATTERN}` };
  const app = `${of}-${name}`;
  if (!nameOk(app))
    return { field: "name", message: `the preview app ${app} would be longer than 40 characters` };
  return app;
}

/** `--ttl 24h` → ms; undefined when it is not a duration between 1s and 30 days. */
export const parsePreviewTtl = (text: string): number | undefined =>
  parseDuration(text, PREVIEW_TTL_MIN_MS, PREVIEW_TTL_MAX_MS);
