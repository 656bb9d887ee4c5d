/**
 * Service discovery's internal listener (docs/service-discovery.md): apps
 * reach their tenant's services through the node's gateway without a public
 * host, with the same balancing, retries, breakers and shedding as public
 * routes, because a request here runs the same chain over the same backend.
 *
 *   instance ─ GET http://127.0.0.1:P/.herd/<caller token>/<app>/<service>/path ─► InternalListener
 *     token checked (common/internal-caller.ts: tenant/app/service + HMAC of the gateway's key)
 *       bad token ─► 403        no such service in the caller's tenant ─► 404
 *     route = one RouteEntry per (caller, service), made at first use per table:
 *       no CORS/auth/limit stages, the service's Backend from table.backends (shared endpoints,
 *       breaker, outlier and load state with public routes) ─► runChain (chain.ts) ─► upstream "/path"
 *
 * The tenant is the token's, so a caller can only name services of its own
 * tenant: another tenant's service is "not found", whatever the request
 * says. The request's spans name the caller (`Series.caller`), so the
 * dependency map draws caller → service. Listens on 127.0.0.1 by default:
 * only processes of this machine reach it (the firewall lets instance uids
 * reach it, firewall.ts).
 *
 * WebSocket upgrades take the same path (the chain tunnels them, tunnel.ts).
 * Its requests count in the proxy's /metrics (`route="internal"` with a
 * `caller` label; refusals too: 403 with no caller, 404 with the caller and
 * no service), and its connections in the open-connections gauge: it hands
 * the proxy its series and server (`proxy.internal`). In a gateway with
 * workers every worker runs one on the same port (SO_REUSEPORT,
 * cluster-worker.ts).
 */

import { mkdirSync } from "node:fs";
import type * as http from "node:http";
import net, { type AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import type { Duplex } from "node:stream";
import { HerdError } from "../common/errors.ts";
import {
  type Caller,
  INTERNAL_PREFIX,
  keyFor,
  readInternalFile,
  verifyCaller,
  writeInternalFile,
} from "../common/internal-caller.ts";
import type { Logger } from "../common/log.ts";
import { nodeHttp } from "../common/node-http.ts";
import { serviceKey } from "../model/objects.ts";
import { runChain } from "./chain.ts";
import { Exchange } from "./exchange.ts";
import { forwardedRequest } from "./forwarded.ts";
import * as metrics from "./metrics.ts";
import type { GatewayProxy } from "./proxy.ts";
import { answered, sendJson, writeRawError } from "./replies.ts";
import type { RouteEntry, RouteTable } from "./route-table.ts";
import { compileStages } from "./stages.ts";

/** The route label of internal requests in metrics and spans. */
export const INTERNAL_ROUTE = "internal";

const ROUND_ROBIN: RouteEntry["balance"] = { kind: "round_robin" };
const NO_LIMITS = compileStages({ cors: null, auth: null, limit: null, aggregate: null });

/** Where an internal request goes: its route and upstream path, or why it is refused and where that counts. */
type Resolved =
  | { route: RouteEntry; path: string }
  | {
      route: undefined;
      status: number;
      code: string;
      message: string;
      outcome: number;
      series: metrics.Series;
    };

const NO_TOKEN_MESSAGE =
  "internal requests need a caller token: use the HERD_SERVICE_<APP>_<SERVICE>_URL your instance was given";

export class InternalListener {
  readonly server: http.Server;
  readonly #proxy: GatewayProxy;
  readonly #key: Buffer;
  /** Internal routes of the current table by `caller key → service key`; made again for each new table. */
  #routes = new Map<string, RouteEntry>();
  #table: RouteTable | null = null;
  /** Request counters by caller and service, kept while the service is in the table (like a route's stats). */
  readonly #stats = new Map<string, metrics.RouteStats>();
  /** Requests refused for their token (403): no caller to name. */
  readonly #forbidden = new metrics.Series(
    metrics.labelText({ route: INTERNAL_ROUTE, tenant: "", app: "", service: "", caller: "" }),
  );
  /** Requests for a service the caller's tenant does not have (404), by caller. */
  readonly #missing = new Map<string, metrics.Series>();

  constructor(proxy: GatewayProxy, key: Buffer) {
    this.#proxy = proxy;
    this.#key = key;
    this.server = nodeHttp.createServer((req, res) => this.#onRequest(req, res));
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 0;
    this.server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#onUpgrade(req, socket, head),
    );
    proxy.internal = this;
  }

  /** Every series of internal requests, for the proxy's /metrics (metrics.processFamilies). */
  series(): metrics.Series[] {
    const all = [this.#forbidden, ...this.#missing.values()];
    for (const stats of this.#stats.values()) all.push(stats.home);
    return all;
  }

  /** Listens (port 0: a free one) with SO_REUSEPORT, so a successor gateway serves the same port; resolves with the port. */
  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen({ port, host, reusePort: true }, () => {
        this.server.off("error", reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  async close(): Promise<void> {
    this.server.close();
    this.server.closeAllConnections();
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const started = performance.now();
    const found = this.#resolve(req.url ?? "/");
    if (found.route === undefined) {
      sendJson(res, found.status, { code: found.code, message: found.message });
      answered(found.series, res, found.outcome, started);
      return;
    }
    const proxy = this.#proxy;
    const x = new Exchange(proxy, req, res, null, null, started);
    forwardedRequest(x, req, "http", proxy.spans);
    const gatewayRes = res as http.ServerResponse & { hop?: unknown; spans?: unknown };
    if (x.hop !== null) {
      gatewayRes.hop = x.hop;
      gatewayRes.spans = proxy.spans ?? undefined;
    }
    this.#run(x, found.route, found.path);
  }

  /** A WebSocket (any Upgrade): the same checks and chain; the chain tunnels it (tunnel.ts). Records no span. */
  #onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const started = performance.now();
    socket.on("error", () => socket.destroy());
    const found = this.#resolve(req.url ?? "/");
    if (found.route === undefined) {
      writeRawError(socket, found.status, found.code, found.message);
      found.series.record(found.status, found.outcome, performance.now() - started);
      return;
    }
    const x = new Exchange(this.#proxy, req, null, socket, head, started);
    forwardedRequest(x, req, "http", null);
    this.#run(x, found.route, found.path);
  }

  #run(x: Exchange, route: RouteEntry, path: string): void {
    x.url = path;
    x.route = route;
    x.series = route.stats.home;
    runChain(x);
  }

  /** The request's internal route and upstream path, or why it is refused and where that counts. */
  #resolve(url: string): Resolved {
    const target = parseTarget(url);
    const caller = target === null ? null : verifyCaller(this.#key, target.token);
    if (target === null || caller === null) {
      return {
        route: undefined,
        status: 403,
        code: "forbidden",
        message: NO_TOKEN_MESSAGE,
        outcome: metrics.UNAUTHORIZED,
        series: this.#forbidden,
      };
    }
    const route = this.#route(caller, target.app, target.service);
    if (route !== undefined) return { route, path: target.path };
    return {
      route: undefined,
      status: 404,
      code: "not_found",
      message: `no service ${target.app}/${target.service} in tenant ${caller.tenant}`,
      outcome: metrics.NO_ROUTE,
      series: this.#missingOf(caller),
    };
  }

  /** The 404 series of one caller (callers are signed by the key, so their number is bounded). */
  #missingOf(caller: Caller): metrics.Series {
    const from = `${caller.app}/${caller.service}`;
    const id = `${caller.tenant}/${from}`;
    let series = this.#missing.get(id);
    if (series === undefined) {
      series = new metrics.Series(
        metrics.labelText({
          route: INTERNAL_ROUTE,
          tenant: caller.tenant,
          app: "",
          service: "",
          caller: from,
        }),
      );
      this.#missing.set(id, series);
    }
    return series;
  }

  /** The internal route from `caller` to a service of its tenant, or undefined when there is no such service. */
  #route(caller: Caller, app: string, service: string): RouteEntry | undefined {
    const table = this.#proxy.table;
    if (table !== this.#table) {
      this.#table = table;
      this.#routes = new Map();
      // A service gone from the table takes its counters along, as a public route's do.
      for (const [id, stats] of this.#stats) {
        if (!table.backends.has(stats.home.service)) this.#stats.delete(id);
      }
    }
    const key = serviceKey(caller.tenant, app, service);
    const from = `${caller.app}/${caller.service}`;
    const id = `${from} ${key}`;
    let route = this.#routes.get(id);
    if (route !== undefined) return route;
    const backend = table.backends.get(key);
    if (backend === undefined) return undefined;
    let stats = this.#stats.get(id);
    if (stats === undefined) {
      stats = new metrics.RouteStats(INTERNAL_ROUTE, key, backend.load, from);
      this.#stats.set(id, stats);
    }
    route = {
      id: `${INTERNAL_ROUTE} ${id}`,
      prefix: "/",
      exact: false,
      methods: null,
      headers: null,
      rewrite: null,
      priority: 0,
      balance: ROUND_ROBIN,
      fallback: null,
      cors: null,
      mirror: null,
      split: null,
      limit: null,
      auth: null,
      aggregate: null,
      stats,
      timeouts: null,
      backend,
      stages: NO_LIMITS,
    };
    this.#routes.set(id, route);
    return route;
  }
}

/** `/.herd/<token>/<app>/<service>[/rest][?query]` → its parts, the upstream path `/rest?query`; null when malformed. */
export function parseTarget(
  url: string,
): { token: string; app: string; service: string; path: string } | null {
  if (!url.startsWith(INTERNAL_PREFIX)) return null;
  const parts: string[] = [];
  let at = INTERNAL_PREFIX.length;
  for (let i = 0; i < 3; i++) {
    let end = at;
    while (end < url.length && url[end] !== "/" && url[end] !== "?") end++;
    if (end === at) return null;
    parts.push(url.slice(at, end));
    at = end;
    if (i < 2) {
      if (url[at] !== "/") return null;
      at++;
    }
  }
  const rest = url.slice(at);
  const path = rest === "" ? "/" : rest.startsWith("?") ? `/${rest}` : rest;
  return { token: parts[0], app: parts[1], service: parts[2], path };
}

/** Where the internal listener listens: loopback only. */
export const INTERNAL_HOST = "127.0.0.1";

/** The internal listener's port and key, and the file (`<dataDir>/internal.json`) that publishes them. */
export interface InternalAddress {
  file: string;
  port: number;
  key: Buffer;
}

/**
 * The internal listener's port and key, chosen before any process listens
 * (the primary of a gateway with workers hands both to every worker): the
 * key an earlier gateway kept in `<dataDir>/internal.json`, else a new one; for `port` 0 the
 * port it used if that can still be bound (SO_REUSEPORT: a predecessor that
 * still drains holds it, and that is fine), else a free one. A fixed `port`
 * that cannot be bound fails with the flag named.
 */
export async function chooseInternalAddress(
  dataDir: string,
  port: number,
  logger: Logger,
): Promise<InternalAddress> {
  const file = join(dataDir, "internal.json");
  const saved = readInternalFile(file);
  const key = keyFor(saved);
  const savedPort = saved ? Number(new URL(saved.url).port) : 0;
  const wanted = port === 0 ? savedPort : port;
  if (wanted !== 0) {
    if ((await tryBind(wanted)) !== null) return { file, port: wanted, key };
    if (port !== 0) {
      throw new HerdError("unavailable", `port ${port} is in use by another program; pass --internal-port`);
    }
    logger.warn(
      "the internal listener's earlier port is taken; instances started before get new URLs when restarted",
      { port: savedPort },
    );
  }
  const free = await tryBind(0);
  if (free === null) throw new HerdError("unavailable", `no free port on ${INTERNAL_HOST}`);
  return { file, port: free, key };
}

/** Publishes the listener's URL and key for the node's agent (`--internal-gateway`), once it listens. */
export function publishInternal({ file, port, key }: InternalAddress, logger: Logger): void {
  mkdirSync(dirname(file), { recursive: true });
  const url = `http://${INTERNAL_HOST}:${port}`;
  writeInternalFile(file, { url, key: key.toString("base64url") });
  logger.info("internal listener", { url });
}

/**
 * Binds `port` on loopback and closes it at once: the port bound, or null when
 * it cannot be. A given port is tried with SO_REUSEPORT (as the listener binds
 * it); port 0 without, so the kernel picks a port nobody holds.
 */
function tryBind(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(null));
    server.listen({ port, host: INTERNAL_HOST, reusePort: port !== 0 }, () => {
      const bound = (server.address() as AddressInfo).port;
      server.close(() => resolve(bound));
    });
  });
}
