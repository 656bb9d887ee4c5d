/**
 * herd.yaml: the schema of what a user writes, and its normalised form
 * (ServiceSpec) that releases store. Parsing reports every problem with the
 * field path and, when the input came from a file, its line.
 */

import { type Static, Type as T } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { type FieldProblem, HerdError } from "../common/errors.ts";
import { AlertsManifestSchema, ruleProblems } from "./alerts.ts";
import { AutoscaleManifestSchema, autoscaleProblems, normalizeAutoscale } from "./autoscale.ts";
import { DependsOnSchema, dependsOnProblems } from "./dependencies.ts";
import { routeIdentity } from "./gateway-view.ts";
import { JobManifestSchema, jobsProblems, normalizeJobs, ReleaseManifestSchema } from "./job.ts";
import { describeError, QUANTITY_RULE, unescapePointer, yamlProblem } from "./manifest-messages.ts";
import type { Resources } from "./objects.ts";
import { normalizePlacement, PlacementSchema, placementServices } from "./placement.ts";
import { normalizeRollout, RolloutManifestSchema, rolloutProblems } from "./rollout-manifest.ts";
import type {
  AggregateSpec,
  AuthSpec,
  BalanceSpec,
  Route,
  RouteTimeouts,
  ServiceSpec,
  StickySpec,
} from "./service-spec.ts";

/** Names of tenants, apps and services: DNS labels. */
export const NAME_PATTERN = "^[a-z][a-z0-9-]{0,39}$";
const Name = T.String({
  pattern: NAME_PATTERN,
  description: "lowercase letters, digits and dashes; starts with a letter; at most 40",
});
const Host = T.String({
  pattern: "^(\\*\\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$",
  description: "a host name, optionally *.suffix",
});
const Quantity = T.Union(
  [T.Number({ exclusiveMinimum: 0 }), T.String({ pattern: "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|K|M|G)?$" })],
  { description: QUANTITY_RULE },
);

const Method = T.Union(
  ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].map((m) => T.Literal(m)),
  { description: "GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS" },
);

/** What identifies a client for stickiness: its address, a header or a cookie. */
const StickyKey = T.Union([
  T.Literal("ip"),
  T.Object({ header: T.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }) }, { additionalProperties: false }),
  T.Object(
    { cookie: T.String({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$" }) },
    { additionalProperties: false },
  ),
]);

/** Names of secrets (herd secrets set NAME). */
export const SECRET_NAME_PATTERN = "^[A-Za-z][A-Za-z0-9_-]{0,63}$";
const SecretName = T.String({
  pattern: SECRET_NAME_PATTERN,
  description: "letters, digits, _ and -, starting with a letter; at most 64",
});

/** Seconds an aggregation part may take. */
const PartTimeout = T.Number({ minimum: 0.01, maximum: 60, description: "seconds, 0.01 to 60" });

/** An aggregation: one route answered by calling several services in parallel and merging their JSON. */
const AggregateSchema = T.Object(
  {
    timeout: T.Optional(
      T.Number({
        minimum: 0.01,
        maximum: 60,
        description: "seconds each part may take, 0.01 to 60 (default 1)",
      }),
    ),
    headers: T.Optional(
      T.Array(T.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }), {
        maxItems: 32,
        uniqueItems: true,
        description: "client headers sent to every part (default: authorization, cookie)",
      }),
    ),
    parts: T.Record(
      T.String({ pattern: "^[A-Za-z][A-Za-z0-9_-]{0,63}$" }),
      T.Object(
        {
          service: Name,
          path: T.String({
            pattern: "^/[^\\s#]*$",
            maxLength: 1024,
            description: "a path starting with /, may carry a query",
          }),
          query: T.Optional(T.Boolean({ description: "append the client's query string (default false)" })),
          timeout: T.Optional(PartTimeout),
        },
        { additionalProperties: false },
      ),
      {
        minProperties: 1,
        maxProperties: 16,
        additionalProperties: false,
        description: "1 to 16 parts; names are letters, digits, _ and -, starting with a letter",
      },
    ),
  },
  {
    additionalProperties: false,
    description: "answer GET/HEAD with the merged JSON of several services' answers, called in parallel",
  },
);

/** Who may use a route: consumers with an API key, and/or bearers of a JWT (see src/gateway/auth.ts). */
const RouteAuthSchema = T.Object(
  {
    apiKey: T.Optional(
      T.Object(
        {
          header: T.Optional(
            T.String({
              pattern: "^[A-Za-z0-9-]{1,64}$",
              description: "header with the key (default x-api-key)",
            }),
          ),
          query: T.Optional(
            T.String({
              pattern: "^[A-Za-z0-9_.-]{1,64}$",
              description: "also accept the key in this query parameter, e.g. apikey",
            }),
          ),
          hideCredentials: T.Optional(
            T.Boolean({ description: "remove the key (header and query parameter) before forwarding" }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    jwt: T.Optional(
      T.Object(
        {
          jwks: T.Optional(
            T.Union(
              [
                T.Object(
                  { file: T.String({ pattern: "^/", maxLength: 4096, description: "an absolute path" }) },
                  { additionalProperties: false },
                ),
                T.Object(
                  { url: T.String({ pattern: "^https?://[^\\s]+$", maxLength: 2048 }) },
                  { additionalProperties: false },
                ),
              ],
              {
                description:
                  "{ file: /absolute/path.json } or { url: https://issuer/.well-known/jwks.json }: keys of an identity provider (RS256)",
              },
            ),
          ),
          issuer: T.Optional(
            T.String({ minLength: 1, maxLength: 1024, description: "JWKS tokens must have this iss" }),
          ),
          audience: T.Optional(
            T.String({ minLength: 1, maxLength: 1024, description: "tokens must have this aud" }),
          ),
          claim: T.Optional(
            T.String({
              pattern: "^[A-Za-z0-9_.:-]{1,64}$",
              description: "the claim of a JWKS token that names the consumer (default sub)",
            }),
          ),
          hideCredentials: T.Optional(
            T.Boolean({ description: "remove the Authorization header before forwarding" }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description: "apiKey and/or jwt: requests need one of their credentials",
  },
);

export const RouteSchema = T.Object(
  {
    host: Host,
    path: T.Optional(T.String({ pattern: "^/", maxLength: 1024, description: "a path starting with /" })),
    match: T.Optional(
      T.Union([T.Literal("prefix"), T.Literal("exact")], {
        description: "prefix (default: the path and everything below it) or exact",
      }),
    ),
    methods: T.Optional(T.Array(Method, { minItems: 1, uniqueItems: true })),
    headers: T.Optional(
      T.Record(T.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }), T.String({ maxLength: 1024 }), {
        additionalProperties: false,
        description: "header names (letters, digits, -) and the exact values they must have",
      }),
    ),
    rewrite: T.Optional(
      T.String({ pattern: "^/", maxLength: 1024, description: "replaces the matched path prefix, e.g. /" }),
    ),
    priority: T.Optional(
      T.Integer({
        minimum: -1000,
        maximum: 1000,
        description: "higher wins when several routes match (default 0)",
      }),
    ),
    balance: T.Optional(
      T.Union(
        [
          T.Literal("round_robin"),
          T.Literal("least_request"),
          T.Object(
            {
              hash: StickyKey,
            },
            { additionalProperties: false },
          ),
        ],
        {
          description:
            "round_robin (default), least_request (the less busy of two random instances), or { hash: ip | { header: NAME } | { cookie: NAME } } for sticky sessions",
        },
      ),
    ),
    mirror: T.Optional(
      T.Object(
        {
          service: Name,
          percent: T.Optional(
            T.Number({ minimum: 0, maximum: 100, description: "share of requests copied (default 100)" }),
          ),
        },
        {
          additionalProperties: false,
          description:
            "copy requests (without a body) to another service of the app; its answers are dropped",
        },
      ),
    ),
    split: T.Optional(
      T.Object(
        {
          to: T.Array(
            T.Object(
              {
                service: Name,
                weight: T.Number({
                  minimum: 0,
                  maximum: 100,
                  description: "percent of the route's requests",
                }),
              },
              { additionalProperties: false },
            ),
            { minItems: 1, maxItems: 10 },
          ),
          sticky: T.Optional(StickyKey),
        },
        {
          additionalProperties: false,
          description:
            "send a share of this route's requests to other services of the app (the rest stays here)",
        },
      ),
    ),
    cors: T.Optional(
      T.Object(
        {
          origins: T.Array(T.String({ pattern: "^(\\*|https?://[^/\\s]+)$" }), {
            minItems: 1,
            description: "allowed origins (scheme://host[:port]) or *",
          }),
          methods: T.Optional(T.Array(Method, { minItems: 1, uniqueItems: true })),
          headers: T.Optional(T.Array(T.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }))),
          exposeHeaders: T.Optional(T.Array(T.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }))),
          credentials: T.Optional(T.Boolean()),
          maxAge: T.Optional(
            T.Integer({ minimum: 0, maximum: 86400, description: "seconds a preflight may be cached" }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    fallback: T.Optional(
      T.Object(
        {
          status: T.Optional(T.Integer({ minimum: 200, maximum: 599, description: "default 200" })),
          body: T.String({ maxLength: 65536 }),
          contentType: T.Optional(
            T.String({ maxLength: 200, description: "default text/plain; charset=utf-8" }),
          ),
        },
        {
          additionalProperties: false,
          description:
            "what to answer when the service cannot: no instance running, breaker open, unreachable or too slow",
        },
      ),
    ),
    aggregate: T.Optional(AggregateSchema),
    timeouts: T.Optional(
      T.Object(
        {
          connect: T.Optional(
            T.Number({
              minimum: 0.01,
              maximum: 300,
              description: "seconds to open a connection to an instance (default 5)",
            }),
          ),
          request: T.Optional(
            T.Number({
              minimum: 0.01,
              maximum: 86400,
              description: "seconds from sending the request to the end of the answer (default: none)",
            }),
          ),
          idle: T.Optional(
            T.Number({
              minimum: 0.01,
              maximum: 86400,
              description: "seconds an instance may stay silent, before or within its answer (default 60)",
            }),
          ),
        },
        { additionalProperties: false, description: "how long the gateway waits for the service" },
      ),
    ),
    rateLimit: T.Optional(
      T.Object(
        {
          rate: T.Number({ exclusiveMinimum: 0, maximum: 1_000_000, description: "requests per second" }),
          burst: T.Optional(
            T.Integer({ minimum: 1, maximum: 10_000_000, description: "default: one second's worth" }),
          ),
          per: T.Optional(
            T.Union([T.Literal("route"), T.Literal("ip"), T.Literal("consumer")], {
              description:
                "route (one bucket for everyone, default), ip (one per client address) or consumer (one per authenticated consumer; per ip without one)",
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    auth: T.Optional(RouteAuthSchema),
  },
  { additionalProperties: false },
);

export const ServiceManifestSchema = T.Object(
  {
    command: T.Optional(T.String({ minLength: 1 })),
    /** Runs once before each new release of this service rolls out (model/job.ts). */
    release: T.Optional(ReleaseManifestSchema),
    /** Scheduled jobs run with this service's release, env and resources (model/job.ts). */
    jobs: T.Optional(T.Record(Name, JobManifestSchema, { additionalProperties: false })),
    instances: T.Optional(T.Integer({ minimum: 0, maximum: 1000 })),
    resources: T.Optional(
      T.Object(
        {
          units: T.Optional(
            T.Number({
              exclusiveMinimum: 0,
              maximum: 1024,
              description:
                "resource units (default 1 unit = 0.1 CPU + 256 MiB); cpu or memory override their part",
            }),
          ),
          cpu: T.Optional(
            T.Number({
              exclusiveMinimum: 0,
              maximum: 256,
              description:
                "CPU cores requested: what placement counts and the instance's share under contention",
            }),
          ),
          cpuLimit: T.Optional(
            T.Number({
              exclusiveMinimum: 0,
              maximum: 256,
              description:
                "a hard CPU ceiling in cores, at least the request (default: none, idle CPU may be used)",
            }),
          ),
          memory: T.Optional(Quantity),
        },
        { additionalProperties: false },
      ),
    ),
    health: T.Optional(
      T.Object(
        {
          path: T.Optional(T.String({ pattern: "^/" })),
          tcp: T.Optional(
            T.Boolean({
              description:
                "false: the process staying up is the check (no port needed); default for services without routes",
            }),
          ),
          interval: T.Optional(T.Number({ minimum: 0.05, maximum: 300, description: "seconds" })),
          timeout: T.Optional(T.Number({ minimum: 0.05, maximum: 300, description: "seconds" })),
          failures: T.Optional(T.Integer({ minimum: 1, maximum: 100 })),
          startup: T.Optional(T.Number({ minimum: 1, maximum: 3600, description: "seconds" })),
        },
        { additionalProperties: false },
      ),
    ),
    mode: T.Optional(T.Union([T.Literal("cattle"), T.Literal("pet")], { description: "cattle or pet" })),
    env: T.Optional(
      T.Record(
        T.String({ pattern: "^[A-Za-z_][A-Za-z0-9_]*$" }),
        T.Union(
          [
            T.String(),
            T.Number(),
            T.Boolean(),
            T.Object({ secret: SecretName }, { additionalProperties: false }),
          ],
          {
            description:
              "a string, number or boolean, or { secret: NAME }: the value of the app's secret NAME (herd secrets set)",
          },
        ),
        {
          additionalProperties: false,
          description: "variable names are letters, digits and _, not starting with a digit",
        },
      ),
    ),
    routes: T.Optional(T.Array(RouteSchema, { maxItems: 100 })),
    placement: T.Optional(PlacementSchema),
    rollout: T.Optional(RolloutManifestSchema),
    minAvailable: T.Optional(
      T.Integer({
        minimum: 0,
        maximum: 1000,
        description:
          "disruption budget: running instances a drain, a move or a rollout without room keeps (default: all of them, so each is replaced before it stops)",
      }),
    ),
    criticality: T.Optional(
      T.Union([T.Literal("critical"), T.Literal("normal"), T.Literal("low")], {
        description: "under overload the gateway sheds low first and critical last (default normal)",
      }),
    ),
    config: T.Optional(
      T.Object(
        {
          onChange: T.Union([T.Literal("file"), T.Literal("signal"), T.Literal("restart")], {
            description:
              "when the app's config changes: file (the new file only, default), signal (SIGHUP) or restart",
          }),
        },
        { additionalProperties: false },
      ),
    ),
    concurrency: T.Optional(
      T.Integer({
        minimum: 1,
        maximum: 1_000_000,
        description: "most requests in flight to this service per gateway",
      }),
    ),
    autoscale: T.Optional(AutoscaleManifestSchema),
    dependsOn: T.Optional(DependsOnSchema),
    outlier: T.Optional(
      T.Object(
        {
          failures: T.Optional(
            T.Integer({
              minimum: 1,
              maximum: 1000,
              description: "failures in a row that eject an instance (default 5)",
            }),
          ),
          ejection: T.Optional(
            T.Number({
              minimum: 0.1,
              maximum: 3600,
              description: "seconds out the first time, longer each time (default 30)",
            }),
          ),
          maxShare: T.Optional(
            T.Number({
              minimum: 0,
              maximum: 1,
              description: "at most this share of instances out at once (default 0.5)",
            }),
          ),
        },
        { additionalProperties: false, description: "passive outlier ejection of failing instances" },
      ),
    ),
    probe: T.Optional(
      T.Object(
        {
          path: T.Optional(
            T.String({
              pattern: "^/",
              maxLength: 1024,
              description: "the path probed with GET (default: health.path, else /)",
            }),
          ),
          interval: T.Optional(
            T.Number({
              minimum: 0.05,
              maximum: 300,
              description: "seconds between two probes of an instance (default 5)",
            }),
          ),
          timeout: T.Optional(
            T.Number({
              minimum: 0.05,
              maximum: 60,
              description: "seconds a probe may take before it counts as failed (default 1)",
            }),
          ),
          unhealthyAfter: T.Optional(
            T.Integer({
              minimum: 1,
              maximum: 100,
              description: "failed probes in a row that take an instance out of the rotation (default 2)",
            }),
          ),
          healthyAfter: T.Optional(
            T.Integer({
              minimum: 1,
              maximum: 100,
              description: "passed probes in a row that bring it back (default 2)",
            }),
          ),
        },
        {
          additionalProperties: false,
          description: "active health probes from the gateway to each instance (2xx or 3xx passes)",
        },
      ),
    ),
    breaker: T.Optional(
      T.Object(
        {
          failures: T.Optional(
            T.Integer({
              minimum: 1,
              maximum: 1000,
              description: "failures in a row that open it (default 5)",
            }),
          ),
          open: T.Optional(
            T.Number({
              minimum: 0.1,
              maximum: 600,
              description: "seconds it stays open at first (default 5)",
            }),
          ),
        },
        { additionalProperties: false, description: "circuit breaker in front of the service's instances" },
      ),
    ),
  },
  { additionalProperties: false },
);

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
export type ServiceManifest = Static<typeof ServiceManifestSchema>;

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

/** Client headers an aggregation sends to its parts unless its `headers` says otherwise. */
export const DEFAULT_AGGREGATE_HEADERS = ["authorization", "cookie"];

/**
 * Headers an aggregation may not forward: the gateway sets them itself per
 * part (framing, tracing, X-Forwarded-*), they describe one connection, or
 * they would let a part answer in a form the gateway cannot merge.
 */
const UNFORWARDABLE = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "te",
  "trailer",
  "upgrade",
  "proxy-authorization",
  "proxy-connection",
  "accept-encoding",
  "traceparent",
  "tracestate",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
]);

const manifestCheck = TypeCompiler.Compile(ManifestSchema);

/**
 * One resource unit, the default per instance: a tenth of a core (a request,
 * not a ceiling: an idle app takes next to nothing and a busy one may use
 * idle CPU, docs/resources.md) and 256 MiB (reserved and enforced).
 */
export const DEFAULT_RESOURCES: Resources = { cpu: 0.1, memory: 256 * 1024 * 1024 };

/** Parses a memory quantity ("128Mi", "1G", 1048576) to bytes. */
export function parseBytes(q: number | string): number {
  if (typeof q === "number") return Math.round(q);
  const m = /^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|K|M|G)?$/.exec(q);
  if (!m) throw new Error(`not a quantity: ${q}`);
  const unit = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, K: 1e3, M: 1e6, G: 1e9 }[m[2] ?? ""] ?? 1;
  return Math.round(Number(m[1]) * unit);
}

/** CPU and memory from units of `unit` (default one), with explicit cpu or memory taking precedence. */
export function resolveResources(
  r: { units?: number; cpu?: number; cpuLimit?: number; memory?: number | string } | undefined,
  unit: Resources,
): Resources {
  const units = r?.units ?? 1;
  return {
    cpu: r?.cpu ?? unit.cpu * units,
    memory: r?.memory !== undefined ? parseBytes(r.memory) : Math.round(unit.memory * units),
    ...(r?.cpuLimit !== undefined ? { cpuLimit: r.cpuLimit } : {}),
  };
}

/** Fills in defaults: the normalised spec a release stores. */
export function normalizeService(
  app: string,
  name: string,
  s: ServiceManifest,
  fallbackCommand: string | undefined,
  unit: Resources = DEFAULT_RESOURCES,
): ServiceSpec {
  const command = s.command ?? fallbackCommand;
  if (!command) {
    throw new HerdError("invalid", `service ${name} has no command`, [
      {
        field: `services.${name}.command`,
        message: "required (no package.json start script or Procfile entry to fall back on)",
      },
    ]);
  }
  const routes = (s.routes ?? (name === "web" ? [{ host: `${app}.localhost` }] : [])).map(
    (r): Route => ({
      host: r.host,
      path: r.path ?? "/",
      ...(r.match ? { match: r.match } : {}),
      ...(r.methods ? { methods: r.methods } : {}),
      ...(r.headers
        ? { headers: Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k.toLowerCase(), v])) }
        : {}),
      ...(r.rewrite ? { rewrite: r.rewrite } : {}),
      ...(r.priority ? { priority: r.priority } : {}),
      ...(r.mirror ? { mirror: { service: r.mirror.service, percent: r.mirror.percent ?? 100 } } : {}),
      ...(r.split
        ? {
            split: {
              to: r.split.to.map((t) => ({ service: t.service, weight: t.weight })),
              ...(r.split.sticky ? { sticky: stickySpec(r.split.sticky) } : {}),
            },
          }
        : {}),
      ...(r.cors
        ? {
            cors: {
              origins: r.cors.origins,
              methods: r.cors.methods ?? ["GET", "HEAD", "POST"],
              headers: r.cors.headers ?? [],
              exposeHeaders: r.cors.exposeHeaders ?? [],
              credentials: r.cors.credentials ?? false,
              maxAge: r.cors.maxAge ?? 600,
            },
          }
        : {}),
      ...(r.fallback
        ? {
            fallback: {
              status: r.fallback.status ?? 200,
              body: r.fallback.body,
              contentType: r.fallback.contentType ?? "text/plain; charset=utf-8",
            },
          }
        : {}),
      ...(r.aggregate ? { aggregate: aggregateSpec(r.aggregate) } : {}),
      ...(r.balance && r.balance !== "round_robin" ? { balance: balanceSpec(r.balance) } : {}),
      ...(r.timeouts ? { timeouts: routeTimeouts(r.timeouts) } : {}),
      ...(r.rateLimit
        ? {
            rateLimit: {
              rate: r.rateLimit.rate,
              burst: r.rateLimit.burst ?? Math.max(1, Math.ceil(r.rateLimit.rate)),
              per: r.rateLimit.per ?? "route",
            },
          }
        : {}),
      ...(r.auth ? { auth: authSpec(r.auth) } : {}),
    }),
  );
  const resources = resolveResources(s.resources, unit);
  if (resources.cpuLimit !== undefined && resources.cpuLimit < resources.cpu - 1e-9) {
    const field = `services.${name}.resources.cpuLimit`;
    const message = `${resources.cpuLimit} is below the CPU request ${resources.cpu}: a ceiling must be at least the request`;
    throw new HerdError("invalid", `${field}: ${message}`, [{ field, message }]);
  }
  const autoscale = s.autoscale ? normalizeAutoscale(s.autoscale) : undefined;
  // With autoscale, `instances` is the count a first deploy starts with, inside [min, max].
  const instances = s.instances ?? 1;
  return {
    command,
    instances: autoscale ? Math.min(autoscale.max, Math.max(autoscale.min, instances)) : instances,
    ...(autoscale ? { autoscale } : {}),
    resources,
    ...(s.resources?.units !== undefined ? { units: s.resources.units } : {}),
    ...(s.placement ? { placement: normalizePlacement(name, s.placement) } : {}),
    ...(s.minAvailable !== undefined ? { minAvailable: s.minAvailable } : {}),
    ...rolloutOf(s.rollout),
    health: {
      // A service nobody routes to (a worker) need not listen: it is healthy when it stays up.
      // `tcp: true` asks for the port check anyway (a service reached only through aggregations or splits).
      kind: s.health?.path
        ? "http"
        : s.health?.tcp === false || (routes.length === 0 && s.health?.tcp !== true)
          ? "process"
          : "tcp",
      path: s.health?.path,
      intervalMs: Math.round((s.health?.interval ?? 1) * 1000),
      timeoutMs: Math.round((s.health?.timeout ?? 2) * 1000),
      failures: s.health?.failures ?? 3,
      startupMs: Math.round((s.health?.startup ?? 30) * 1000),
    },
    mode: s.mode ?? "cattle",
    env: Object.fromEntries(
      Object.entries(s.env ?? {}).flatMap(([k, v]) => (typeof v === "object" ? [] : [[k, String(v)]])),
    ),
    ...secretEnv(s.env),
    routes,
    ...(s.criticality && s.criticality !== "normal" ? { criticality: s.criticality } : {}),
    ...(s.config && s.config.onChange !== "file" ? { config: { onChange: s.config.onChange } } : {}),
    ...(s.concurrency ? { concurrency: s.concurrency } : {}),
    ...(s.dependsOn?.length ? { dependsOn: s.dependsOn } : {}),
    ...(s.outlier
      ? {
          outlier: {
            failures: s.outlier.failures ?? 5,
            ejectionMs: Math.round((s.outlier.ejection ?? 30) * 1000),
            maxShare: s.outlier.maxShare ?? 0.5,
          },
        }
      : {}),
    ...(s.probe
      ? {
          probe: {
            path: s.probe.path ?? s.health?.path ?? "/",
            intervalMs: Math.round((s.probe.interval ?? 5) * 1000),
            timeoutMs: Math.round((s.probe.timeout ?? 1) * 1000),
            unhealthyAfter: s.probe.unhealthyAfter ?? 2,
            healthyAfter: s.probe.healthyAfter ?? 2,
          },
        }
      : {}),
    ...(s.breaker
      ? { breaker: { failures: s.breaker.failures ?? 5, openMs: Math.round((s.breaker.open ?? 5) * 1000) } }
      : {}),
    ...normalizeJobs(`services.${name}`, s),
  };
}

/** `rollout:` normalised (rolloutProblems checked it); nothing when it sets nothing. */
function rolloutOf(r: ServiceManifest["rollout"]): Pick<ServiceSpec, "rollout"> {
  const rollout = normalizeRollout(r);
  return rollout ? { rollout } : {};
}

/** `secrets: { VAR: secret }` for the env variables that refer to a secret; nothing when none does. */
function secretEnv(env: ServiceManifest["env"]): { secrets?: Record<string, string> } {
  const refs = Object.entries(env ?? {}).flatMap(([k, v]) => (typeof v === "object" ? [[k, v.secret]] : []));
  return refs.length > 0 ? { secrets: Object.fromEntries(refs) } : {};
}

/** Every secret the services' env refers to, by name. */
export function referencedSecrets(services: Record<string, Pick<ServiceSpec, "secrets">>): string[] {
  const names = new Set<string>();
  for (const spec of Object.values(services))
    for (const name of Object.values(spec.secrets ?? {})) names.add(name);
  return [...names].sort();
}

/**
 * The env variables that refer to a secret the app does not have: one
 * problem each, naming the variable's field and the secret.
 */
export function missingSecrets(
  app: string,
  services: Record<string, Pick<ServiceSpec, "secrets">>,
  has: (secret: string) => boolean,
): FieldProblem[] {
  const problems: FieldProblem[] = [];
  for (const [service, spec] of Object.entries(services)) {
    for (const [variable, secret] of Object.entries(spec.secrets ?? {})) {
      if (has(secret)) continue;
      problems.push({
        field: `services.${service}.env.${variable}`,
        message: `secret ${secret} is not set for app ${app} (herd secrets set ${secret} --app ${app})`,
      });
    }
  }
  return problems;
}

/** Validates an already-parsed manifest object; problems name the field. */
export function validateManifest(
  value: unknown,
  file = "herd.yaml",
  lineOf?: (path: string[]) => number | undefined,
): Manifest {
  if (manifestCheck.Check(value)) {
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
  for (const e of manifestCheck.Errors(value)) {
    const path = e.path.split("/").filter(Boolean).map(unescapePointer);
    const field = path.join(".") || "(root)";
    if (seen.has(field)) continue;
    seen.add(field);
    details.push({ field, message: describeError(e.message, e.schema, e.value), line: lineOf?.(path) });
  }
  const first = details[0];
  const where = first.line ? `${file}:${first.line}` : file;
  throw new HerdError("invalid", `${where}: ${first.field}: ${first.message}`, details);
}

/** The largest herd.yaml accepted: a manifest, not a place for data. */
export const MAX_MANIFEST_BYTES = 256 * 1024;

/** Parses herd.yaml text. Errors carry the file, the field and the line. */
export function parseManifest(text: string, file = "herd.yaml"): Manifest {
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
  const lineOf = (path: string[]): number | undefined => {
    // Walk down as far as the path exists; report the deepest node found.
    let node: unknown = doc.contents;
    let pos: number | undefined = (node as { range?: number[] })?.range?.[0];
    for (const part of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === part);
        if (!pair) break;
        pos = (pair.key as { range?: number[] }).range?.[0] ?? pos;
        node = pair.value;
        if ((node as { range?: number[] })?.range && path[path.length - 1] === part)
          pos = (node as { range: number[] }).range[0];
      } else if (isSeq(node)) {
        node = node.items[Number(part)];
        pos = (node as { range?: number[] })?.range?.[0] ?? pos;
      } else break;
    }
    return pos === undefined ? undefined : lines.linePos(pos).line;
  };
  return validateManifest(doc.toJS(), file, lineOf);
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

/** Two services (or one twice) declaring the same route is an error: the gateway could serve only one. */
function checkRouteClashes(m: Manifest, file: string, lineOf?: (path: string[]) => number | undefined): void {
  const seen = new Map<string, string>();
  for (const [name, service] of Object.entries(m.services)) {
    (service.routes ?? []).forEach((r, n) => {
      const id = routeIdentity({ ...r, path: r.path ?? "/" });
      const field = `services.${name}.routes.${n}`;
      const first = seen.get(id);
      if (first === undefined) {
        seen.set(id, field);
        return;
      }
      const line = lineOf?.(["services", name, "routes", String(n)]);
      throw new HerdError(
        "conflict",
        `${line ? `${file}:${line}` : file}: ${field}: the same route as ${first}`,
        [{ field, message: `the same route as ${first}`, line }],
      );
    });
  }
}

function authSpec(a: Static<typeof RouteAuthSchema>): AuthSpec {
  return {
    ...(a.apiKey
      ? {
          apiKey: {
            header: (a.apiKey.header ?? "x-api-key").toLowerCase(),
            ...(a.apiKey.query ? { query: a.apiKey.query } : {}),
            hideCredentials: a.apiKey.hideCredentials ?? false,
          },
        }
      : {}),
    ...(a.jwt
      ? {
          jwt: {
            ...(a.jwt.jwks ? { jwks: a.jwt.jwks } : {}),
            ...(a.jwt.issuer ? { issuer: a.jwt.issuer } : {}),
            ...(a.jwt.audience ? { audience: a.jwt.audience } : {}),
            claim: a.jwt.claim ?? "sub",
            hideCredentials: a.jwt.hideCredentials ?? false,
          },
        }
      : {}),
  };
}

function routeTimeouts(t: { connect?: number; request?: number; idle?: number }): RouteTimeouts {
  const ms = (seconds: number) => Math.round(seconds * 1000);
  return {
    ...(t.connect !== undefined ? { connectMs: ms(t.connect) } : {}),
    ...(t.request !== undefined ? { requestMs: ms(t.request) } : {}),
    ...(t.idle !== undefined ? { idleMs: ms(t.idle) } : {}),
  };
}

function balanceSpec(b: NonNullable<Manifest["services"][string]["routes"]>[number]["balance"]): BalanceSpec {
  if (b === undefined || b === "round_robin") return { kind: "round_robin" };
  if (b === "least_request") return { kind: "least_request" };
  return { kind: "hash", ...stickySpec(b.hash) };
}

function stickySpec(key: Static<typeof StickyKey>): StickySpec {
  if (key === "ip") return { on: "ip" };
  return "header" in key
    ? { on: "header", name: key.header.toLowerCase() }
    : { on: "cookie", name: key.cookie };
}

/** A split names services of the same herd.yaml, and its shares add up to at most 100 %. */
function checkSplits(m: Manifest, file: string, lineOf?: (path: string[]) => number | undefined): void {
  for (const [name, service] of Object.entries(m.services)) {
    placementServices(service.placement).forEach((target) => {
      if (target in m.services) return;
      const kind = service.placement?.affinity?.some((t) => t.service === target)
        ? "affinity"
        : "antiAffinity";
      const list = service.placement?.[kind] ?? [];
      const i = list.findIndex((t) => t.service === target);
      const path = ["services", name, "placement", kind, String(i), "service"];
      const field = path.join(".");
      const line = lineOf?.(path);
      const message = `no service ${target} in this herd.yaml`;
      throw new HerdError("invalid", `${line ? `${file}:${line}` : file}: ${field}: ${message}`, [
        { field, message, line },
      ]);
    });
    (service.routes ?? []).forEach((r, n) => {
      if (r.mirror && (!(r.mirror.service in m.services) || r.mirror.service === name)) {
        const field = `services.${name}.routes.${n}.mirror.service`;
        const line = lineOf?.(["services", name, "routes", String(n), "mirror", "service"]);
        const message =
          r.mirror.service === name
            ? "is this route's own service"
            : `no service ${r.mirror.service} in this herd.yaml`;
        throw new HerdError("invalid", `${line ? `${file}:${line}` : file}: ${field}: ${message}`, [
          { field, message, line },
        ]);
      }
      if (!r.split) return;
      const where = (path: string[]) => {
        const line = lineOf?.(["services", name, "routes", String(n), "split", ...path]);
        return { field: ["services", name, "routes", n, "split", ...path].join("."), line };
      };
      r.split.to.forEach((t, i) => {
        if (!(t.service in m.services) || t.service === name) {
          const at = where(["to", String(i), "service"]);
          const message =
            t.service === name ? "is this route's own service" : `no service ${t.service} in this herd.yaml`;
          throw new HerdError(
            "invalid",
            `${at.line ? `${file}:${at.line}` : file}: ${at.field}: ${message}`,
            [{ ...at, message }],
          );
        }
      });
      const total = r.split.to.reduce((sum, t) => sum + t.weight, 0);
      if (total > 100) {
        const at = where(["to"]);
        const message = `the weights add up to ${total}, more than 100`;
        throw new HerdError("invalid", `${at.line ? `${file}:${at.line}` : file}: ${at.field}: ${message}`, [
          { ...at, message },
        ]);
      }
    });
  }
}

type AggregateManifest = NonNullable<NonNullable<ServiceManifest["routes"]>[number]["aggregate"]>;

function aggregateSpec(a: AggregateManifest): AggregateSpec {
  const timeout = a.timeout ?? 1;
  return {
    headers: (a.headers ?? DEFAULT_AGGREGATE_HEADERS).map((h) => h.toLowerCase()),
    parts: Object.entries(a.parts).map(([name, p]) => ({
      name,
      service: p.service,
      path: p.path,
      query: p.query ?? false,
      timeoutMs: Math.round((p.timeout ?? timeout) * 1000),
    })),
  };
}

/**
 * An aggregation's parts name services of the same herd.yaml, it forwards no
 * header the gateway owns, and it does not mix with what needs one upstream
 * service (split, mirror, rewrite) or with methods other than GET and HEAD.
 */
function checkAggregates(m: Manifest, file: string, lineOf?: (path: string[]) => number | undefined): void {
  for (const [name, service] of Object.entries(m.services)) {
    (service.routes ?? []).forEach((r, n) => {
      const a = r.aggregate;
      if (!a) return;
      const fail = (path: string[], message: string): never => {
        const parts = ["services", name, "routes", String(n), ...path];
        const field = parts.join(".");
        const line = lineOf?.(parts);
        throw new HerdError("invalid", `${line ? `${file}:${line}` : file}: ${field}: ${message}`, [
          { field, message, line },
        ]);
      };
      for (const other of ["split", "mirror", "rewrite"] as const) {
        if (r[other] !== undefined) {
          fail(
            ["aggregate"],
            `cannot be combined with ${other} (an aggregation calls its parts, not one service)`,
          );
        }
      }
      const methods = r.methods?.filter((x) => x !== "GET" && x !== "HEAD") ?? [];
      if (methods.length > 0)
        fail(["methods"], `an aggregation answers only GET and HEAD, not ${methods[0]}`);
      (a.headers ?? []).forEach((h, i) => {
        if (UNFORWARDABLE.has(h.toLowerCase())) {
          fail(["aggregate", "headers", String(i)], `${h} is set by the gateway and cannot be forwarded`);
        }
      });
      for (const [part, p] of Object.entries(a.parts)) {
        if (!(p.service in m.services)) {
          fail(["aggregate", "parts", part, "service"], `no service ${p.service} in this herd.yaml`);
        }
      }
    });
  }
}
