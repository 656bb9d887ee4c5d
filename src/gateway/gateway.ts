/**
 * `herd gateway`: the reverse proxy in front of every app. It follows the
 * control plane (config-source.ts), swaps in each new RouteTable whole, and
 * proxies requests to running instances (proxy.ts).
 */

import { hostname } from "node:os";
import { createLogger, type Logger } from "../common/log.ts";
import { type BuildResult, ConfigSource } from "./config-source.ts";
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
}

/** The default gateway id: the machine and the port. */
export const defaultGatewayId = (port: number): string => `${hostname()}:${port}`;

/** A running gateway. */
export interface Gateway {
  port: number;
  /** Base URL to reach it from this machine. */
  url: string;
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
  logger.info("gateway listening", { url, version: proxy.table.version, routes: proxy.table.routeCount });
  return {
    port,
    url,
    table: () => proxy.table,
    close: async () => {
      await Promise.all([proxy.close(), source.close(), reporter?.close()]);
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
