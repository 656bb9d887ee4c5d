/**
 * Run-time schemas of what the API accepts. Fastify compiles them when routes
 * are registered; @fastify/swagger turns them into the OpenAPI document.
 */

import { Type as T } from "@sinclair/typebox";
import { NAME_PATTERN } from "../model/manifest.ts";
import { KINDS, type Kind } from "../model/objects.ts";
import { PROBE_ATTEMPTS_KEPT, SAFE_INSTANCE_ID } from "../model/protocol.ts";
import { DEADLINE_HELP, DEADLINE_PATTERN } from "../model/rollout.ts";

export const Name = T.String({
  pattern: NAME_PATTERN,
  description: "lowercase letters, digits and dashes, starting with a letter",
});

export const TenantQuery = T.Object({ tenant: T.Optional(Name) });
/** A tenant and an optional expected revision, for writes with optimistic concurrency. */
export const RevisionQuery = T.Object({
  tenant: T.Optional(Name),
  revision: T.Optional(
    T.Integer({
      minimum: 0,
      description:
        "optimistic concurrency: 409 unless the object is at this revision (0: must not exist yet)",
    }),
  ),
});
/** A deploy's querystring: the tenant and the rollout's progress deadline. */
export const DeployQuery = T.Object({
  tenant: T.Optional(Name),
  deadline: T.Optional(
    T.String({
      pattern: DEADLINE_PATTERN,
      description: `the rollout's progress deadline, over herd.yaml's: ${DEADLINE_HELP}`,
    }),
  ),
});
/** The querystring of TenantQuery or RevisionQuery, as read. */
export type TenantQ = { tenant?: string; revision?: number };
/**
 * The tenant a request acts in: resolved by the permission check from the
 * token and `?tenant=` (only a platform admin or a member may name one).
 */
export const tenantOf = (req: { herd: { tenant?: string } }): string => {
  if (!req.herd.tenant) throw new Error("tenantOf: the route's permission is not tenant-scoped");
  return req.herd.tenant;
};
/**
 * The tenant a telemetry read is limited to: the request's, except a platform
 * admin who names none sees every tenant's (undefined).
 */
export const telemetryTenant = (req: {
  herd: { tenant?: string; principal: { admin: boolean } };
  query: unknown;
}): string | undefined =>
  req.herd.principal.admin && (req.query as { tenant?: string }).tenant === undefined
    ? undefined
    : tenantOf(req);
export const DestroyQuery = T.Object({
  tenant: T.Optional(Name),
  revision: T.Optional(T.Integer({ minimum: 1, description: "409 unless the app is at this revision" })),
});
export const AppParams = T.Object({ app: Name });

export const ErrorReply = T.Object(
  {
    code: T.String(),
    message: T.String(),
    details: T.Optional(
      T.Array(T.Object({ field: T.String(), message: T.String(), line: T.Optional(T.Integer()) })),
    ),
  },
  { $id: "Error", description: "Every error: a stable code, a message for people, and the fields at fault" },
);

export const CreateAppBody = T.Object({ name: Name }, { additionalProperties: false });

export const ScaleBody = T.Object(
  {
    services: T.Record(
      Name,
      T.Integer({ minimum: 0, maximum: 1000, description: "a whole number of instances, 0 to 1000" }),
      {
        minProperties: 1,
      },
    ),
    revisions: T.Optional(
      T.Record(Name, T.Integer({ minimum: 1 }), {
        description:
          "optimistic concurrency: the service revisions (from GET /apps/{app}) this change is based on; 409 when one is stale",
      }),
    ),
  },
  { additionalProperties: false },
);

export const RollbackBody = T.Object(
  { version: T.Optional(T.Integer({ minimum: 1 })) },
  { additionalProperties: false },
);

export const RestartBody = T.Object(
  {
    services: T.Optional(
      T.Array(Name, { maxItems: 100, description: "the services to restart; absent or empty: all of them" }),
    ),
  },
  { additionalProperties: false },
);

/** A string from a fixed list: one clear error ("must be one of a, b, c") when it is not. */
export const OneOf = <V extends string>(values: readonly V[], description?: string) =>
  T.Unsafe<V>({ type: "string", enum: values, ...(description ? { description } : {}) });

const LogLevelParam = OneOf(
  ["trace", "debug", "info", "warn", "error", "fatal"],
  "this level and above (entries without a level are left out)",
);

/** Filters of every log read: list, NDJSON follow and SSE. */
const LogFilters = {
  tenant: T.Optional(Name),
  service: T.Optional(Name),
  instance: T.Optional(T.String({ maxLength: 100 })),
  stream: T.Optional(OneOf(["stdout", "stderr", "event"], "stdout, stderr, or event (platform events)")),
  level: T.Optional(LogLevelParam),
  text: T.Optional(
    T.String({ minLength: 1, maxLength: 200, description: "substring of the line, any case" }),
  ),
  tail: T.Optional(T.Integer({ minimum: 0, maximum: 10000 })),
  after: T.Optional(T.Integer({ minimum: 0, description: "cursor: the seq of the last entry seen" })),
  since: T.Optional(
    T.String({
      minLength: 1,
      maxLength: 40,
      description: "an RFC 3339 time, or a duration back from now (10m, 2h)",
    }),
  ),
  follow: T.Optional(T.Boolean()),
};

export const LogsQuery = T.Object(LogFilters);

/** The tenant-wide stream: every app's entries and the platform's events. */
export const AllLogsQuery = T.Object({ ...LogFilters, app: T.Optional(Name) });

export const EventsQuery = T.Object({
  tenant: T.Optional(Name),
  app: T.Optional(Name),
  limit: T.Optional(T.Integer({ minimum: 1, maximum: 2000 })),
});

const Resources = T.Object({ cpu: T.Number({ minimum: 0 }), memory: T.Number({ minimum: 0 }) });

const Isolation = T.Object({
  cgroups: T.Union([T.Literal("v1"), T.Literal("v2"), T.Literal("none")]),
  reason: T.Optional(T.String({ maxLength: 1000 })),
  sandbox: T.Optional(T.Union([T.Literal("uid"), T.Literal("none")])),
  network: T.Optional(T.Union([T.Literal("nftables"), T.Literal("none")])),
  missing: T.Optional(T.Array(T.String({ maxLength: 1000 }), { maxItems: 10 })),
});

export const HeartbeatBody = T.Object({
  address: T.String({ minLength: 1, maxLength: 255 }),
  labels: T.Record(T.String({ maxLength: 63 }), T.String({ maxLength: 255 })),
  capacity: Resources,
  allocatable: T.Optional(Resources),
  cpuOvercommit: T.Optional(T.Number({ minimum: 1, maximum: 100 })),
  taints: T.Optional(
    T.Array(
      T.Object({
        key: T.String({ minLength: 1, maxLength: 63 }),
        value: T.Optional(T.String({ maxLength: 63 })),
      }),
      {
        maxItems: 50,
      },
    ),
  ),
  agentVersion: T.String({ maxLength: 50 }),
  metricsUrl: T.Optional(T.String({ format: "uri", pattern: "^https?://", maxLength: 500 })),
  slugs: T.Optional(T.Array(T.String({ pattern: "^[0-9a-f]{64}$" }), { maxItems: 1000 })),
  volumes: T.Optional(T.Array(T.String({ pattern: SAFE_INSTANCE_ID.source }), { maxItems: 10_000 })),
  drivers: T.Optional(T.Array(T.Literal("docker"), { maxItems: 1 })),
  isolation: Isolation,
  driverIsolation: T.Optional(T.Object({ docker: T.Optional(Isolation) }, { additionalProperties: false })),
  instancePorts: T.Optional(
    T.Object({
      min: T.Integer({ minimum: 1, maximum: 65535 }),
      max: T.Integer({ minimum: 1, maximum: 65535 }),
    }),
  ),
  peersVersion: T.Optional(T.String({ maxLength: 100 })),
  instances: T.Array(
    T.Object({
      id: T.String({ maxLength: 100 }),
      generation: T.Integer({ minimum: 0 }),
      state: T.Union(
        ["starting", "up", "healthy", "unhealthy", "exited", "stopped", "failed"].map((s) => T.Literal(s)),
      ),
      port: T.Optional(T.Integer({ minimum: 1, maximum: 65535 })),
      pid: T.Optional(T.Integer({ minimum: 1 })),
      configVersion: T.Optional(T.Integer({ minimum: 0 })),
      // One type list, not anyOf: Ajv's coercion would turn null into 0 and "" in an anyOf's first
      // branch, and an unknown exit would read "exited with code 0".
      exitCode: T.Optional(T.Unsafe<number | null>({ type: ["integer", "null"] })),
      signal: T.Optional(T.Unsafe<string | null>({ type: ["string", "null"], maxLength: 20 })),
      oomKilled: T.Optional(T.Boolean()),
      evicted: T.Optional(T.String({ maxLength: 1000 })),
      message: T.Optional(T.String()),
      logTail: T.Optional(T.Array(T.String())),
      startedAt: T.Optional(T.String()),
      usage: T.Optional(
        T.Object({
          cpuSeconds: T.Optional(T.Number({ minimum: 0 })),
          cpuCores: T.Optional(T.Number({ minimum: 0 })),
          cpuWaitShare: T.Optional(T.Number({ minimum: 0, maximum: 1 })),
          memoryBytes: T.Optional(T.Number({ minimum: 0 })),
        }),
      ),
      probes: T.Optional(
        T.Array(
          T.Object({
            attempt: T.Integer({ minimum: 1 }),
            count: T.Integer({ minimum: 1 }),
            firstAt: T.String({ format: "date-time", maxLength: 40 }),
            lastAt: T.String({ format: "date-time", maxLength: 40 }),
            ok: T.Boolean(),
            message: T.String({ maxLength: 2000 }),
            status: T.Optional(T.Integer({ minimum: 0, maximum: 999 })),
            body: T.Optional(T.String({ maxLength: 1000 })),
            logTail: T.Optional(T.Array(T.String({ maxLength: 1000 }), { maxItems: 20 })),
          }),
          { maxItems: PROBE_ATTEMPTS_KEPT, description: "the instance's recent health-check outcomes" },
        ),
      ),
    }),
    { maxItems: 10000 },
  ),
  stats: T.Optional(
    T.Object(
      {
        cpuSeconds: T.Optional(
          T.Record(T.String({ pattern: "^[a-z_]{1,20}$" }), T.Number({ minimum: 0 }), {
            maxProperties: 20,
            description: "CPU seconds since boot over all cores, by mode (user, system, idle, …)",
          }),
        ),
        memory: T.Optional(
          T.Object({ totalBytes: T.Number({ minimum: 0 }), availableBytes: T.Number({ minimum: 0 }) }),
        ),
        disk: T.Optional(
          T.Object({ totalBytes: T.Number({ minimum: 0 }), freeBytes: T.Number({ minimum: 0 }) }),
        ),
        network: T.Optional(
          T.Object({ receiveBytes: T.Number({ minimum: 0 }), transmitBytes: T.Number({ minimum: 0 }) }),
        ),
        cpuBusyCores: T.Optional(T.Number({ minimum: 0 })),
      },
      { additionalProperties: false, description: "the machine's CPU, memory, disk and network" },
    ),
  ),
});

export const NodeParams = T.Object({ name: T.String({ pattern: "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$" }) });

export const LogBatchBody = T.Object({
  node: T.String({ maxLength: 63 }),
  lines: T.Array(
    T.Object({
      instance: T.String({ maxLength: 100 }),
      time: T.String({ format: "date-time", maxLength: 40 }),
      stream: OneOf(["stdout", "stderr"]),
      line: T.String({ maxLength: 65536 }),
    }),
    { maxItems: 10000 },
  ),
});

/** What gateways and admins may snapshot and watch: never tokens, users, memberships, secrets (even encrypted) or config contents. */
export const WATCHABLE: readonly Kind[] = KINDS.filter(
  (k) => k !== "token" && k !== "user" && k !== "member" && k !== "secret" && k !== "config_version",
);

export const WatchQuery = T.Object({
  kinds: T.Optional(
    T.String({
      pattern: `^(${WATCHABLE.join("|")})(,(${WATCHABLE.join("|")}))*$`,
      description: "comma-separated kinds",
    }),
  ),
  from: T.Optional(T.Integer({ minimum: 0 })),
});

export const ConsumerParams = T.Object({ name: Name });
export const CredentialParams = T.Object({
  name: Name,
  id: T.String({ pattern: "^[0-9a-z]{1,32}$", description: "the credential's id" }),
});

export const CreateConsumerBody = T.Object({ name: Name }, { additionalProperties: false });

export const JwtCredentialBody = T.Object(
  {
    key: T.Optional(
      T.String({
        pattern: "^[\\x21-\\x7e]{1,256}$",
        description: "matched against the tokens' iss claim; unique in the tenant (default: generated)",
      }),
    ),
    algorithm: T.Optional(
      T.Union([T.Literal("HS256"), T.Literal("RS256")], { description: "HS256 (default) or RS256" }),
    ),
    secret: T.Optional(
      T.String({
        minLength: 32,
        maxLength: 1024,
        description: "HS256: the shared secret, at least 32 characters (default: generated and shown once)",
      }),
    ),
    publicKey: T.Optional(
      T.String({ minLength: 1, maxLength: 16384, description: "RS256: the RSA public key in PEM" }),
    ),
  },
  { additionalProperties: false },
);
