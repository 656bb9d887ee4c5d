/**
 * Live configuration: what can change through the API without a deploy.
 *
 *   route object   PUT /apps/:app/routes/:name  herd.yaml's route fields + `service`
 *   traffic        PATCH /apps/:app/services/:svc/traffic  overrides of a service's
 *                  breaker, outlier, criticality, concurrency (Service.traffic)
 *   gateway status PUT /gateways/:id/status  the version a gateway applied (ACK) or refused (NACK)
 *
 * Route objects store what was PUT (defaults not filled in), so a GET gives
 * back the same document; the gateway validates and normalises them with the
 * same schema and the same code as herd.yaml's routes when it builds a table.
 */

import { type Static, Type as T, type TSchema } from "@sinclair/typebox";
import { type TypeCheck, TypeCompiler, type ValueError, ValueErrorType } from "@sinclair/typebox/compiler";
import { type FieldProblem, HerdError } from "../common/errors.ts";
import type { TrafficPolicies } from "./gateway-view.ts";
import {
  NAME_PATTERN,
  normalizeService,
  type Route,
  RouteSchema,
  ServiceManifestSchema,
  type ServiceSpec,
} from "./manifest.ts";
import { describeError, unescapePointer } from "./manifest-messages.ts";

export { effectiveTraffic, GATEWAY_KINDS, type TrafficPolicies } from "./gateway-view.ts";

const Name = T.String({
  pattern: NAME_PATTERN,
  description: "lowercase letters, digits and dashes; starts with a letter; at most 40",
});

/** The body of `PUT /apps/:app/routes/:name`: a herd.yaml route plus the service it sends to. */
export const RouteBodySchema = T.Object(
  { ...RouteSchema.properties, service: Name },
  { additionalProperties: false },
);
export type RouteBody = Static<typeof RouteBodySchema>;

/** A route set through the API. Key: `<tenant>/<app>/<name>`. */
export interface RouteObject {
  tenant: string;
  app: string;
  name: string;
  /** What was PUT, as given: the service and herd.yaml's route fields. */
  spec: RouteBody;
  createdAt: string;
  updatedAt: string;
}

export const routeObjectKey = (tenant: string, app: string, name: string): string =>
  `${tenant}/${app}/${name}`;

let routeBodyCompiled: TypeCheck<typeof RouteBodySchema> | undefined;
/** Compiled at first use, not when the module loads. */
const routeBodyCheck = () => {
  routeBodyCompiled ??= TypeCompiler.Compile(RouteBodySchema);
  return routeBodyCompiled;
};

/** JSON Schema's name of a value's type ("integer" for a whole number also fits "number"). */
function jsonTypes(value: unknown): string[] {
  if (value === null) return ["null"];
  if (Array.isArray(value)) return ["array"];
  if (typeof value === "number") return Number.isInteger(value) ? ["integer", "number"] : ["number"];
  return [typeof value];
}

/**
 * A union's errors, or those of its one variant (not a literal) of the value's
 * type: a traffic body's `breaker: { open: 0 }` is wrong in the breaker's
 * `open`, not in being none of an object, false and null.
 */
function* unionErrors(errors: Iterable<ValueError>): Generator<ValueError> {
  for (const e of errors) {
    const variants = (e.type === ValueErrorType.Union ? (e.schema.anyOf as TSchema[]) : []).flatMap((v, i) =>
      !("const" in v) && typeof v.type === "string" && jsonTypes(e.value).includes(v.type) ? [i] : [],
    );
    if (variants.length === 1) yield* unionErrors(e.errors[variants[0]]);
    else yield e;
  }
}

/** Field problems of a value against a compiled schema, one per field, named by dotted path. */
export function schemaProblems(check: TypeCheck<never>, value: unknown, prefix = ""): FieldProblem[] {
  const details: FieldProblem[] = [];
  const seen = new Set<string>();
  for (const e of unionErrors(check.Errors(value))) {
    const path = e.path.split("/").filter(Boolean).map(unescapePointer);
    const field = prefix + (path.join(".") || "(root)");
    if (seen.has(field)) continue;
    seen.add(field);
    details.push({ field, message: describeError(e.message, e.schema, e.value) });
  }
  return details;
}

/** Checks a route body (API input, or a stored route object at the gateway); errors name the field. */
export function checkRouteBody(value: unknown, what = "route"): RouteBody {
  if (routeBodyCheck().Check(value)) return value;
  const details = schemaProblems(routeBodyCheck() as TypeCheck<never>, value);
  throw new HerdError("invalid", `invalid ${what}: ${details[0].field}: ${details[0].message}`, details);
}

/**
 * Normalises a route body exactly as herd.yaml's routes are (defaults filled
 * in, header names lowercased): it goes through normalizeService, so the two
 * can never drift apart.
 */
export function normalizeRoute(app: string, spec: RouteBody): Route {
  const { service, ...route } = spec;
  return normalizeService(app, service, { command: "-", routes: [route] }, undefined).routes[0];
}

/**
 * A split or mirror names other services of the same app. Returns the
 * problems (empty when fine); `services` are the app's service names.
 */
export function routeTargetProblems(spec: RouteBody, services: readonly string[]): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const check = (field: string, name: string) => {
    if (name === spec.service) problems.push({ field, message: "is this route's own service" });
    else if (!services.includes(name))
      problems.push({ field, message: `no service ${name} in this app (it has ${services.join(", ")})` });
  };
  if (spec.mirror) check("mirror.service", spec.mirror.service);
  spec.split?.to.forEach((t, i) => {
    check(`split.to.${i}.service`, t.service);
  });
  const total = spec.split?.to.reduce((sum, t) => sum + t.weight, 0) ?? 0;
  if (total > 100)
    problems.push({ field: "split.to", message: `the weights add up to ${total}, more than 100` });
  return problems;
}

export const TRAFFIC_FIELDS = ["breaker", "outlier", "criticality", "concurrency"] as const;

/**
 * Overrides set through the API, per field: a value replaces the spec's;
 * `null` turns the policy off (no breaker, no outlier ejection, no limit).
 * A field that is absent follows the spec (herd.yaml).
 */
export type TrafficOverride = {
  [K in keyof TrafficPolicies]?: NonNullable<TrafficPolicies[K]> | null;
};

const props = ServiceManifestSchema.properties;
const Off = T.Literal(false, { description: "false: off, whatever herd.yaml says" });
const Unset = T.Null({ description: "null: back to herd.yaml's value" });

/** The body of `PATCH /apps/:app/services/:svc/traffic`: herd.yaml's fields; false = off, null = back to herd.yaml. */
export const TrafficBodySchema = T.Object(
  {
    breaker: T.Optional(T.Union([T.Optional(props.breaker, false), Off, Unset])),
    outlier: T.Optional(T.Union([T.Optional(props.outlier, false), Off, Unset])),
    criticality: T.Optional(T.Union([T.Optional(props.criticality, false), Unset])),
    concurrency: T.Optional(T.Union([T.Optional(props.concurrency, false), Off, Unset])),
    fallback: T.Optional(
      T.Union([
        T.Literal(true, {
          description: "true: the service's routes that have a fallback answer it now (degraded)",
        }),
        Off,
        Unset,
      ]),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type TrafficBody = Static<typeof TrafficBodySchema>;

let trafficCompiled: TypeCheck<typeof TrafficBodySchema> | undefined;
/** Compiled at first use, not when the module loads. */
const trafficCheck = () => {
  trafficCompiled ??= TypeCompiler.Compile(TrafficBodySchema);
  return trafficCompiled;
};

/** Checks a traffic body; errors name the field. */
export function checkTrafficBody(value: unknown): TrafficBody {
  if (trafficCheck().Check(value)) return value;
  const details = schemaProblems(trafficCheck() as TypeCheck<never>, value);
  throw new HerdError(
    "invalid",
    `invalid traffic policy: ${details[0].field}: ${details[0].message}`,
    details,
  );
}

/** Applies a PATCH body to the current overrides (normalised as herd.yaml's fields are). */
export function patchTraffic(current: TrafficOverride | undefined, body: TrafficBody): TrafficOverride {
  const next: TrafficOverride = { ...current };
  // One normalisation for herd.yaml and the API: the values go through normalizeService.
  const spec = normalizeService(
    "-",
    "-",
    {
      command: "-",
      ...(body.breaker ? { breaker: body.breaker } : {}),
      ...(body.outlier ? { outlier: body.outlier } : {}),
      ...(body.criticality ? { criticality: body.criticality } : {}),
      ...(body.concurrency ? { concurrency: body.concurrency } : {}),
    },
    undefined,
  );
  // The fallback switch is no herd.yaml field: on, or gone.
  if (body.fallback === true) next.fallback = true;
  else if (body.fallback !== undefined) delete next.fallback;
  for (const field of TRAFFIC_FIELDS) {
    const value = body[field];
    if (value === undefined) continue;
    if (value === null) delete next[field];
    else if (value === false) next[field] = null;
    // criticality normal is the default and normalizeService leaves it out.
    else
      (next as Record<string, unknown>)[field] = spec[field] ?? (field === "criticality" ? "normal" : null);
  }
  return next;
}

/**
 * The overrides that survive a deploy: like a count set by `herd scale`, an
 * override stays unless the new release changes that policy in herd.yaml
 * (then the developer's new value wins).
 */
export function keepTraffic(
  current: TrafficOverride | undefined,
  previous: ServiceSpec | undefined,
  next: ServiceSpec,
): TrafficOverride | undefined {
  if (current === undefined) return undefined;
  const kept: TrafficOverride = {};
  for (const field of TRAFFIC_FIELDS) {
    if (!(field in current)) continue;
    if (previous && JSON.stringify(previous[field]) !== JSON.stringify(next[field])) continue;
    (kept as Record<string, unknown>)[field] = current[field];
  }
  // A service switched to its fallbacks stays so until whoever switched it (a person, the engine) ends it.
  if (current.fallback) kept.fallback = true;
  return Object.keys(kept).length > 0 ? kept : undefined;
}

/** `PUT /gateways/:id/status`: what a gateway reports after each table change, and periodically. */
export const GatewayReportSchema = T.Object(
  {
    version: T.Integer({
      minimum: 0,
      description: "the config version (store revision) this report is about",
    }),
    applied: T.Boolean({ description: "true: serving it (ACK); false: refused it (NACK), see error" }),
    error: T.Optional(T.String({ maxLength: 4000 })),
    serving: T.Optional(T.Integer({ minimum: 0, description: "the version of the table serving now" })),
    routes: T.Integer({ minimum: 0, description: "routes in the table serving now" }),
    url: T.Optional(T.String({ maxLength: 300 })),
    workers: T.Optional(T.Integer({ minimum: 1, maximum: 1024 })),
    metricsUrl: T.Optional(
      T.String({
        pattern: "^https?://[^\\s]+$",
        maxLength: 300,
        description:
          "where the gateway serves GET /metrics: the control plane scrapes it while the gateway reports",
      }),
    ),
  },
  { additionalProperties: false },
);
export type GatewayReport = Static<typeof GatewayReportSchema>;

/** One gateway as `GET /gateways` shows it. */
export interface GatewayStatus {
  id: string;
  url?: string;
  workers?: number;
  /** Where its metrics are; scraped while it reports. */
  metricsUrl?: string;
  /** The config version serving now. */
  version: number;
  /** The control plane's config version: the revision of the last change gateways follow. */
  configVersion: number;
  /** Serving the control plane's latest config, with no refused version pending. */
  inSync: boolean;
  routes: number;
  /** The last version refused and why (until a later version is applied). */
  rejectedVersion?: number;
  error?: string;
  lastSeen: string;
  /** No report for three report intervals. */
  silent: boolean;
}
