/**
 * One service of herd.yaml: its schema and normalizeService, which fills in
 * the defaults a release stores (ServiceSpec in service-spec.ts).
 */

import { type Static, Type as T } from "@sinclair/typebox";
import { type FieldProblem, HerdError } from "../common/errors.ts";
import { AutoscaleManifestSchema, normalizeAutoscale } from "./autoscale.ts";
import { DependsOnSchema } from "./dependencies.ts";
import { JobManifestSchema, normalizeJobs, ReleaseManifestSchema } from "./job.ts";
import { Name, Quantity, SecretName } from "./manifest-fields.ts";
import { normalizeRoute, RouteSchema } from "./manifest-route.ts";
import type { Resources } from "./objects.ts";
import { normalizePlacement, PlacementSchema } from "./placement.ts";
import { normalizeRollout, RolloutManifestSchema } from "./rollout-manifest.ts";
import { Seconds, secondsMs } from "./seconds.ts";
import { ENV_NAME, IMAGE_REF, type ServiceSpec } from "./service-spec.ts";

export const ServiceManifestSchema = T.Object(
  {
    command: T.Optional(T.String({ minLength: 1 })),
    image: T.Optional(
      T.String({
        pattern: IMAGE_REF.source,
        description: "a container image its instances run (runtime docker; docs/containers.md)",
      }),
    ),
    runtime: T.Optional(
      T.Union([T.Literal("process"), T.Literal("docker")], {
        description: "the runtime driver its instances run on (default process; docker with `image`)",
      }),
    ),
    user: T.Optional(
      T.Union([T.Literal("tenant"), T.Literal("image")], {
        description:
          "who a container runs as: tenant (default; the tenant's unprivileged uid) or image (the image's own user, root when it names none; only in a tenant a platform admin allowed)",
      }),
    ),
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
          memoryLimit: T.Optional(Quantity),
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
          interval: T.Optional(
            Seconds({ minimum: 0.05, maximum: 300, description: "time between two checks (default 1s)" }),
          ),
          timeout: T.Optional(
            Seconds({ minimum: 0.05, maximum: 300, description: "how long a check may take (default 2s)" }),
          ),
          failures: T.Optional(T.Integer({ minimum: 1, maximum: 100 })),
          startup: T.Optional(
            Seconds({
              minimum: 1,
              maximum: 3600,
              description: "how long a new instance has to pass its first check (default 30s)",
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    mode: T.Optional(T.Union([T.Literal("cattle"), T.Literal("pet")], { description: "cattle or pet" })),
    env: T.Optional(
      T.Record(
        T.String({ pattern: ENV_NAME.source }),
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
    metrics: T.Optional(
      T.Object(
        {
          path: T.String({
            pattern: "^/[^\\s?#]*$",
            maxLength: 200,
            description: "the path its instances serve Prometheus metrics at, e.g. /metrics",
          }),
        },
        {
          additionalProperties: false,
          description:
            "a Prometheus metrics endpoint: service discovery (/prom/sd) lists its instances only when this is set",
        },
      ),
    ),
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
            Seconds({
              minimum: 0.1,
              maximum: 3600,
              description: "how long an instance is out the first time, longer each time (default 30s)",
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
            Seconds({
              minimum: 0.05,
              maximum: 300,
              description: "time between two probes of an instance (default 5s)",
            }),
          ),
          timeout: T.Optional(
            Seconds({
              minimum: 0.05,
              maximum: 60,
              description: "how long a probe may take before it counts as failed (default 1s)",
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
            Seconds({
              minimum: 0.1,
              maximum: 600,
              description: "how long it stays open at first (default 5s)",
            }),
          ),
        },
        { additionalProperties: false, description: "circuit breaker in front of the service's instances" },
      ),
    ),
  },
  { additionalProperties: false },
);

export type ServiceManifest = Static<typeof ServiceManifestSchema>;

/**
 * One resource unit, the default per instance: a tenth of a core (a request,
 * not a ceiling: an idle app takes next to nothing and a busy one may use
 * idle CPU, docs/resources.md) and 128 MiB (reserved; a small Node app uses
 * about half of it).
 */
export const DEFAULT_RESOURCES: Resources = { cpu: 0.1, memory: 128 * 1024 * 1024 };

/**
 * A service that does not say how much memory it needs may burst to this many
 * times its request while the node has room (its hard limit), and is evicted
 * first when the node runs short. One that sets `memory` gets that as its limit.
 */
export const DEFAULT_MEMORY_BURST = 2;

/** Parses a memory quantity ("128Mi", "1G", 1048576) to bytes. */
export function parseBytes(q: number | string): number {
  if (typeof q === "number") return Math.round(q);
  const m = /^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|K|M|G)?$/.exec(q);
  if (!m) throw new Error(`not a quantity: ${q}`);
  const unit = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, K: 1e3, M: 1e6, G: 1e9 }[m[2] ?? ""] ?? 1;
  return Math.round(Number(m[1]) * unit);
}

/**
 * CPU and memory from units of `unit` (default one), with explicit cpu or
 * memory taking precedence. Memory from units may burst to DEFAULT_MEMORY_BURST
 * times the request; an explicit `memory` is its own limit unless
 * `memoryLimit` says otherwise.
 */
export function resolveResources(
  r:
    | {
        units?: number;
        cpu?: number;
        cpuLimit?: number;
        memory?: number | string;
        memoryLimit?: number | string;
      }
    | undefined,
  unit: Resources,
): Resources {
  const units = r?.units ?? 1;
  const memory = r?.memory !== undefined ? parseBytes(r.memory) : Math.round(unit.memory * units);
  const memoryLimit =
    r?.memoryLimit !== undefined
      ? parseBytes(r.memoryLimit)
      : r?.memory === undefined
        ? memory * DEFAULT_MEMORY_BURST
        : undefined;
  return {
    cpu: r?.cpu ?? unit.cpu * units,
    memory,
    ...(r?.cpuLimit !== undefined ? { cpuLimit: r.cpuLimit } : {}),
    ...(memoryLimit !== undefined && memoryLimit !== memory ? { memoryLimit } : {}),
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
  if (s.image && s.runtime === "process") {
    const field = `services.${name}.runtime`;
    const message = "an image runs on the docker runtime: leave runtime out or set it to docker";
    throw new HerdError("invalid", `${field}: ${message}`, [{ field, message }]);
  }
  const runtime = s.image || s.runtime === "docker" ? "docker" : undefined;
  if (s.user === "image" && !runtime) {
    const field = `services.${name}.user`;
    const message = "image: only a container has an image's user; set image, or runtime: docker";
    throw new HerdError("invalid", `${field}: ${message}`, [{ field, message }]);
  }
  // An image brings its own command (the release dir's fallback is not for it); on docker without
  // one, an empty command is the CMD of the release dir's Dockerfile (agent/docker-driver.ts).
  const command = s.image ? (s.command ?? "") : (s.command ?? fallbackCommand ?? (runtime ? "" : undefined));
  if (command === undefined) {
    throw new HerdError("invalid", `service ${name} has no command`, [
      {
        field: `services.${name}.command`,
        message: "required (no package.json start script or Procfile entry to fall back on)",
      },
    ]);
  }
  const routes = (s.routes ?? (name === "web" ? [{ host: `${app}.localhost` }] : [])).map(normalizeRoute);
  const resources = resolveResources(s.resources, unit);
  if (resources.cpuLimit !== undefined && resources.cpuLimit < resources.cpu - 1e-9) {
    const field = `services.${name}.resources.cpuLimit`;
    const message = `${resources.cpuLimit} is below the CPU request ${resources.cpu}: a ceiling must be at least the request`;
    throw new HerdError("invalid", `${field}: ${message}`, [{ field, message }]);
  }
  if (resources.memoryLimit !== undefined && resources.memoryLimit < resources.memory) {
    const field = `services.${name}.resources.memoryLimit`;
    const message = `${s.resources?.memoryLimit} is below the memory request ${s.resources?.memory ?? resources.memory}: a limit must be at least the request`;
    throw new HerdError("invalid", `${field}: ${message}`, [{ field, message }]);
  }
  const autoscale = s.autoscale ? normalizeAutoscale(s.autoscale) : undefined;
  // With autoscale, `instances` is the count a first deploy starts with, inside [min, max].
  const instances = s.instances ?? 1;
  return {
    command,
    ...(s.image ? { image: s.image } : {}),
    ...(runtime ? { runtime } : {}),
    ...(s.user === "image" ? { user: "image" as const } : {}),
    instances: autoscale ? Math.min(autoscale.max, Math.max(autoscale.min, instances)) : instances,
    ...(autoscale ? { autoscale } : {}),
    resources,
    ...(s.resources?.units !== undefined ? { units: s.resources.units } : {}),
    ...(s.placement ? { placement: normalizePlacement(name, s.placement) } : {}),
    ...(s.minAvailable !== undefined ? { minAvailable: s.minAvailable } : {}),
    ...(s.metrics ? { metrics: { path: s.metrics.path } } : {}),
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
      intervalMs: secondsMs(s.health?.interval ?? 1),
      timeoutMs: secondsMs(s.health?.timeout ?? 2),
      failures: s.health?.failures ?? 3,
      startupMs: secondsMs(s.health?.startup ?? 30),
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
            ejectionMs: secondsMs(s.outlier.ejection ?? 30),
            maxShare: s.outlier.maxShare ?? 0.5,
          },
        }
      : {}),
    ...(s.probe
      ? {
          probe: {
            path: s.probe.path ?? s.health?.path ?? "/",
            intervalMs: secondsMs(s.probe.interval ?? 5),
            timeoutMs: secondsMs(s.probe.timeout ?? 1),
            unhealthyAfter: s.probe.unhealthyAfter ?? 2,
            healthyAfter: s.probe.healthyAfter ?? 2,
          },
        }
      : {}),
    ...(s.breaker
      ? { breaker: { failures: s.breaker.failures ?? 5, openMs: secondsMs(s.breaker.open ?? 5) } }
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
