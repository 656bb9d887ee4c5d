/**
 * What the route files are handed: the control plane's parts. Its own small
 * module so that routes depend on this, not on the server that assembles them.
 */

import type { ArtifactStore } from "../builder/artifact-store.ts";
import type { NodeRuntimes } from "../builder/node-runtime.ts";
import type { UnpackLimits } from "../builder/unpack.ts";
import type { UrlGuard } from "../common/url-guard.ts";
import type { ConfigCenter } from "../config-center/center.ts";
import type { Settings } from "../controllers/context.ts";
import type { DeployLogs } from "../controllers/deploy-log.ts";
import type { EventRecorder } from "../controllers/events.ts";
import type { ControllerManager } from "../controllers/manager.ts";
import type { ServiceSpec } from "../model/manifest.ts";
import type { Release } from "../model/objects.ts";
import type { AlertEvaluator } from "../observe/alerts/evaluator.ts";
import type { LiveLoad } from "../observe/live-load.ts";
import type { LogStore } from "../observe/log-store.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { Traces } from "../observe/traces/traces.ts";
import type { SecretStore } from "../secrets/secret-store.ts";
import type { Leadership } from "../store/leadership.ts";
import type { Store } from "../store/store.ts";
import type { AuditLog } from "./audit.ts";
import type { GatewayBook } from "./gateway-book.ts";
import type { HostCertificates } from "./host-certificates.ts";
import type { IngestTokens } from "./ingest-tokens.ts";
import type { LeaderLoops } from "./leader-loops.ts";
import type { RegistryCredentials } from "./registry-credentials.ts";

/** What the routes are handed. */
export interface ApiDeps {
  store: Store;
  controllers: ControllerManager;
  /** Which server runs the controllers (store/leadership.ts); followers send heartbeats there. */
  leadership?: Leadership;
  /** Timers only the leader runs (leader-loops.ts): routes add theirs, e.g. the add-on sync. */
  leaderLoops: LeaderLoops;
  events: EventRecorder;
  deployLogs: DeployLogs;
  artifacts: ArtifactStore;
  logs: LogStore;
  /** How often an idle log stream gets a heartbeat. */
  logsHeartbeatMs: number;
  /** What each gateway has applied (live-config.ts routes). */
  gateways: GatewayBook;
  /** The store's members and the gateways' metrics, "host:port": closed to instances on every node (platform-endpoints.ts). */
  platformEndpoints: () => string[];
  /** The gateways' live load figures, each second (routes/load.ts; controllers read them as Context.load). */
  load: LiveLoad;
  /** Spans: store and forwarder. */
  traces: Traces;
  /** Each tenant's ingest token, handed to agents for the tenant's instances. */
  ingestTokens: IngestTokens;
  /** Metrics storage, collection and the API server's own exporter. */
  metrics: Metrics;
  /** Alert rules' evaluation, active alerts, webhook deliveries. */
  alerts: AlertEvaluator;
  /** Aborted when the server starts closing: long streams (watch, deploy logs) end. */
  shutdown: AbortSignal;
  /** Every write's who, what, when and result. */
  audit: AuditLog;
  maxUploadBytes: number;
  /** Where the apps' git remotes live (`<data>/git`, routes/git.ts). */
  gitDir: string;
  version: string;
  /** The platform's settings (resource unit, timings). */
  settings: Settings;
  /** The config center: versioned layered config, gray releases, what each instance applied. */
  config: ConfigCenter;
  /** Encrypted secrets: apps', receivers' header values, consumers' HS256 secrets. */
  secrets: SecretStore;
  /** The one guard of URLs fetched on a user's say-so (--allow-fetch): add-on brokers. */
  guard: UrlGuard;
  /** The Node versions builds fetched for apps (engines.node); agents download them by digest. */
  runtimes: NodeRuntimes;
  /** Gateways' host certificates: herd's CA, and ACME when the server uses it. */
  certificates: HostCertificates;
  /** The local registries' credential and certificates (routes/registry.ts). */
  registry: RegistryCredentials;
  build(options: {
    source: string;
    /** The app's tenant: its build uid and npm cache are its own. */
    tenant: string;
    app: string;
    log: (line: string) => void;
    /** The tenant's unpack limits. */
    unpack?: UnpackLimits;
    /** What the release would be refused for, checked before anything is installed (DeployController.preflight). */
    check?: (services: Record<string, ServiceSpec>) => Promise<void>;
  }): Promise<{ slug: string; services: Record<string, ServiceSpec>; alerts?: Release["alerts"] }>;
}
