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
 */

import type * as http from "node:http";
import type { AddressInfo } from "node:net";
import { type Caller, INTERNAL_PREFIX, verifyCaller } from "../common/internal-caller.ts";
import { nodeHttp } from "../common/node-http.ts";
import { serviceKey } from "../model/objects.ts";
import { runChain } from "./chain.ts";
import { Exchange } from "./exchange.ts";
import { forwardedRequest } from "./forwarded.ts";
import * as metrics from "./metrics.ts";
import type { GatewayProxy } from "./proxy.ts";
import { sendJson } from "./replies.ts";
import type { RouteEntry, RouteTable } from "./route-table.ts";
import { compileStages } from "./stages.ts";

/** The route label of internal requests in metrics and spans. */
export const INTERNAL_ROUTE = "internal";

const ROUND_ROBIN: RouteEntry["balance"] = { kind: "round_robin" };
const NO_LIMITS = compileStages({ cors: null, auth: null, limit: null, aggregate: null });

export class InternalListener {
  readonly server: http.Server;
  readonly #proxy: GatewayProxy;
  readonly #key: Buffer;
  /** Internal routes of the current table by `caller key → service key`; made again for each new table. */
  #routes = new Map<string, RouteEntry>();
  #table: RouteTable | null = null;
  /** Request counters by caller and service, kept across tables (like a route's stats). */
  readonly #stats = new Map<string, metrics.RouteStats>();

  constructor(proxy: GatewayProxy, key: Buffer) {
    this.#proxy = proxy;
    this.#key = key;
    this.server = nodeHttp.createServer((req, res) => this.#onRequest(req, res));
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 0;
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
    const target = parseTarget(req.url ?? "/");
    const caller = target === null ? null : verifyCaller(this.#key, target.token);
    if (target === null || caller === null) {
      sendJson(res, 403, {
        code: "forbidden",
        message:
          "internal requests need a caller token: use the HERD_SERVICE_<APP>_<SERVICE>_URL your instance was given",
      });
      return;
    }
    const route = this.#route(caller, target.app, target.service);
    if (route === undefined) {
      sendJson(res, 404, {
        code: "not_found",
        message: `no service ${target.app}/${target.service} in tenant ${caller.tenant}`,
      });
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
    x.url = target.path;
    x.route = route;
    x.series = route.stats.home;
    runChain(x);
  }

  /** The internal route from `caller` to a service of its tenant, or undefined when there is no such service. */
  #route(caller: Caller, app: string, service: string): RouteEntry | undefined {
    const table = this.#proxy.table;
    if (table !== this.#table) {
      this.#table = table;
      this.#routes = new Map();
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
      stats = new metrics.RouteStats(INTERNAL_ROUTE, key, backend.load);
      stats.home.caller = from;
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
