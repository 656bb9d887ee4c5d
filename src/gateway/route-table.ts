/**
 * The gateway's routing table: pure logic, built once per configuration
 * change from the control plane's objects, then only read per request.
 *
 * Everything that can be computed ahead is computed here (lowercased hosts,
 * normalised prefixes sorted longest first, endpoint lists), so a lookup is a
 * map hit or two and a short scan of prefixes.
 */

import type { Logger } from "../common/log.ts";
import type { UrlGuard } from "../common/url-guard.ts";
import { effectiveTraffic, routeIdentity } from "../model/gateway-view.ts";
import type { RouteObject } from "../model/live-config.ts";
import type { BalanceSpec, Route, RouteTimeouts } from "../model/manifest.ts";
import { type Consumer, type Instance, type Node, type Service, serviceKey } from "../model/objects.ts";
import { type AuthState, emptyAuthState, indexConsumers, RouteAuth, type RouteAuthContext } from "./auth.ts";
import { Backend, type Endpoint, fnv1a, SHED_ABOVE, servicePolicies } from "./backend.ts";
import { Cors } from "./cors.ts";
import type { JwksTiming } from "./jwks.ts";
import { LoadBook } from "./load-recorder.ts";
import { RouteStats, routeLabel } from "./metrics.ts";
import { NodeBook } from "./node-health.ts";
import type { LeaseClient } from "./rate-lease.ts";
import { type Aggregation, buildAggregation } from "./route-aggregation.ts";
import { RouteLimit } from "./route-limit.ts";
import {
  byPrecedence,
  firstMatch,
  NO_HEADERS,
  normalizeHost,
  normalizePrefix,
  type RequestHeaders,
} from "./route-match.ts";
import { routeObjectSources } from "./route-objects.ts";
import { buildMirror, buildReleases, buildSplit, type Mirror, type Split } from "./route-split.ts";
import { compileStages } from "./stages.ts";

export { Backend, type Endpoint };

/**
 * One route under a host, compiled for matching: which requests (path,
 * method, headers) reach which backend, and how the path is rewritten.
 */
export interface RouteEntry {
  /** The route's identity (host, match, path, methods, headers). */
  readonly id: string;
  /** Normalised: starts with `/`, no trailing `/` except the root itself. */
  readonly prefix: string;
  /** Exact path match instead of a prefix. */
  readonly exact: boolean;
  /** Allowed methods, or null for any. */
  readonly methods: ReadonlySet<string> | null;
  /** Required [lowercase name, value] pairs, or null. */
  readonly headers: readonly (readonly [string, string])[] | null;
  /** Replacement for the matched prefix, or null to forward the path as it is. */
  readonly rewrite: string | null;
  readonly priority: number;
  /** How an instance is picked for this route. */
  readonly balance: BalanceSpec;
  /** The degraded answer when the service cannot answer, or null. */
  readonly fallback: Fallback | null;
  /** Cross-origin rules, or null. */
  readonly cors: Cors | null;
  /** Where shadow copies of bodiless requests go, or null. */
  readonly mirror: Mirror | null;
  /** A traffic split over this and other services, or null (all to `backend`). */
  readonly split: Split | null;
  /** The route's rate limit, or null. Kept across table rebuilds while its spec is unchanged. */
  readonly limit: RouteLimit | null;
  /** The credentials the route requires (auth.ts), or null when it is open. */
  readonly auth: RouteAuth | null;
  /** Answered by merging several services' JSON (aggregate.ts) instead of proxying to `backend`, or null. */
  readonly aggregate: Aggregation | null;
  /** Request counters for /metrics. Kept across table rebuilds while the route and its service stay. */
  readonly stats: RouteStats;
  /** Upstream timeouts set on the route (ms; absent: the proxy's defaults), or null. */
  readonly timeouts: RouteTimeouts | null;
  readonly backend: Backend;
  /** The stages its requests pass, in order (stages.ts), compiled with the table. */
  readonly stages: Uint8Array;
}

/** A route's degraded answer, encoded once when the table is built. */
export interface Fallback {
  status: number;
  body: Buffer;
  contentType: string;
}

/** How a table is built beyond the objects. */
export interface BuildOptions {
  /** The table this one replaces: rate-limit state of unchanged routes carries over. */
  previous?: RouteTable;
  /** This process's share of the traffic (1 / gateway workers); concurrency limits are scaled by it. */
  share?: number;
  /** A worker's link to the primary's rate-limit buckets (rate-lease.ts); without it limits are scaled by `share`. */
  leases?: LeaseClient;
  /** Where background work started by the table (JWKS fetches) reports failures. */
  logger?: Logger;
  /** JWKS cache timing (tests shorten it). */
  jwks?: JwksTiming;
  /** The only directory route JWKS files may be in (unset: none may be read). */
  jwksDir?: string;
  /** Checks route JWKS URLs (default: no internal address allowed). */
  guard?: UrlGuard;
}

/** The objects a table is built from. */
export interface RouteObjects {
  services: Service[];
  instances: Instance[];
  nodes: Node[];
  /** Consumers, for routes with `auth`. */
  consumers?: Consumer[];
  /** Routes set through the API (live-config.ts); validated here, a bad one fails the whole build. */
  routes?: RouteObject[];
}

/** An immutable-by-convention routing table; swap in a new one on each change. */
export class RouteTable {
  /** The control-plane revision this table was built from. */
  readonly version: number;
  /** Number of distinct host + path routes. */
  readonly routeCount: number;
  /** Configuration problems found while building (clashes, unknown nodes). The table still serves. */
  readonly problems: readonly string[];
  /** Every service's backend by service key (also services reached only through a split). */
  readonly backends: ReadonlyMap<string, Backend>;
  /** Whether any route matches on headers (else callers need not pass them). */
  readonly matchesHeaders: boolean;
  /** Parsed keys and JWKS caches, handed to the next table. */
  readonly auth: AuthState;
  /** What this gateway suspects about the nodes (node-health.ts), handed to the next table. */
  readonly nodes: NodeBook;
  /** The live load counters of every service and instance (load-recorder.ts), handed to the next table. */
  readonly load: LoadBook;
  readonly #exact: Map<string, RouteEntry[]>;
  /** Keyed by the suffix after `*.`, e.g. `example.com`. */
  readonly #wildcard: Map<string, RouteEntry[]>;

  constructor(
    version: number,
    exact: Map<string, RouteEntry[]>,
    wildcard: Map<string, RouteEntry[]>,
    backends: Map<string, Backend>,
    routeCount: number,
    problems: string[],
    auth: AuthState = emptyAuthState(),
    nodes: NodeBook = new NodeBook(),
    load: LoadBook = new LoadBook(),
  ) {
    this.version = version;
    this.auth = auth;
    this.nodes = nodes;
    this.load = load;
    this.#exact = exact;
    this.#wildcard = wildcard;
    this.backends = backends;
    this.routeCount = routeCount;
    this.problems = problems;
    const usesHeaders = (lists: Iterable<RouteEntry[]>) =>
      [...lists].some((l) => l.some((r) => r.headers !== null));
    this.matchesHeaders = usesHeaders(exact.values()) || usesHeaders(wildcard.values());
  }

  /**
   * The route for a request. `host` is the Host header as sent (any case,
   * maybe with a port); `path` is the request target, and may carry a query
   * string (`?` ends a segment like `/` does).
   *
   * Exact host first, then wildcards from the longest suffix to the shortest.
   * Within a host, routes are tried by priority (highest first), then exact
   * paths before prefixes, then longer prefixes before shorter ones; the first
   * whose path, method and headers all match wins. A host whose routes match
   * nothing falls through to the next candidate.
   */
  route(
    host: string,
    path: string,
    method = "GET",
    headers: RequestHeaders = NO_HEADERS,
  ): RouteEntry | undefined {
    const name = normalizeHost(host);
    const exact = this.#exact.get(name);
    if (exact !== undefined) {
      const hit = firstMatch(exact, path, method, headers);
      if (hit !== undefined) return hit;
    }
    if (this.#wildcard.size === 0) return undefined;
    // The leftmost dot gives the longest suffix, so the first hit is the most specific wildcard.
    for (let dot = name.indexOf("."); dot !== -1; dot = name.indexOf(".", dot + 1)) {
      const routes = this.#wildcard.get(name.slice(dot + 1));
      if (routes === undefined) continue;
      const hit = firstMatch(routes, path, method, headers);
      if (hit !== undefined) return hit;
    }
    return undefined;
  }

  /** The backend for a GET of `path` on `host` with no particular headers. */
  match(host: string, path: string): Backend | undefined {
    return this.route(host, path)?.backend;
  }

  /** Every route in the table. */
  *entries(): Iterable<RouteEntry> {
    for (const list of this.#exact.values()) yield* list;
    for (const list of this.#wildcard.values()) yield* list;
  }

  /** Whether any route names this host (exactly or by wildcard), for telling a wrong path from a wrong host. */
  servesHost(host: string): boolean {
    const name = normalizeHost(host);
    if (this.#exact.has(name)) return true;
    for (let dot = name.indexOf("."); dot !== -1; dot = name.indexOf(".", dot + 1)) {
      if (this.#wildcard.has(name.slice(dot + 1))) return true;
    }
    return false;
  }
}

/** An empty table (version 0): every request is answered 404. */
export const EMPTY_TABLE = new RouteTable(0, new Map(), new Map(), new Map(), 0, []);

/**
 * Builds a table from the services, instances and nodes the control plane
 * holds. Routes come from each service's `spec.routes`; a service's endpoints
 * are its instances in state `running` (any release) at their node's address.
 * When two services declare the same host and path, the first by service key
 * wins and the clash is listed in `problems`.
 */
export function buildRouteTable(
  objects: RouteObjects,
  version: number,
  options: BuildOptions = {},
): RouteTable {
  const share = options.share ?? 1;
  const previousLimits = new Map<string, RouteLimit>();
  const previousStats = new Map<string, RouteStats>();
  for (const entry of options.previous?.entries() ?? []) {
    if (entry.limit !== null) previousLimits.set(`${entry.backend.service} ${entry.id}`, entry.limit);
    previousStats.set(`${entry.backend.service} ${entry.id}`, entry.stats);
  }
  const problems: string[] = [];
  // Consumers are indexed once per tenant; routes with auth point at their tenant's index.
  const authState = emptyAuthState();
  let authContext: RouteAuthContext | null = null;
  const authFor = (spec: NonNullable<Route["auth"]>, tenant: string): RouteAuth => {
    authContext ??= {
      consumers: indexConsumers(objects.consumers ?? [], authState, options.previous?.auth, problems),
      state: authState,
      previous: options.previous?.auth,
      logger: options.logger,
      jwksTiming: options.jwks,
      jwksDir: options.jwksDir ?? null,
      guard: options.guard,
      problems,
    };
    return new RouteAuth(spec, tenant, authContext);
  };
  const addresses = new Map<string, string>();
  // What this gateway learnt about the nodes (suspect after a refused connection) carries over.
  const nodeBook = options.previous?.nodes ?? new NodeBook();
  nodeBook.keepOnly(new Set(objects.nodes.map((node) => node.name)));
  // The load counters carry over too, so a table swap loses no count.
  const loadBook = options.previous?.load ?? new LoadBook();
  loadBook.beginBuild();
  // Nodes whose heartbeats stopped (not_ready) are probably dead: their instances are used only
  // while a service has no instance elsewhere, so a dead machine's traffic moves off it within
  // seconds instead of waiting for the node to be declared lost.
  const unready = new Set<string>();
  for (const node of objects.nodes) {
    addresses.set(node.name, node.address);
    if (node.state !== "ready") unready.add(node.name);
  }

  const endpointsByService = new Map<string, Endpoint[]>();
  const standbyByService = new Map<string, Endpoint[]>();
  for (const instance of objects.instances) {
    if (instance.state !== "running" || instance.node === null) continue;
    const address = addresses.get(instance.node);
    if (address === undefined) {
      problems.push(
        `instance ${instance.id} runs on node ${instance.node}, which is not known; it gets no traffic`,
      );
      continue;
    }
    if (instance.port === undefined) {
      problems.push(`instance ${instance.id} is running but has no port; it gets no traffic`);
      continue;
    }
    const key = serviceKey(instance.tenant, instance.app, instance.service);
    const lists = unready.has(instance.node) ? standbyByService : endpointsByService;
    let list = lists.get(key);
    if (list === undefined) {
      list = [];
      lists.set(key, list);
    }
    list.push({
      instance: instance.id,
      release: instance.release,
      load: loadBook.instance(loadBook.service(key), instance.id, instance.release),
      address,
      port: instance.port,
      inflight: 0,
      seed: fnv1a(instance.id),
      down: false,
      node: nodeBook.of(instance.node),
    });
  }

  // Sorted by key so that the winner of a clash does not depend on arrival order.
  const services = objects.services
    .map((service) => ({ key: serviceKey(service.tenant, service.app, service.name), service }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

  const exact = new Map<string, RouteEntry[]>();
  const wildcard = new Map<string, RouteEntry[]>();
  const backends = new Map<string, Backend>();
  /** `host path` → the service key that owns it. */
  const owners = new Map<string, string>();

  /** Blue/green: the new release's own backend, served at its preview host. */
  const previews: { key: string; service: Service; routes: Route[]; backend: Backend }[] = [];
  // Every service gets a backend (a split may send traffic to a service without routes of its own).
  for (const { key, service } of services) {
    const endpoints = (endpointsByService.get(key) ?? standbyByService.get(key) ?? []).sort(byInstance);
    const traffic = effectiveTraffic(service);
    const name = `${service.app}/${service.name}`;
    const policies = servicePolicies(service, options.previous?.backends.get(key)?.policies);
    const settings = {
      shedAbove: SHED_ABOVE[traffic.criticality ?? "normal"],
      // Each worker takes its share of a service's concurrency limit.
      concurrency: traffic.concurrency
        ? Math.max(1, Math.floor(traffic.concurrency * (options.share ?? 1)))
        : undefined,
      probe: service.spec.probe ?? null,
      nodes: nodeBook,
      counters: loadBook.service(key),
      // A degraded service (remediation's route switch) answers with its fallback, on either release.
      degraded: traffic.fallback === true,
    };
    const { releases, preview } = buildReleases(key, name, service, endpoints, policies, settings);
    if (preview !== null) previews.push({ key, service, ...preview });
    const backend = new Backend(key, name, endpoints, policies, {
      ...settings,
      scalesToZero: service.spec.autoscale?.min === 0,
      releases,
    });
    backends.set(key, backend);
  }

  // herd.yaml's routes first, then route objects: a clash between them keeps the herd.yaml route.
  const sources: { key: string; service: Service; routes: Route[]; backend?: Backend }[] = [
    ...services.map(({ key, service }) => ({
      key,
      service,
      routes: (service.spec?.routes ?? []) as Route[],
    })),
    ...routeObjectSources(objects.routes ?? []),
    ...previews,
  ];
  for (const { key, service, routes, backend: own } of sources) {
    if (routes.length === 0) continue;
    // A route object whose service is gone gets a backend without endpoints: 503, like a service scaled to 0.
    const backend =
      own ??
      backends.get(key) ??
      new Backend(key, `${service.app}/${service.name}`, [], undefined, { counters: loadBook.service(key) });
    for (const route of routes) {
      const host = route.host.toLowerCase();
      const prefix = normalizePrefix(route.path);
      const id = routeIdentity({ ...route, path: prefix });
      const owner = owners.get(id);
      if (owner === key) continue;
      if (owner !== undefined) {
        problems.push(`route ${describeRoute(route)} is declared by ${owner} and ${key}; ${owner} serves it`);
        continue;
      }
      owners.set(id, key);
      const isWildcard = host.startsWith("*.");
      const index = isWildcard ? wildcard : exact;
      const name = isWildcard ? host.slice(2) : host;
      let list = index.get(name);
      if (list === undefined) {
        list = [];
        index.set(name, list);
      }
      const headers = Object.entries(route.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
      let limit: RouteLimit | null = null;
      if (route.rateLimit) {
        const kept = previousLimits.get(`${key} ${id}`);
        limit =
          kept?.spec === JSON.stringify(route.rateLimit)
            ? kept
            : new RouteLimit(route.rateLimit, share, `${key} ${id}`, options.leases ?? null);
      }
      const cors = route.cors ? new Cors(route.cors) : null;
      const auth = route.auth ? authFor(route.auth, service.tenant) : null;
      const aggregate = route.aggregate
        ? buildAggregation(route.aggregate, service, backends, problems)
        : null;
      list.push({
        id,
        balance: route.balance ?? ROUND_ROBIN,
        cors,
        mirror: buildMirror(route.mirror, service, backends, problems),
        split: route.split
          ? buildSplit(backend, route.split.to, route.split.sticky, service, backends, problems)
          : null,
        fallback: route.fallback
          ? {
              status: route.fallback.status,
              body: Buffer.from(route.fallback.body),
              contentType: route.fallback.contentType,
            }
          : null,
        limit,
        auth,
        aggregate,
        stages: compileStages({ cors, auth, limit, aggregate }),
        stats:
          previousStats.get(`${key} ${id}`) ??
          new RouteStats(routeLabel({ ...route, path: prefix }), key, backend.load),
        timeouts: route.timeouts ?? null,
        prefix,
        exact: route.match === "exact",
        methods: route.methods && route.methods.length > 0 ? new Set(route.methods) : null,
        headers: headers.length > 0 ? headers : null,
        rewrite: route.rewrite ?? null,
        priority: route.priority ?? 0,
        backend,
      });
    }
  }

  for (const list of exact.values()) list.sort(byPrecedence);
  for (const list of wildcard.values()) list.sort(byPrecedence);
  return new RouteTable(
    version,
    exact,
    wildcard,
    backends,
    owners.size,
    problems,
    authState,
    nodeBook,
    loadBook,
  );
}

function byInstance(a: Endpoint, b: Endpoint): number {
  return a.instance < b.instance ? -1 : a.instance > b.instance ? 1 : 0;
}

function describeRoute(r: Route): string {
  const extra = [
    r.match === "exact" ? "exact" : "",
    r.methods?.join(",") ?? "",
    Object.keys(r.headers ?? {}).join(","),
  ]
    .filter(Boolean)
    .join(" ");
  return `${r.host}${r.path}${extra ? ` (${extra})` : ""}`;
}

const ROUND_ROBIN: BalanceSpec = { kind: "round_robin" };
