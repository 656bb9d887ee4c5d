/**
 * The objects the control plane stores. This file is the wire contract between
 * the server, the agents, the gateway and the CLI; it depends on nothing.
 *
 * Keys (the store's `key` for each kind):
 *   tenant   `<tenant>`
 *   app      `<tenant>/<app>`, app_tombstone `<tenant>/<app>`: an app destroyed (AppTombstone)
 *   service  `<tenant>/<app>/<service>`
 *   release  `<tenant>/<app>/<version padded to 8 digits>`   (see releaseKey)
 *   deploy   `<tenant>/<app>/<deploy id>`
 *   instance `<instance id>`                                   (ids are global)
 *   node     `<node name>`
 *   event    `<time-ordered id>`
 *   token    `<sha256 of the token>`, user `<name>`, member `<tenant>/<user>` (identity.ts)
 *   consumer `<tenant>/<consumer>`
 *   route    `<tenant>/<app>/<route name>`                      (routes set through the API)
 *   alert_rule / alert_receiver `<tenant>/<name>`, alert_silence `<tenant>/<id>` (alerts.ts)
 *   secret   `<tenant>/<app or _receiver.<name> or _consumer.<name>>/<name>`: ciphertexts only (src/secrets/)
 *   remediation `<tenant>/<app>` (remediation.ts)
 *   autoscale_state `<tenant>/<app>/<service>`: the autoscaler's memory (controllers/autoscale-state.ts)
 *   version_set `<tenant>/<set>/<version padded to 8 digits>`: an applied herd.set.yaml (version-set.ts)
 *   config_version `<layer>/<namespace>/<version>`, config_head `<tenant>/<app>` (config.ts)
 *   run      `<run id>`: a one-off process, release phase or scheduled job's run (job.ts)
 *   pipeline `<tenant>/<pipeline>`, preview `<tenant>/<preview app>` (pipeline.ts)
 *   addon    `<tenant>/<addon>`: a managed database and its bindings (addon.ts)
 *   addon_broker `<broker>`: an external Open Service Broker and its catalog (addon.ts)
 *   addon_backup `<tenant>/<id>`: a destroyed add-on's final backup (addon.ts)
 */

import type { AlertRuleBody } from "./alerts.ts";
import type { TrafficOverride } from "./live-config.ts";
import type { PromotedFrom } from "./pipeline.ts";
import type { ProgressiveState } from "./progressive.ts";
import type { ServiceSpec } from "./service-spec.ts";

/** Every kind of object the store holds. */
export const KINDS = [
  "tenant",
  "app",
  "app_tombstone",
  "service",
  "release",
  "deploy",
  "instance",
  "node",
  "event",
  "token",
  "user",
  "member",
  "consumer",
  "route",
  "scrape_target",
  "alert_rule",
  "alert_receiver",
  "alert_silence",
  "secret",
  "machine",
  "remediation",
  "autoscale_state",
  "version_set",
  "config_version",
  "config_head",
  "run",
  "pipeline",
  "preview",
  "addon",
  "addon_broker",
  "addon_backup",
] as const;
export type Kind = (typeof KINDS)[number];

/** An object as a store holds it and the API returns it (kind, key, revisions, value). */
export interface StoredObject<T = unknown> {
  kind: Kind;
  key: string;
  /** Revision of the last write of this object. */
  revision: number;
  /** Revision at which it was created. */
  createRevision: number;
  value: T;
}

/** One change to a stored object, as a store's watch and the API's watch stream deliver it. */
export interface WatchEvent<T = unknown> {
  type: "put" | "delete";
  kind: Kind;
  key: string;
  revision: number;
  /** The object after a put; the last value before a delete. */
  object: StoredObject<T>;
}

/** An isolated owner of apps. */
export interface Tenant {
  name: string;
  createdAt: string;
  /** Most resource units its services may hold (desired instances × units each); absent: no limit. */
  quota?: { units: number };
  /**
   * Domains a platform admin gave this tenant: only its routes may use these
   * hosts and their subdomains (`shop.example.com` covers `a.shop.example.com`).
   */
  domains?: string[];
  /** Per-tenant deploy limits a platform admin set (defaults: the server's). */
  limits?: TenantLimits;
  /**
   * A platform admin let its container services run as their image's own
   * user (`user: image`, root when the image names none); absent: they run
   * as the tenant's unprivileged uid.
   */
  allowImageUser?: true;
}

/** How big a tenant's deploys may be. */
export interface TenantLimits {
  /** Largest source upload, bytes. */
  uploadBytes?: number;
  /** Most bytes the source may unpack to. */
  unpackBytes?: number;
  /** Most files and directories in the source. */
  unpackEntries?: number;
}

/** Operations a service (or app) can be in; `running` is the steady state. */
export type ServiceState =
  | "pending" // created, no release yet
  | "running" // desired == actual
  | "updating" // rolling out a new release
  | "rolling_back" // rolling out an older release's content
  | "scaling" // changing the instance count
  | "destroying"
  | "failed"; // rollout or crash loop gave up; see message

/** A set of services deployed together from one herd.yaml. */
export interface App {
  tenant: string;
  name: string;
  createdAt: string;
  /** The release that serves now (null before the first successful deploy). */
  release: number | null;
  /** Highest release version handed out (next is latestVersion + 1). */
  latestVersion: number;
  /** Set while the app is being destroyed; controllers then stop everything and delete it. */
  destroying?: boolean;
}

/**
 * Proof that an app of this name was destroyed (kept 30 days, rewritten by a
 * later destroy of the name): a pet volume of no app is removed from a node
 * only with one, never for the mere absence of its app (a control plane
 * restored from an older backup does not know newer apps).
 */
export interface AppTombstone {
  tenant: string;
  app: string;
  destroyedAt: string;
}

/** One deployable process type of an app, with its desired state. */
export interface Service {
  tenant: string;
  app: string;
  name: string;
  /** Desired release version; its spec for this service is copied into `spec`. */
  release: number;
  spec: ServiceSpec;
  /** Desired number of instances (from the spec, or from `herd scale`). */
  instances: number;
  state: ServiceState;
  message: string;
  /** Id of the deploy that is rolling this service out, when there is one. */
  deploy?: string;
  /** Consecutive crashes without reaching running; drives crash-loop backoff. */
  crashes: number;
  /** How many of `crashes` were failed health checks rather than exits (read only while crashes > 0). */
  unhealthy?: number;
  /** Do not start a replacement before this time (crash-loop backoff), ISO. */
  backoffUntil?: string;
  /** Traffic policies set through the API over the spec's (live-config.ts); kept across deploys. */
  traffic?: TrafficOverride;
  /** While a deploy rolls it out: its progress deadline, and the furthest it got (placed + running) and when. */
  rollout?: RolloutProgress;
  /** While a canary or blue/green rollout runs: its phase, step, traffic weight and analyses (progressive.ts). */
  progressive?: ProgressiveState;
  /**
   * `herd restart`, ISO: cattle created before it are replaced as a rollout replaces
   * them (the new ones run before the old ones go); pets started before it restart
   * in place, one at a time.
   */
  restartedAt?: string;
}

/** How far a rollout got: it fails when `best` has not grown for `deadlineMs`. */
export interface RolloutProgress {
  deadlineMs: number;
  /** Instances of the new release placed on a node, plus those running (each counts twice once it runs). */
  best: number;
  /** When `best` last grew (or the rollout began), ISO. */
  since: string;
  /** Crashes of the new release's instances in this rollout: the rollout crash limit counts these, not an old release's. */
  crashes?: number;
}

/** An immutable, numbered build of an app. A rollback is a new release pointing at old content. */
export interface Release {
  tenant: string;
  app: string;
  version: number;
  createdAt: string;
  description: string;
  /** sha256 of the uploaded source tarball. */
  source: string;
  /** sha256 of the built slug tarball the agents unpack and run. */
  slug: string;
  services: Record<string, ServiceSpec>;
  /**
   * The image each container service of it runs from the local registry, by
   * digest (`HOST:PORT/herd-build@sha256:…`), as the agents that built or
   * pulled it reported (POST /registry/images): the registry keeps them while
   * the release is kept (docs/containers.md).
   */
  images?: Record<string, string>;
  /** herd.yaml's alert rules (alerts.ts), evaluated while this release serves. */
  alerts?: Record<string, AlertRuleBody>;
  /** For a rollback: the version whose content this release reuses. */
  rollbackOf?: number;
  /** The version of each secret its services' env refers to (by secret name); never the values. */
  secrets?: Record<string, number>;
  /** Who made it (the principal's label, `user alice`); absent on releases made before herd recorded it. */
  createdBy?: string;
  /** For a promotion (`herd promote`): the pipeline stage, app and release whose slug this one ships. */
  promotedFrom?: PromotedFrom;
}

export type DeployState = "building" | "rolling_out" | "succeeded" | "failed";

/** One `herd deploy` or `herd rollback`: its progress and outcome. */
export interface Deploy {
  id: string;
  tenant: string;
  app: string;
  state: DeployState;
  createdAt: string;
  finishedAt?: string;
  release?: number;
  /** The release that served before; restored when the rollout fails. */
  previous?: number | null;
  /** Instance counts of the services before this deploy (by service name); restored with `previous`. */
  previousInstances?: Record<string, number>;
  rollback?: boolean;
  /** The progress deadline this deploy asked for (`herd deploy --deadline`), over herd.yaml's. */
  deadlineMs?: number;
  message: string;
  /** Who started it (the principal's label, `user alice`); absent on deploys made before herd recorded it. */
  createdBy?: string;
}

/** Lifecycle of one instance. `ready` = process up; `running` = healthy, takes traffic. */
export type InstanceState =
  | "pending" // waiting for a node (see `message` for why)
  | "provisioning" // assigned to a node, being unpacked and started
  | "ready" // process up, health check not passed yet
  | "running" // passed its health check, in the gateway
  | "draining" // out of the gateway, stopping after the drain time
  | "stopped" // process gone on purpose
  | "crashed" // process exited or failed its health checks; controller decides
  | "failed" // gave up (crash loop, never healthy)
  | "lost"; // its node is lost

export interface Resources {
  /** CPU cores, e.g. 0.1: what placement counts; for an instance, its CPU weight under contention (docs/resources.md). */
  cpu: number;
  /** Bytes requested: what placement counts, reserved and never overcommitted. */
  memory: number;
  /**
   * An instance's hard memory limit in bytes (≥ memory): it may use up to this
   * while the node has room, and is evicted first under memory pressure when
   * above its request. Absent: the request is the limit.
   */
  memoryLimit?: number;
  /** An instance's hard CPU ceiling in cores (≥ cpu); absent: none, it may use idle CPU. */
  cpuLimit?: number;
}

export interface HealthCheck {
  /**
   * http: GET `path` answers 2xx/3xx; tcp: the port accepts a connection;
   * process: the process stays up for one interval (services without routes, e.g. workers).
   */
  kind: "http" | "tcp" | "process";
  /** HTTP path, for kind http. */
  path?: string;
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive failures after running that make the instance unhealthy. */
  failures: number;
  /** Give up on an instance that is not healthy this long after start. */
  startupMs: number;
}

/** One running copy of a service on a node. */
export interface Instance {
  id: string;
  tenant: string;
  app: string;
  service: string;
  release: number;
  mode: "cattle" | "pet";
  node: string | null;
  desired: "running" | "stopped";
  /** While desired is stopped: keep the process running (out of the gateway) until this time, ISO. */
  drainUntil?: string;
  /** Bumped by the controller to restart a pet in place. */
  generation: number;
  /** A crashed pet waits until this time (crash-loop backoff) before it is restarted, ISO. */
  restartAt?: string;
  state: InstanceState;
  reason: string;
  message: string;
  /** What the agent needs to run it. */
  run: InstanceRun;
  port?: number;
  pid?: number;
  restarts: number;
  createdAt: string;
  startedAt?: string;
  /** Last log lines when it crashed or failed. */
  logTail?: string[];
  exitCode?: number | null;
  /** An operator asked to move it (`herd instances move`): cattle are replaced elsewhere first, pets restart on `to`. */
  moving?: { to?: string };
}

/** The part of an instance the agent needs to start it. */
export interface InstanceRun {
  slug: string;
  /** Empty with `image`: the image's own command. */
  command: string;
  /** A container image to run instead of the slug (runtime docker). */
  image?: string;
  /** The runtime driver it needs when not the default process driver. */
  runtime?: "docker";
  /** Its container runs as the image's own user; absent: as its tenant's uid (the control plane sets it only where the tenant allows it). */
  imageUser?: true;
  env: Record<string, string>;
  /** Env variables whose values are secrets: the agent gets them in the heartbeat reply, never stored here. */
  secrets?: Record<string, SecretPin>;
  resources: Resources;
  health: HealthCheck;
  /** Its service's criticality when not normal: under memory pressure the node evicts low first (agent/eviction.ts). */
  criticality?: "critical" | "low";
}

/** A secret of the app, by name and the version a release pinned. */
export interface SecretPin {
  secret: string;
  version: number;
}

export type NodeState = "ready" | "not_ready" | "lost";

/**
 * What keeps instances on a node in bounds: cgroup limits; a sandbox (each
 * tenant's own uid, own files, private /proc and /tmp); a firewall (no
 * connections to other tenants' ports or the platform's). `missing` says why
 * a layer is not in force. Agents older than the sandbox report cgroups only.
 */
export interface NodeIsolation {
  cgroups: "v1" | "v2" | "none";
  /** Why there are no limits, when cgroups is none. */
  reason?: string;
  sandbox?: "uid" | "none";
  network?: "nftables" | "none";
  missing?: string[];
}

/** A machine with an agent. */
export interface Node {
  name: string;
  /** Address other components use to reach instances on this node. */
  address: string;
  labels: Record<string, string>;
  capacity: Resources;
  allocatable: Resources;
  /** How far the CPU requests placed here may exceed allocatable CPU (1.5: by half); absent: 1 (older agents). */
  cpuOvercommit?: number;
  state: NodeState;
  lastHeartbeat: string;
  registeredAt: string;
  agentVersion: string;
  /** What isolation instances get here, and why not when they don't (docs/isolation.md). */
  isolation: NodeIsolation;
  schedulable: boolean;
  /** Instances without a matching toleration are not placed here. */
  taints?: Taint[];
  /** `herd nodes drain`: cordoned, and its cattle are being replaced elsewhere. */
  draining?: boolean;
  /** Where its agent serves its own metrics, when it does (scraped as job herd-agent). */
  metricsUrl?: string;
  /** Digests of the slugs its agent holds: a release's instances start there without a download (warm). */
  slugs?: string[];
  /** The pet volumes on its disk, by instance id: a pet made again (a scale up) goes back to its data. */
  volumes?: string[];
  /** The runtime drivers its agent has besides process (e.g. docker); absent: process only. */
  drivers?: string[];
  /** What isolation each of those drivers gives (`isolation` is the process driver's). */
  driverIsolation?: Record<string, NodeIsolation>;
  /** Where its instances' ports come from (absent: an older agent, 20000-29999). */
  instancePorts?: { min: number; max: number };
}

/** Keeps instances off a node unless they tolerate it (same key; same value when the toleration names one). */
export interface Taint {
  key: string;
  value?: string;
}

/** Append-only record of a state change and its reason. */
export interface Event {
  id: string;
  time: string;
  tenant?: string;
  app?: string;
  service?: string;
  instance?: string;
  node?: string;
  deploy?: string;
  /** Machine-readable reason, e.g. InstanceCrashed, RolloutFailed, NodeLost. */
  reason: string;
  message: string;
  type: "normal" | "warning";
  /** e.g. the last log lines of a crashed instance. */
  details?: string[];
  /** A transition of several instances at once (EventRecorder.recordAll): how many, and their ids (up to 100). */
  count?: number;
  instances?: string[];
}

/**
 * A client of a tenant's routes (like a Kong consumer): routes with `auth`
 * let it in by one of its credentials, tell the app its name in
 * `X-Consumer-Name`, and can rate-limit it on its own (`per: consumer`).
 */
export interface Consumer {
  tenant: string;
  name: string;
  createdAt: string;
  /** API keys; only their sha256 is kept (the key itself is shown once, at creation). */
  keys: ApiKeyCredential[];
  /** JWT credentials: tokens whose `iss` is a credential's `key` are checked with its secret or public key. */
  jwt: JwtCredential[];
}

export interface ApiKeyCredential {
  id: string;
  /** sha256 (hex) of the key. */
  hash: string;
  /** The key's first characters, so people can tell keys apart. */
  hint: string;
  createdAt: string;
}

export interface JwtCredential {
  id: string;
  /** Matched against a token's `iss` claim; unique within the tenant. */
  key: string;
  algorithm: "HS256" | "RS256";
  /** HS256, as stored: the shared secret's place in the secret store (scope `_consumer.<name>`, named by the credential's id). */
  secretRef?: SecretPin;
  /**
   * HS256, inside a gateway only: the shared secret, filled in from
   * GET /gateways/jwt-secrets (never stored in the object, never in a snapshot or watch).
   */
  secret?: string;
  /** RS256: the PEM public key. */
  publicKey?: string;
  createdAt: string;
}

export const consumerKey = (tenant: string, name: string): string => `${tenant}/${name}`;

export const RELEASE_PAD = 8;
export const releaseKey = (tenant: string, app: string, version: number): string =>
  `${tenant}/${app}/${String(version).padStart(RELEASE_PAD, "0")}`;
/**
 * Whether `herd restart`, stamped `restartedAt` on its service, still has `i` to restart:
 * a pet started, or cattle made, before it (Service.restartedAt). The service controller
 * acts on it; `herd restart` waits on it.
 */
export const restartDue = (i: Instance, restartedAt: string | undefined): boolean =>
  restartedAt !== undefined && (i.mode === "pet" ? (i.startedAt ?? i.createdAt) : i.createdAt) < restartedAt;

export const appKey = (tenant: string, app: string): string => `${tenant}/${app}`;
export const serviceKey = (tenant: string, app: string, service: string): string =>
  `${tenant}/${app}/${service}`;
