/**
 * herd.yaml: the schema of what a user writes, and its normalised form
 * (ServiceSpec) that releases store. Parsing reports every problem with the
 * field path and, when the input came from a file, its line.
 */

import { type Static, Type as T } from "@sinclair/typebox";
import { TypeCompiler, ValueErrorType } from "@sinclair/typebox/compiler";
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { type FieldProblem, HerdError } from "../common/errors.ts";
import { AlertsManifestSchema, ruleProblems } from "./alerts.ts";
import { autoscaleProblems } from "./autoscale.ts";
import { dependsOnProblems } from "./dependencies.ts";
import { routeIdentity } from "./gateway-view.ts";
import { JobManifestSchema, jobsProblems, ReleaseManifestSchema } from "./job.ts";
import { Name } from "./manifest-fields.ts";
import {
  describeError,
  type SchemaNode,
  unescapePointer,
  unexpectedField,
  yamlProblem,
} from "./manifest-messages.ts";
import { checkAggregates, checkRouteClashes, checkSplits } from "./manifest-route-checks.ts";
import { ServiceManifestSchema } from "./manifest-service.ts";
import { rolloutProblems } from "./rollout-manifest.ts";

export { NAME_PATTERN, SECRET_NAME_PATTERN } from "./manifest-fields.ts";
export { DEFAULT_AGGREGATE_HEADERS, RouteSchema } from "./manifest-route.ts";
export {
  DEFAULT_MEMORY_BURST,
  DEFAULT_RESOURCES,
  missingSecrets,
  normalizeService,
  parseBytes,
  referencedSecrets,
  resolveResources,
  type ServiceManifest,
  ServiceManifestSchema,
} from "./manifest-service.ts";

export const ManifestSchema = T.Object(
  {
    app: T.Optional(Name),
    services: T.Record(Name, ServiceManifestSchema, {
      minProperties: 1,
      additionalProperties: false,
      description: "service names are lowercase letters, digits and dashes, starting with a letter",
    }),
    alerts: T.Optional(AlertsManifestSchema),
    /** The app's release phase: `service` (default web, or the only service) runs it (model/job.ts). */
    release: T.Optional(ReleaseManifestSchema),
    /** The app's scheduled jobs, each run with `service`'s release (default web, or the only service). */
    jobs: T.Optional(T.Record(Name, JobManifestSchema, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

export type Manifest = Static<typeof ManifestSchema>;

export type {
  AggregatePartSpec,
  AggregateSpec,
  AuthSpec,
  AutoscaleMetric,
  AutoscaleSpec,
  BalanceSpec,
  CorsSpec,
  ProbeSpec,
  RateLimitSpec,
  Route,
  RouteTimeouts,
  ServiceSpec,
  SplitSpec,
  StickySpec,
} from "./service-spec.ts";

export { routeIdentity };

let compiledManifestCheck: ReturnType<typeof TypeCompiler.Compile<typeof ManifestSchema>> | undefined;
/** The manifest's compiled check, made at the first manifest read (not when the module loads). */
const manifestCheckOf = () => {
  compiledManifestCheck ??= TypeCompiler.Compile(ManifestSchema);
  return compiledManifestCheck;
};

/** Validates an already-parsed manifest object; problems name the field. */
export function validateManifest(
  value: unknown,
  file = "herd.yaml",
  lineOf?: (path: string[], atKey?: boolean) => number | undefined,
): Manifest {
  if (manifestCheckOf().Check(value)) {
    checkRouteClashes(value, file, lineOf);
    // Before checkSplits: "aggregate cannot be combined with split" says more than a split's own problem.
    checkAggregates(value, file, lineOf);
    checkSplits(value, file, lineOf);
    checkAlerts(value, file, lineOf);
    checkRollouts(value, file, lineOf);
    checkAutoscale(value, file, lineOf);
    throwProblems(dependsOnProblems(value.services), file, lineOf);
    throwProblems(jobsProblems(value), file, lineOf);
    return value;
  }
  const details: FieldProblem[] = [];
  const seen = new Set<string>();
  for (const e of manifestCheckOf().Errors(value)) {
    const path = e.path.split("/").filter(Boolean).map(unescapePointer);
    const field = path.join(".") || "(root)";
    if (seen.has(field)) continue;
    seen.add(field);
    const message =
      e.type === ValueErrorType.ObjectAdditionalProperties
        ? unexpectedField(path.at(-1) ?? "", e.schema as SchemaNode, ManifestSchema as SchemaNode)
        : e.type === ValueErrorType.ObjectRequiredProperty
          ? field === "services"
            ? `is missing: give each service its command (services: { web: { command: node server.js } }), or add a ` +
              "Procfile, a package.json start script, a server.js or an index.html for herd to take them from"
            : "is missing"
          : describeError(e.message, e.schema, e.value);
    // An unknown field's line is its key's; a wrong value's is the value's.
    details.push({
      field,
      message,
      line: lineOf?.(path, e.type === ValueErrorType.ObjectAdditionalProperties),
    });
  }
  const first = details[0];
  const where = first.line ? `${file}:${first.line}` : file;
  throw new HerdError("invalid", `${where}: ${first.field}: ${first.message}`, details);
}

/** The largest herd.yaml accepted: a manifest, not a place for data. */
export const MAX_MANIFEST_BYTES = 256 * 1024;

/**
 * Parses and validates herd.yaml's text; errors carry the file, the field and
 * the line. `services`, when given, are the services of a herd.yaml that
 * names none: the ones detected beside it (builder/detect.ts), as a
 * Procfile's are on Heroku beside app.json.
 */
export function parseManifest(
  text: string,
  file = "herd.yaml",
  services?: Record<string, { command: string }>,
): Manifest {
  const size = Buffer.byteLength(text);
  if (size > MAX_MANIFEST_BYTES) {
    throw new HerdError(
      "invalid",
      `${file} is ${size} bytes; the limit is ${MAX_MANIFEST_BYTES / 1024} KiB`,
      [{ field: "(file)", message: `larger than ${MAX_MANIFEST_BYTES / 1024} KiB` }],
    );
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // The first error only: the ones after it mostly follow from it.
    const { line, message } = yamlProblem(doc.errors[0], text);
    throw new HerdError("invalid", `${file}${line ? `:${line}` : ""}: ${message}`, [
      { field: "(yaml)", message, line },
    ]);
  }
  const lineOf = (path: string[], atKey = false): number | undefined => {
    // Walk down as far as the path exists; report the deepest node found.
    let node: unknown = doc.contents;
    let pos: number | undefined = (node as { range?: number[] })?.range?.[0];
    for (const part of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === part);
        if (!pair) break;
        pos = (pair.key as { range?: number[] }).range?.[0] ?? pos;
        node = pair.value;
        if (!atKey && (node as { range?: number[] })?.range && path[path.length - 1] === part)
          pos = (node as { range: number[] }).range[0];
      } else if (isSeq(node)) {
        node = node.items[Number(part)];
        pos = (node as { range?: number[] })?.range?.[0] ?? pos;
      } else break;
    }
    return pos === undefined ? undefined : lines.linePos(pos).line;
  };
  const value: unknown = doc.toJS();
  const withServices =
    services && typeof value === "object" && value !== null && !Array.isArray(value) && !("services" in value)
      ? { ...value, services }
      : // An empty file is an empty manifest: the detected services, nothing else.
        services && (value === null || value === undefined)
        ? { services }
        : value;
  return validateManifest(withServices, file, lineOf);
}

/** Alert rules: the expression parses, op and threshold come together (alerts.ts). */
function checkAlerts(m: Manifest, file: string, lineOf?: (path: string[]) => number | undefined): void {
  for (const [name, rule] of Object.entries(m.alerts ?? {}))
    throwProblems(ruleProblems(rule, `alerts.${name}.`), file, lineOf);
}

/** A HerdError naming the first problem (with its line) and carrying them all; nothing when there are none. */
function throwProblems(
  problems: FieldProblem[],
  file: string,
  lineOf?: (path: string[]) => number | undefined,
): void {
  if (problems.length === 0) return;
  const details = problems.map((p) => ({ ...p, line: lineOf?.(p.field.split(".")) }));
  const first = details[0] as FieldProblem;
  throw new HerdError(
    "invalid",
    `${first.line ? `${file}:${first.line}` : file}: ${first.field}: ${first.message}`,
    details,
  );
}

/** `rollout:` beyond its schema: the deadline's range, durations, thresholds, fields of another strategy. */
function checkRollouts(m: Manifest, file: string, lineOf?: (path: string[]) => number | undefined): void {
  for (const [name, service] of Object.entries(m.services)) {
    if (service.rollout)
      throwProblems(
        rolloutProblems(service.rollout, `services.${name}.rollout.`, service.mode ?? "cattle"),
        file,
        lineOf,
      );
  }
}

/** `autoscale:` beyond its schema: min ≤ max, one target, durations (model/autoscale.ts). */
function checkAutoscale(m: Manifest, file: string, lineOf?: (path: string[]) => number | undefined): void {
  for (const [name, service] of Object.entries(m.services)) {
    if (service.autoscale)
      throwProblems(autoscaleProblems(service.autoscale, `services.${name}.autoscale.`), file, lineOf);
  }
}
