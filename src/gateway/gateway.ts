/**
 * `herd gateway`: the reverse proxy in front of every app. It follows the
 * control plane (config-source.ts), swaps in each new RouteTable whole, and
 * proxies requests to running instances (proxy.ts).
 */

import { hostname } from "node:os";
import { createLogger, type Logger } from "../common/log.ts";
import { type BuildResult, ConfigSource } from "./config-source.ts";
import { processFamilies, renderText, tableFamilies } from "./metrics.ts";
import { type MetricsServer, startMetricsServer } from "./metrics-server.ts";
import { GatewayProxy } from "./proxy.ts";
import type { RouteTable } from "./route-table.ts";
import { StatusReporter } from "./status-reporter.ts";

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
  /** How often it reports its status when nothing changes. Default 10 s. */
  statusIntervalMs?: number;
  /** Port of the metrics listener (GET /metrics); 0 picks a free one; unset: none. `herd gateway` defaults to 9180. */
  metricsPort?: number;
  /** Address of the metrics listener: default 127.0.0.1 (route names stay private). */
  metricsHost?: string;
  /** When `metricsPort` is taken, serve metrics on a free port (and warn) instead of failing. */
  metricsPortOrFree?: boolean;
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
  /** The table serving now. */
  table(): RouteTable;
  /** Stops serving, stops following the control plane, flushes the cache. */
  close(): Promise<void>;
}

/**
 * Starts a gateway: loads the cached configuration (if any), listens, then
 * waits for the first snapshot attempt. If the control plane is down it keeps
 * serving the cache and keeps trying in the background.
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const logger = (options.logger ?? createLogger("herd")).child("gateway");
  const proxy = new GatewayProxy({ logger, upstreamTimeoutMs: options.upstreamTimeoutMs });
  let reporter: StatusReporter | undefined;
  const source = new ConfigSource({
    server: options.server.replace(/\/+$/, ""),
    token: options.token,
    dataDir: options.dataDir,
    logger,
    onTable: (table) => {
      proxy.table = table;
    },
    onResult: () => reporter?.changed(),
  });
  await source.loadCache();
  const host = options.host ?? "0.0.0.0";
  const port = await proxy.listen(options.port ?? 8080, host);
  const reachable =
    host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  const url = `http://${reachable}:${port}`;
  reporter = new StatusReporter({
    server: options.server,
    token: options.token,
    id: options.id ?? defaultGatewayId(port),
    logger,
    intervalMs: options.statusIntervalMs,
    current: () => {
      const result = source.lastResult;
      return result && { ...reportOf(result), url, workers: 1 };
    },
  });
  reporter.start();
  await source.start();
  let metrics: MetricsServer | undefined;
  if (options.metricsPort !== undefined) {
    try {
      metrics = await startMetricsServer({
        port: options.metricsPort,
        host: options.metricsHost ?? "127.0.0.1",
        orFreePort: options.metricsPortOrFree,
        logger,
        render: async () => renderText([...(await processFamilies(proxy)), ...tableFamilies(proxy.table, 1)]),
      });
    } catch (err) {
      await Promise.all([proxy.close(), source.close(), reporter?.close()]);
      throw err;
    }
  }
  logger.info("gateway listening", {
    url,
    metrics: metrics?.url,
    version: proxy.table.version,
    routes: proxy.table.routeCount,
  });
  return {
    port,
    url,
    metricsUrl: metrics?.url,
    table: () => proxy.table,
    close: async () => {
      await Promise.all([proxy.close(), source.close(), reporter?.close(), metrics?.close()]);
    },
  };
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
