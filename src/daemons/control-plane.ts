/**
 * The control plane's assembly (`herd server`, and `herd up`'s first part):
 * the store, the artifact store, logs, metrics, traces, alerts, the
 * controllers and the leader's loops, wired into the HTTP API that
 * api/app.ts builds, and closed in order.
 *
 *   HTTP /api/v1 ─► auth ─► routes ─► store ◄─► controllers
 *                              │
 *                              └─► artifacts + builder (deploys)
 */

import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { listenApi } from "../api/acceptors.ts";
import type { AcmeSettings } from "../api/acme.ts";
import { buildApi } from "../api/app.ts";
import { AuditLog } from "../api/audit.ts";
import { Authenticator, createToken, ensureAdminToken } from "../api/auth.ts";
import type { ApiDeps } from "../api/deps.ts";
import { GatewayBook } from "../api/gateway-book.ts";
import { openHostCertificates } from "../api/host-certificates.ts";
import { IngestTokens } from "../api/ingest-tokens.ts";
import { LeaderLoops } from "../api/leader-loops.ts";
import { startOtlpGrpc } from "../api/otlp-grpc.ts";
import { memberSource, PlatformEndpoints } from "../api/platform-endpoints.ts";
import { RegistryCredentials } from "../api/registry-credentials.ts";
import { ensureApiTls } from "../api/tls.ts";
import { ArtifactCollector } from "../builder/artifact-collect.ts";
import { ArtifactStore } from "../builder/artifact-store.ts";
import { BuildRunner } from "../builder/build-runner.ts";
import { buildSlug } from "../builder/builder.ts";
import { NodeRuntimes } from "../builder/node-runtime.ts";
import { trustCaInProcess } from "../common/api-ca.ts";
import { systemClock } from "../common/clock.ts";
import type { Logger } from "../common/log.ts";
import { UrlGuard } from "../common/url-guard.ts";
import { ConfigCenter } from "../config-center/center.ts";
import { promqlValue } from "../controllers/autoscale-query.ts";
import { type Context, DEFAULT_SETTINGS, type Settings } from "../controllers/context.ts";
import { DeployLogs } from "../controllers/deploy-log.ts";
import { EventRecorder } from "../controllers/events.ts";
import type { MachineController } from "../controllers/machine-controller.ts";
import type { MachineSettings } from "../controllers/machine-plan.ts";
import { ControllerManager } from "../controllers/manager.ts";
import { RemediationEngine } from "../controllers/remediation/engine.ts";
import { callEdges } from "../controllers/remediation/evidence.ts";
import { scaleServices } from "../controllers/scale.ts";
import type { Instance, Tenant } from "../model/objects.ts";
import { AlertEvaluator, type AlertEvaluatorOptions } from "../observe/alerts/evaluator.ts";
import { DependencyDrift } from "../observe/dependency-drift.ts";
import { agentScrapeTargets } from "../observe/fleet-metrics.ts";
import { LiveLoad } from "../observe/live-load.ts";
import { LogStore, type LogStoreOptions } from "../observe/log-store.ts";
import { Metrics, type MetricsOptions } from "../observe/metrics.ts";
import { Traces, type TracesOptions } from "../observe/traces/traces.ts";
import { migratePlainSecrets } from "../secrets/migrate.ts";
import { receiverHeaderValues } from "../secrets/receiver-headers.ts";
import { SecretStore } from "../secrets/secret-store.ts";
import { controlPlaneInformer } from "../store/informer-kinds.ts";
import type { Leadership } from "../store/leadership.ts";
import { type EtcdTlsFiles, openLeadership, openStore } from "../store/open.ts";
import type { Store } from "../store/store.ts";

export const VERSION = "0.1.0";

export interface ServerOptions {
  dataDir: string;
  /** The Store: `sqlite` (default, `<dataDir>/state.db`) or `etcd://host:port,…` (docs/etcd.md). */
  store?: string;
  /** With an etcd store: TLS to etcd (`--etcd-ca/--etcd-cert/--etcd-key` files). */
  etcdTls?: EtcdTlsFiles;
  /** Where slugs and sources are kept (default `<dataDir>/artifacts`): servers sharing an etcd share this directory too. */
  artifactsDir?: string;
  /** On etcd: the leader's lease TTL in seconds (default 5; store/leadership.ts). */
  leaseTtlSeconds?: number;
  /** Port of the API (default 7070; 0 = any free port). */
  port?: number;
  host?: string;
  logger: Logger;
  settings?: Partial<Settings>;
  /** Largest source upload accepted (default 200 MiB). */
  maxUploadBytes?: number;
  /** Span retention, size limit and forwarding. */
  traces?: TracesOptions;
  /** Metrics storage and collection (retention, size limit, scrape interval, ingest queue). */
  metrics?: Omit<MetricsOptions, "dataDir" | "store" | "logger">;
  /** Alert evaluation interval (default 15 s) and webhook retries. */
  alerts?: Pick<AlertEvaluatorOptions, "intervalMs" | "notifier">;
  /** The remediation engine: on unless `enabled: false`; how often it looks (default 1 s). */
  remediation?: { enabled?: boolean; intervalMs?: number };
  /** Log retention (age, size), ingest queue and the SSE heartbeat. */
  logs?: LogsOptions;
  /** How long audit entries are kept (default 90 days). */
  auditRetentionMs?: number;
  /** Serve HTTPS with a certificate signed by the data dir's CA (api/tls.ts); default HTTP. */
  tls?: boolean;
  /** Serve OTLP/gRPC on this port (0: a free one; TLS with tls); absent: no gRPC listener. */
  grpcPort?: number;
  /** Order gateways' certificates for these domains from an ACME server (api/acme.ts); default none. */
  acme?: AcmeSettings;
  /**
   * Internal addresses and ranges (CIDR) that webhooks, registered scrape
   * targets and trace forwarding may reach (`--allow-fetch`); default none.
   * herd's own components (gateways, agents) are scraped wherever they are.
   */
  allowFetch?: readonly string[];
  /** A machine provider asked for machines when instances fit nowhere (docs/machine-provider.md); default none. */
  machines?: MachineProviderOptions;
}

/** `--machine-provider` and its settings. */
export interface MachineProviderOptions {
  /** `exec:/path/to/command` or an http(s) webhook URL. */
  provider: string;
  /** Webhooks: the key requests are signed with. */
  secret?: string;
  /** A provider call that takes longer fails (default 60 s). */
  timeoutMs?: number;
  settings?: Partial<MachineSettings>;
}

/** How logs.db is bounded, and how often idle log streams get a heartbeat. */
export interface LogsOptions extends Omit<LogStoreOptions, "clock"> {
  /** A `: ping` comment on idle SSE streams this often (default 15 s). */
  heartbeatMs?: number;
}

export interface RunningServer {
  url: string;
  port: number;
  adminToken: string;
  adminTokenFile: string;
  /** With tls: the CA certificate clients verify the API with. */
  caFile?: string;
  /** The OTLP/gRPC endpoint, with grpcPort. */
  grpcUrl?: string;
  store: Store;
  controllers: ControllerManager;
  /** Metrics storage and collection. */
  metrics: Metrics;
  /** Alerts: subscribe with `alerts.on(…)` to act on firing and resolved alerts. */
  alerts: AlertEvaluator;
  /** The live settings (herd up fills in the gateway's address once it listens). */
  settings: Settings;
  /** Spans; also the in-process SpanSink for a gateway in this process. */
  traces: Traces;
  /** The log stream's store. */
  logs: LogStore;
  /** Each tenant's ingest token (the one its instances get). */
  ingestTokens: IngestTokens;
  /** Encrypted secrets. */
  secrets: SecretStore;
  /** Which server leads; the leader alone runs the controllers and `leaderLoops`. */
  leadership: Leadership;
  /** The alert evaluator, drift checker, certificate orders, add-on sync: running while this server leads. */
  leaderLoops: LeaderLoops;
  close(): Promise<void>;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { dataDir, logger } = options;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // Also when it existed: tokens, state.db and every tenant's sources are below it (docs/isolation.md).
  chmodSync(dataDir, 0o700);
  const settings: Settings = {
    ...DEFAULT_SETTINGS,
    ...options.settings,
    machineProvider: options.machines !== undefined,
    sharedStore: options.store?.startsWith("etcd://") ?? false,
  };
  const store = await openStore(options.store, dataDir, options.etcdTls, logger.child("etcd"));
  const artifacts = new ArtifactStore(options.artifactsDir ?? join(dataDir, "artifacts"));
  const logs = new LogStore(join(dataDir, "logs.db"), options.logs);
  const audit = new AuditLog(join(dataDir, "audit.db"), { retentionMs: options.auditRetentionMs });
  audit.start();
  // One guard for every URL fetched on a user's say-so (common/url-guard.ts).
  const guard = new UrlGuard({ allow: options.allowFetch });
  // Checked before anything starts: a bad --machine-provider stops the server at once.
  // The machine controller's modules load only with a provider (--machine-provider).
  const provider = options.machines
    ? (await import("../controllers/machine-provider.ts")).machineProvider(options.machines.provider, {
        secret: options.machines.secret,
        guard,
        timeoutMs: options.machines.timeoutMs,
      })
    : undefined;
  // Trace queries get the same timeout and concurrency as PromQL (--query-*).
  const traces = new Traces(join(dataDir, "traces"), systemClock, {
    query: options.metrics?.query,
    ...options.traces,
    forwardGuard: guard,
  });
  // Controllers, the scheduler, heartbeats and the fleet's metrics read instances, nodes, services and runs from it.
  const informer = controlPlaneInformer(store, logger);
  await informer.start();
  const metrics = new Metrics({
    ...options.metrics,
    dataDir,
    store,
    informer,
    logger: logger.child("metrics"),
    guard,
  });
  const events = new EventRecorder(store, systemClock, logger.child("events"));
  // Every platform event is also an entry of the log stream, next to the apps' own lines.
  events.on((e) => logs.appendEvent(e));
  const deployLogs = new DeployLogs(join(dataDir, "deploys"));
  const secrets = await SecretStore.open(store, dataDir);
  await migratePlainSecrets(store, secrets);
  // The gateways' live load figures: written by PUT /gateways/:id/load, read by controllers and GET /apps/:app/load.
  const load = new LiveLoad(systemClock);
  const ctx: Context = {
    store,
    informer,
    clock: systemClock,
    logger,
    events,
    deployLogs,
    settings,
    secrets,
    load,
  };
  const alerts = new AlertEvaluator({
    ...options.alerts,
    notifier: { ...options.alerts?.notifier, guard },
    store,
    tsdb: metrics.tsdb,
    events,
    clock: systemClock,
    logger: logger.child("alerts"),
    stateFile: join(dataDir, "alerts", "state.json"),
    registry: metrics.self.registry,
    receiverHeaders: (key) => receiverHeaderValues(store, secrets, key),
  });
  // What an instance used lately, as its agent's last heartbeat said (the autoscaler's and the engine's CPU figures).
  const usageOf = (i: Instance) => (i.node ? metrics.fleet.report(i.node)?.usage.get(i.id) : undefined);
  const controllers = new ControllerManager(ctx, {
    // The autoscaler's cpu and query targets: agents' heartbeat usage, and PromQL as the service's tenant.
    cpuCores: (i) => usageOf(i)?.cpuCores,
    query: (tenant, expr) => promqlValue(metrics.queries, tenant, expr),
    // A canary's analysis per endpoint, from the spans apps send (model/endpoint-analysis.ts).
    endpoints: async (query) =>
      JSON.parse(await traces.queries.run({ kind: "endpoints", query }, query.tenant)),
    // A release phase's output as it reaches this server (controllers/jobs.ts followOutput).
    runOutput: (run, after) =>
      logs
        .query({ tenant: run.tenant, app: run.app, instance: run.id, after, limit: 1000 })
        .filter((e) => e.stream !== "event"),
  });
  // Acts on symptoms through the same paths people use (docs/remediation.md).
  const remediation = new RemediationEngine({
    ctx,
    act: {
      rollback: (tenant, app, version) => controllers.deploys.rollback(tenant, app, version, "remediation"),
      // The one scale path (`herd scale`, the autoscaler): quota, the count, an event, what cannot be placed.
      scale: async (tenant, app, service, count, why) => {
        await scaleServices(
          {
            store,
            events,
            unit: settings.unit,
            informer: controllers.informer,
            cluster: () => controllers.services.clusterState(),
          },
          { tenant, app, services: { [service]: count }, why },
        );
      },
    },
    alerts: () => alerts.active(),
    usage: usageOf,
    calls: async (tenant, from, to) => callEdges(await traces.map(from, to, tenant)),
    ...(options.remediation?.intervalMs !== undefined ? { intervalMs: options.remediation.intervalMs } : {}),
  });
  // Declared dependsOn against the calls the traces see: warning events and the undeclared-dependency alerts.
  const drift = new DependencyDrift({
    store,
    events,
    registry: metrics.self.registry,
    logger: logger.child("dependencies"),
    calls: async (tenant, from, to) => callEdges(await traces.map(from, to, tenant)),
  });
  const admin = await ensureAdminToken(store, dataDir);
  // One queue, one sandbox and one set of limits for every build of this control plane.
  const builds = new BuildRunner({ cacheDir: join(dataDir, "builds") });
  // The Node versions apps chose (engines.node), fetched once, served to agents.
  const runtimes = new NodeRuntimes({ dir: join(dataDir, "builds", "node") });
  if (!(await store.get<Tenant>("tenant", "default"))) {
    await store
      .put<Tenant>(
        "tenant",
        "default",
        { name: "default", createdAt: new Date().toISOString() },
        { expectRevision: 0 },
      )
      .catch(() => {});
  }

  const gateways = new GatewayBook(store, logger.child("gateways"));
  await gateways.start();
  // Every gateway and agent that reports a metrics URL is scraped while it keeps reporting.
  metrics.discovered = async () => [...gateways.scrapeTargets(), ...(await agentScrapeTargets(informer))];
  const ingestTokens = new IngestTokens(store, secrets);
  const shutdown = new AbortController();
  const certificates = await openHostCertificates({ store, secrets, dataDir, logger, acme: options.acme });
  // One server of those sharing the store runs the controllers (docs/high-availability.md).
  const leadership = openLeadership(store, logger.child("leader"), options.leaseTtlSeconds);
  // Started and stopped with the leader's term, like the controllers: two servers never both run them.
  const leaderLoops = new LeaderLoops(logger.child("leader"));
  // The store's members and the gateways' metrics, closed to instances on every node (peers.platform).
  const platform = new PlatformEndpoints({
    store: options.store,
    gateways,
    members: memberSource(store),
    logger: logger.child("platform"),
  });
  void platform.start();
  leaderLoops.add("alerts", alerts);
  leaderLoops.add("dependency drift", drift);
  leaderLoops.add("certificates", certificates);
  // Slugs, sources and backup dumps no stored object names any more (builder/artifact-collect.ts).
  leaderLoops.add(
    "artifact collection",
    new ArtifactCollector({ store, artifacts, logger: logger.child("artifacts") }),
  );
  const deps: ApiDeps = {
    store,
    controllers,
    leadership,
    leaderLoops,
    events,
    deployLogs,
    artifacts,
    logs,
    logsHeartbeatMs: options.logs?.heartbeatMs ?? 15_000,
    gateways,
    platformEndpoints: () => platform.now(),
    load,
    traces,
    ingestTokens,
    metrics,
    alerts,
    audit,
    shutdown: shutdown.signal,
    maxUploadBytes: options.maxUploadBytes ?? 200 * 1024 * 1024,
    gitDir: join(dataDir, "git"),
    version: VERSION,
    settings,
    secrets,
    guard,
    config: new ConfigCenter(store, systemClock, informer),
    runtimes,
    certificates,
    registry: await RegistryCredentials.open(secrets, dataDir),
    build: async ({ source, tenant, app, log, unpack, check }) => {
      const r = await buildSlug({
        artifacts,
        source,
        tenant,
        unpack,
        ...(check ? { check } : {}),
        workDir: join(dataDir, "builds"),
        runner: builds,
        runtimes,
        app,
        log,
        unit: settings.unit,
      });
      return { slug: r.slug, services: r.services, ...(r.alerts ? { alerts: r.alerts } : {}) };
    },
  };

  const auth = new Authenticator(store, { logger: logger.child("auth") });
  await auth.start();
  const tls = options.tls ? await ensureApiTls(join(dataDir, "tls"), options.host ?? "127.0.0.1") : undefined;
  // The control plane calls itself too (its /metrics scrape): it trusts the CA it holds the key of.
  if (tls) trustCaInProcess(tls.ca);
  const app = buildApi(deps, auth, logger, tls);
  const closeAcceptors = await listenApi(app, options.host ?? "127.0.0.1", options.port ?? 7070, (err) =>
    logger.warn("the API accepts new connections on one socket only", { err }),
  );
  const grpc =
    options.grpcPort === undefined
      ? undefined
      : await startOtlpGrpc(app, { host: options.host ?? "127.0.0.1", port: options.grpcPort, tls, logger });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : (options.port ?? 7070);
  const host = options.host && options.host !== "0.0.0.0" ? options.host : "127.0.0.1";
  const url = `${tls ? "https" : "http"}://${host}:${port}`;
  writeFileSync(
    join(dataDir, "server.json"),
    `${JSON.stringify({ url, gatewayUrl: settings.gatewayUrl }, null, 2)}\n`,
  );
  let machines: MachineController | undefined;
  if (provider) {
    const [{ MachineController }, { DEFAULT_MACHINE_SETTINGS }] = await Promise.all([
      import("../controllers/machine-controller.ts"),
      import("../controllers/machine-plan.ts"),
    ]);
    machines = new MachineController(ctx, {
      provider,
      settings: { ...DEFAULT_MACHINE_SETTINGS, ...options.machines?.settings },
      server: url,
      ...(tls ? { ca: tls.ca } : {}),
      createJoinToken: async ({ name, uses, expiresAt }) => {
        const { secret, token } = await createToken(store, {
          name,
          kind: "join",
          usesLeft: uses,
          expiresAt,
          createdBy: "machine provider",
        });
        return { secret, id: token.id };
      },
    });
  }
  metrics.selfUrl = url;
  metrics.start();
  alerts.externalUrl = url;
  await leadership.start(url, {
    begin: async () => {
      await controllers.start();
      if (options.remediation?.enabled !== false) remediation.start();
      machines?.start();
      leaderLoops.start();
    },
    end: async () => {
      controllers.stop();
      await Promise.all([remediation.stop(), machines?.stop(), leaderLoops.stop()]);
    },
  });
  logger.info("control plane listening", { url });

  return {
    url,
    port,
    adminToken: admin.token,
    adminTokenFile: admin.file,
    ...(tls ? { caFile: tls.caFile } : {}),
    ...(grpc ? { grpcUrl: grpc.url } : {}),
    store,
    controllers,
    metrics,
    alerts,
    settings,
    traces,
    logs,
    ingestTokens,
    secrets,
    leadership,
    leaderLoops,
    close: async () => {
      auth.stop();
      // Ends the term: the controllers and the leader loops stop.
      await leadership.close();
      informer.stop();
      // Open streams end first (watches, deploy logs, log follows): the HTTP server waits for every connection.
      shutdown.abort();
      logs.endStreams();
      await grpc?.close();
      closeAcceptors();
      await app.close();
      await gateways.close();
      await platform.stop();
      metrics.close();
      logs.close();
      audit.close();
      await traces.close();
      await store.close();
    },
  };
}
