/**
 * `herd gateway`: the reverse proxy in front of every app. It follows the
 * control plane (config-source.ts), swaps in each new RouteTable whole, and
 * proxies requests to running instances (proxy.ts).
 */

import type http from "node:http";
import { hostname } from "node:os";
import { join } from "node:path";
import { createLogger, type Logger } from "../common/log.ts";
import { type MetricsServer, startMetricsServer } from "../common/metrics-server.ts";
import { UrlGuard } from "../common/url-guard.ts";
import { AcmeChallenges } from "./acme-challenge.ts";
import { type BuildResult, ConfigSource } from "./config-source.ts";
import { drainServers } from "./drain.ts";
import { ActiveProber, markDown } from "./health-probe.ts";
import { HeldRequests, wakeByControlPlane } from "./hold.ts";
import { OnDemandCertificates } from "./host-certificates.ts";
import {
  chooseInternalAddress,
  INTERNAL_HOST,
  InternalListener,
  publishInternal,
} from "./internal-listener.ts";
import { LoadReporter } from "./load-reporter.ts";
import { processFamilies, renderText, tableFamilies } from "./metrics.ts";
import { GatewayProxy } from "./proxy.ts";
import type { RouteTable } from "./route-table.ts";
import { shipSpans } from "./spans.ts";
import { StatusReporter } from "./status-reporter.ts";
import { type CertificateFiles, loadCertificates, watchCertificates } from "./tls.ts";

/** How a gateway is started. */
export interface GatewayOptions {
  /** Control-plane base URL, e.g. `http://127.0.0.1:7070`. */
  server: string;
  /** Bearer token for the control plane's snapshot and watch. */
  token: string;
  /** Port to serve on: default 8080; 0 picks a free one. */
  port?: number;
  /** Address to listen on: default 0.0.0.0. */
  host?: string;
  /** Where the configuration cache lives (`gateway-cache.json`). */
  dataDir: string;
  logger?: Logger;
  /** An upstream silent this long gets a 504. Default 60 s. */
  upstreamTimeoutMs?: number;
  /** This gateway's id in the control plane's GET /api/v1/gateways. Default `<hostname>:<port>`. */
  id?: string;
  /** Share of new traces whose spans are recorded and shipped to the control plane (0..1). Default 1; 0: none. */
  traceSample?: number;
  /** How often it reports its status when nothing changes. Default 10 s. */
  statusIntervalMs?: number;
  /** How often it sends its live load figures (PUT /gateways/:id/load, load-reporter.ts). Default 1 s; 0: never. */
  loadIntervalMs?: number;
  /** Port of the metrics listener (GET /metrics); 0 picks a free one; unset: none. `herd gateway` defaults to 9180. */
  metricsPort?: number;
  /** Address of the metrics listener: default 127.0.0.1 (route names stay private). */
  metricsHost?: string;
  /** When `metricsPort` is taken, serve metrics on a free port (and warn) instead of failing. */
  metricsPortOrFree?: boolean;
  /** Serve HTTPS too: on this port (0 picks a free one) with these certificates (the first is the default). */
  https?: HttpsSettings;
  /** Internal addresses and CIDR ranges route JWKS URLs may reach (`--allow-fetch`); default none. */
  allowFetch?: readonly string[];
  /** The only directory route JWKS files are read from (`--jwks-dir`); default `<dataDir>/jwks`. */
  jwksDir?: string;
  /** Requests held for a service scaled to zero (hold.ts): per service and process, and how long. Defaults 100 / 30 s. */
  hold?: HoldSettings;
  /**
   * Bind with SO_REUSEPORT, so a successor (an upgraded gateway) can bind the
   * same ports while this one still serves, and this one then drains.
   */
  reusePort?: boolean;
  /**
   * Serve service discovery's internal listener on 127.0.0.1 at this port (0:
   * the port an earlier gateway used, else a free one; unset: none), and
   * publish its URL and key in `<dataDir>/internal.json` for the node's agent
   * (internal-listener.ts, docs/service-discovery.md). With workers, every
   * worker serves it (cluster.ts).
   */
  internalPort?: number;
}

/** How a gateway stops. */
export interface CloseOptions {
  /**
   * Drain first for up to this long (drain.ts): stop accepting, let requests
   * in flight finish, answer later ones with `Connection: close`, then cut
   * what is left. 0 (the default): cut every connection at once.
   */
  drainMs?: number;
  /**
   * Tell the control plane this gateway is gone (default true). False when a
   * successor with the same id serves on: its reports must not be undone.
   */
  goodbye?: boolean;
}

/** How this gateway's tables fetch and read route JWKS: the URL guard and the JWKS directory. */
export function jwksSettings(options: Pick<GatewayOptions, "allowFetch" | "jwksDir" | "dataDir">): {
  guard: UrlGuard;
  jwksDir: string;
} {
  return {
    guard: new UrlGuard({ allow: options.allowFetch }),
    jwksDir: options.jwksDir ?? join(options.dataDir, "jwks"),
  };
}

/** How many requests a service scaled to zero may have waiting (per process), and for how long (hold.ts). */
export interface HoldSettings {
  maxPerService?: number;
  timeoutMs?: number;
}

/** The requests this process holds for services scaled to zero, asking `control` to wake them. */
export function heldRequests(
  control: { server: string; token: string; logger: Logger },
  settings: HoldSettings = {},
): HeldRequests {
  return new HeldRequests({ ...settings, wake: wakeByControlPlane(control), logger: control.logger });
}

/** HTTPS beside HTTP: a port and certificate files, picked by SNI. */
export interface HttpsSettings {
  port: number;
  certificates: CertificateFiles[];
}

/** The default gateway id: the machine and the port. */
export const defaultGatewayId = (port: number): string => `${hostname()}:${port}`;

/** A running gateway. */
export interface Gateway {
  port: number;
  /** Base URL to reach it from this machine. */
  url: string;
  /** Where its metrics are (`http://…/metrics`), when it serves them. */
  metricsUrl?: string;
  /** The HTTPS port and URL, when it serves HTTPS. */
  httpsPort?: number;
  httpsUrl?: string;
  /** The table serving now. */
  table(): RouteTable;
  /** Drops the connection to the control plane and opens a new one (ConfigSource.reconnect). */
  reconnect(): void;
  /** Stops serving (draining first when asked), stops following the control plane, flushes the cache. */
  close(options?: CloseOptions): Promise<void>;
}

/**
 * Starts a gateway: loads the cached configuration (if any), listens, then
 * waits for the first snapshot attempt. If the control plane is down it keeps
 * serving the cache and keeps trying in the background.
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const logger = (options.logger ?? createLogger("herd")).child("gateway");
  const proxy = new GatewayProxy({ logger, upstreamTimeoutMs: options.upstreamTimeoutMs });
  const traces = tracesFor(options);
  proxy.spans = traces?.spans ?? null;
  let reporter: StatusReporter | undefined;
  let metrics: MetricsServer | undefined;
  // This process is the whole gateway: it probes the instances itself.
  const prober = new ActiveProber({ logger, onChange: (down) => markDown(proxy.table, down) });
  const source = new ConfigSource({
    server: options.server.replace(/\/+$/, ""),
    token: options.token,
    dataDir: options.dataDir,
    logger,
    onTable: (table) => {
      markDown(table, prober.down);
      proxy.table = table;
      prober.update(table);
    },
    onResult: () => reporter?.changed(),
    build: jwksSettings(options),
  });
  const control = { server: options.server.replace(/\/+$/, ""), token: options.token, logger };
  proxy.acmeChallenges = new AcmeChallenges(control);
  proxy.holds = heldRequests(control, options.hold);
  const onDemand = options.https ? hostCertificates(control, proxy) : undefined;
  // Bad certificate files fail the start before anything listens.
  const certificates = options.https ? loadCertificates(options.https.certificates, onDemand) : undefined;
  await source.loadCache();
  const host = options.host ?? "0.0.0.0";
  const reusePort = options.reusePort ?? false;
  const port = await proxy.listen(options.port ?? 8080, host, reusePort);
  let httpsPort: number | undefined;
  let unwatch = () => {};
  if (options.https && certificates) {
    try {
      httpsPort = await proxy.listenHttps(options.https.port, host, certificates, reusePort);
    } catch (err) {
      await proxy.close();
      throw err;
    }
    unwatch = watchCertificates(
      options.https.certificates,
      logger,
      (next) => proxy.useCertificates(next),
      undefined,
      onDemand,
    );
  }
  let internal: InternalListener | undefined;
  if (options.internalPort !== undefined) {
    try {
      internal = await startInternal(proxy, options.dataDir, options.internalPort, logger);
    } catch (err) {
      unwatch();
      await proxy.close();
      throw err;
    }
  }
  const reachable = reachableHost(host);
  const url = `http://${reachable}:${port}`;
  const httpsUrl = httpsPort === undefined ? undefined : `https://${reachable}:${httpsPort}`;
  reporter = new StatusReporter({
    server: options.server,
    token: options.token,
    id: options.id ?? defaultGatewayId(port),
    logger,
    intervalMs: options.statusIntervalMs,
    current: () => {
      const result = source.lastResult;
      // The metrics URL once it listens: the control plane scrapes it while this gateway reports.
      return (
        result && { ...reportOf(result), url, workers: 1, ...(metrics ? { metricsUrl: metrics.url } : {}) }
      );
    },
  });
  reporter.start();
  const load = loadReporter(options, options.id ?? defaultGatewayId(port), logger, () => proxy.table);
  load?.start();
  await source.start();
  if (options.metricsPort !== undefined) {
    try {
      metrics = await startMetricsServer({
        port: options.metricsPort,
        host: options.metricsHost ?? "127.0.0.1",
        orFreePort: options.metricsPortOrFree,
        logger,
        component: "gateway",
        render: async () => renderText([...(await processFamilies(proxy)), ...tableFamilies(proxy.table, 1)]),
      });
      reporter.changed();
    } catch (err) {
      unwatch();
      prober.close();
      await Promise.all([proxy.close(), source.close(), reporter?.close(), load?.close(), internal?.close()]);
      throw err;
    }
  }
  logger.info("gateway listening", {
    url,
    httpsUrl,
    metrics: metrics?.url,
    version: proxy.table.version,
    routes: proxy.table.routeCount,
  });
  return {
    port,
    url,
    metricsUrl: metrics?.url,
    httpsPort,
    httpsUrl,
    table: () => proxy.table,
    reconnect: () => source.reconnect(),
    close: async ({ drainMs = 0, goodbye = true } = {}) => {
      if (drainMs > 0) await drainServers(listeners(proxy), drainMs);
      unwatch();
      prober.close();
      await Promise.all([
        proxy.close(),
        source.close(),
        reporter?.close(goodbye),
        load?.close(),
        metrics?.close(),
        traces?.close(),
        internal?.close(),
      ]);
    },
  };
}

/** Starts the internal listener on 127.0.0.1 and writes `internal.json` (same key and port as the last gateway's when it can). */
async function startInternal(
  proxy: GatewayProxy,
  dataDir: string,
  wanted: number,
  logger: Logger,
): Promise<InternalListener> {
  const address = await chooseInternalAddress(dataDir, wanted, logger);
  const listener = new InternalListener(proxy, address.key);
  await listener.listen(address.port, INTERNAL_HOST);
  publishInternal(address, logger);
  return listener;
}

/** Routed hosts' certificates from the control plane, for the hosts `proxy`'s current table serves. */
export function hostCertificates(
  control: { server: string; token: string; logger: Logger },
  proxy: GatewayProxy,
): OnDemandCertificates {
  return new OnDemandCertificates({ ...control, routed: (name) => proxy.table.servesHost(name) });
}

/** The proxy's listening servers: HTTP, HTTPS and the internal listener when it serves those. */
export function listeners(proxy: GatewayProxy): http.Server[] {
  const servers = [proxy.server];
  if (proxy.httpsServer !== undefined) servers.push(proxy.httpsServer);
  if (proxy.internal !== null) servers.push(proxy.internal.server);
  return servers;
}

/** What a build's outcome says to the control plane (ACK or NACK). */
export function reportOf(result: BuildResult): {
  version: number;
  applied: boolean;
  error?: string;
  serving: number;
  routes: number;
} {
  return {
    version: result.version,
    applied: result.applied,
    ...(result.error !== undefined ? { error: result.error } : {}),
    serving: result.serving.version,
    routes: result.serving.routeCount,
  };
}

/** The live load reports of a gateway process (`id`), unless their interval is 0. */
export function loadReporter(
  options: Pick<GatewayOptions, "server" | "token" | "loadIntervalMs">,
  id: string,
  logger: Logger,
  table: () => RouteTable,
): LoadReporter | undefined {
  const intervalMs = options.loadIntervalMs ?? 1000;
  if (intervalMs <= 0) return undefined;
  return new LoadReporter({
    server: options.server,
    token: options.token,
    id,
    logger,
    intervalMs,
    book: () => table().load,
  });
}

/** The gateway's span shipping, unless its sample rate is 0. */
export function tracesFor(options: Pick<GatewayOptions, "server" | "token" | "traceSample">) {
  const sample = options.traceSample ?? 1;
  return sample > 0 ? shipSpans(options.server, options.token, sample) : undefined;
}

/** The address to reach a listening host from this machine. */
export function reachableHost(host: string): string {
  return host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
}
