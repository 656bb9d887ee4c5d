/**
 * The normalised form of herd.yaml's services and routes: what a release
 * stores and what controllers, agents and gateways read. The YAML schema and
 * the parser that produce it are in manifest.ts; these are the wire types.
 */

import type { JobSpec, ReleasePhaseSpec } from "./job.ts";
import type { HealthCheck, Resources } from "./objects.ts";
import type { PlacementSpec } from "./placement.ts";
import type { RolloutSpec } from "./progressive.ts";

/** A normalised route: which requests reach a service, and how their path is rewritten. */
export interface Route {
  host: string;
  path: string;
  match?: "prefix" | "exact";
  /** Only these methods (absent: any). */
  methods?: string[];
  /** Only requests with these headers at exactly these values; names lowercase. */
  headers?: Record<string, string>;
  /** Replaces the matched path prefix before forwarding. */
  rewrite?: string;
  priority?: number;
  /** Token bucket: `rate` requests a second, `burst` at once, for the whole route or per client address. */
  rateLimit?: RateLimitSpec;
  /** How an instance is picked; absent: round robin. */
  balance?: BalanceSpec;
  /** Degradation: the answer when the service cannot give one. */
  fallback?: { status: number; body: string; contentType: string };
  cors?: CorsSpec;
  /** Shadow copies of this route's requests (without a body) to another service; answers dropped. */
  mirror?: { service: string; percent: number };
  /** Shares of this route's requests that go to other services of the app; the rest stays. */
  split?: SplitSpec;
  /** Answered by calling several services in parallel and merging their JSON; the route's service is not called. */
  aggregate?: AggregateSpec;
  /** Credentials the route requires (API key and/or JWT); absent: open to all. */
  auth?: AuthSpec;
  /** How long the gateway waits for the service; absent fields take the gateway's defaults. */
  timeouts?: RouteTimeouts;
}

/** A route's upstream timeouts in milliseconds; each absent one is the gateway's default. */
export interface RouteTimeouts {
  /** Opening a connection to an instance. */
  connectMs?: number;
  /** From sending the request to the end of the answer. */
  requestMs?: number;
  /** Silence of the instance, before its answer's head or between body chunks. */
  idleMs?: number;
}

/** A route's authentication; a request passes with any one of the configured credentials. */
export interface AuthSpec {
  apiKey?: { header: string; query?: string; hideCredentials: boolean };
  jwt?: {
    /** An identity provider's keys; without it only consumers' own JWT credentials are accepted. */
    jwks?: { file: string } | { url: string };
    issuer?: string;
    audience?: string;
    /** The claim of a JWKS-signed token that names the consumer. */
    claim: string;
    hideCredentials: boolean;
  };
}

/** An aggregation route: its parts, called in parallel, each with its own time limit. */
export interface AggregateSpec {
  /** Client headers (lowercase names) sent to every part. */
  headers: string[];
  parts: AggregatePartSpec[];
}

/** One part of an aggregation: its answer becomes the value of `name` in the merged object. */
export interface AggregatePartSpec {
  name: string;
  /** A service of the same app. */
  service: string;
  /** The path (and query) requested from it. */
  path: string;
  /** Append the client's query string to `path`. */
  query: boolean;
  timeoutMs: number;
}

export type StickySpec = { on: "ip" } | { on: "header" | "cookie"; name: string };

export interface SplitSpec {
  to: { service: string; weight: number }[];
  /** The same client always lands on the same side; absent: an exact weighted rotation. */
  sticky?: StickySpec;
}

/** Cross-origin requests a route allows (browsers' CORS). */
export interface CorsSpec {
  origins: string[];
  methods: string[];
  headers: string[];
  exposeHeaders: string[];
  credentials: boolean;
  maxAge: number;
}

/** Load balancing: round robin, least request (power of two choices), or a consistent hash for stickiness. */
export type BalanceSpec =
  | { kind: "round_robin" }
  | { kind: "least_request" }
  | { kind: "hash"; on: "ip" }
  | { kind: "hash"; on: "header" | "cookie"; name: string };

export interface RateLimitSpec {
  rate: number;
  burst: number;
  per: "route" | "ip" | "consumer";
}

/** A service as a release stores it: every default filled in. */
export interface ServiceSpec {
  command: string;
  instances: number;
  /** Resolved with the default unit; the controller re-resolves `units` with the platform's unit size. */
  resources: Resources;
  /** Resource units asked for, when given; an explicit cpu or memory overrides its part. */
  units?: number;
  /** Where instances may run and which nodes they prefer. */
  placement?: PlacementSpec;
  /** Disruption budget: running instances a drain, a move or a rollout without room keeps; absent: all of them. */
  minAvailable?: number;
  /** Where its instances serve Prometheus metrics; absent: service discovery does not list them. */
  metrics?: { path: string };
  /**
   * How it rolls out: the progress deadline (model/rollout.ts; absent: the
   * default) and the strategy, canary or blue/green (model/progressive.ts; absent: rolling).
   */
  rollout?: RolloutSpec;
  health: HealthCheck;
  mode: "cattle" | "pet";
  /** Plain env values (not secret: stored and shown as they are). */
  env: Record<string, string>;
  /** Env variables whose values are the app's secrets: variable → secret name. */
  secrets?: Record<string, string>;
  /** Which of `secrets` herd added for the app's add-on bindings (src/addons/); replaced at each release. */
  addonSecrets?: string[];
  routes: Route[];
  /** Run once before a new release of it rolls out; a failure stops the rollout (model/job.ts). */
  release?: ReleasePhaseSpec;
  /** Scheduled jobs run with its release, env and resources (model/job.ts). */
  jobs?: Record<string, JobSpec>;
  /** Circuit breaker in the gateway in front of this service, when set. */
  breaker?: { failures: number; openMs: number };
  /** Under overload the gateway sheds low first, critical last. */
  criticality?: "critical" | "normal" | "low";
  /** A container image its instances run (docs/containers.md); `command`, when not empty, replaces the image's. */
  image?: string;
  /** The runtime driver its instances need when not the default process driver; placed only on nodes that have it. */
  runtime?: "docker";
  /**
   * image: its containers run as the image's own user (root when it names
   * none), where its tenant allows it (Tenant.allowImageUser); absent: as the
   * tenant's unprivileged uid (docs/containers.md).
   */
  user?: "image";
  /**
   * What this service needs running before it starts or moves: services of the
   * same app by name, or another app's as `app/service` (model/dependencies.ts).
   */
  dependsOn?: string[];
  /** What its instances do when their config changes (config center): file (default), signal (SIGHUP) or restart. */
  config?: { onChange: "file" | "signal" | "restart" };
  /** Most requests in flight to this service per gateway; more get 503 (or the fallback). */
  concurrency?: number;
  /** Passive outlier ejection of this service's instances, when set. */
  outlier?: { failures: number; ejectionMs: number; maxShare: number };
  /** Active health probes from the gateway to each instance, when set. */
  probe?: ProbeSpec;
  /** Automatic scaling between `min` and `max` instances, when set (controllers/autoscale). */
  autoscale?: AutoscaleSpec;
}

/** What an autoscaled service holds per instance: `value` of one of these figures. */
export type AutoscaleMetric = "rps" | "concurrency" | "cpu" | "p99" | "query";

/**
 * herd.yaml's `autoscale:` with every default filled in. `min: 0` lets the
 * service scale to zero after `idleAfterMs` without requests; the gateway then
 * holds requests and asks for an instance.
 */
export interface AutoscaleSpec {
  min: number;
  max: number;
  target: {
    metric: AutoscaleMetric;
    /** Per instance: requests/s, in-flight requests, CPU share (0.7 = 70 % of its CPU), p99 in ms, or the query's value. */
    value: number;
    /** For `metric: query`: a PromQL expression whose value divided by `value` is the instances wanted. */
    query?: string;
  };
  /** How long the figures must ask for fewer instances before the service scales in. */
  scaleDownDelayMs: number;
  /** Most instances one decision adds or removes. */
  maxStep: number;
  /** With `min: 0`: no requests for this long → no instances. */
  idleAfterMs: number;
  /** The averaging window of normal decisions (Knative's stable window, default 60 s). */
  stableWindowMs: number;
  /** The short window that answers a burst at once (default 6 s). */
  panicWindowMs: number;
}

const shortNumber = (v: number) => (Number.isInteger(v) ? String(v) : String(Number(v.toFixed(2))));

/** A target as people read it (the CLI's and the console's): "50 rps", "10 in flight", "70% CPU", "300ms p99", "5 of sum(queue)". */
export function autoscaleTargetText(t: AutoscaleSpec["target"]): string {
  switch (t.metric) {
    case "rps":
      return `${shortNumber(t.value)} rps`;
    case "concurrency":
      return `${shortNumber(t.value)} in flight`;
    case "cpu":
      return `${shortNumber(t.value * 100)}% CPU`;
    case "p99":
      return `${shortNumber(t.value)}ms p99`;
    case "query":
      return `${shortNumber(t.value)} of ${t.query}`;
  }
}

/** The gateway's active health probe of a service's instances: GET `path`, 2xx or 3xx passes. */
export interface ProbeSpec {
  path: string;
  intervalMs: number;
  timeoutMs: number;
  /** Failed probes in a row that take an instance out of the rotation. */
  unhealthyAfter: number;
  /** Passed probes in a row that bring a down instance back. */
  healthyAfter: number;
}

/**
 * A container image reference: `name[:tag][@digest]`, with a registry host and path parts
 * (`localhost:5000/team/app:1`). No `..` or empty part, which no image name has: the agent puts
 * the reference into Docker API paths (/images/REF/json), where they would reach other endpoints.
 */
/** An environment variable's name as a shell can use it: herd.yaml's env, the config keys given as env. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const IMAGE_REF = /^(?!.*\.\.)(?!.*\/\/)(?!.*\/$)[a-z0-9][A-Za-z0-9._/:@-]{0,254}$/;
