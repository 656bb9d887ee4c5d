/**
 * The gateway's routing table: pure logic, built once per configuration
 * change from the control plane's objects, then only read per request.
 *
 * Everything that can be computed ahead is computed here (lowercased hosts,
 * normalised prefixes sorted longest first, endpoint lists), so a lookup is a
 * map hit or two and a short scan of prefixes.
 */

import { createRequire } from "node:module";
import type { Logger } from "../common/log.ts";
import type { UrlGuard } from "../common/url-guard.ts";
import { effectiveTraffic, routeIdentity } from "../model/gateway-view.ts";
import type { RouteObject } from "../model/live-config.ts";
import type {
  AggregateSpec,
  BalanceSpec,
  RateLimitSpec,
  Route,
  RouteTimeouts,
  StickySpec,
} from "../model/manifest.ts";
import { type Consumer, type Instance, type Node, type Service, serviceKey } from "../model/objects.ts";
import { previewHost } from "../model/progressive.ts";
import { type AuthState, emptyAuthState, indexConsumers, RouteAuth, type RouteAuthContext } from "./auth.ts";
import { Backend, type Endpoint, fnv1a, NO_POLICIES, type ServicePolicies, SHED_ABOVE } from "./backend.ts";
import { Cors } from "./cors.ts";
import type { JwksTiming } from "./jwks.ts";
import { LoadBook } from "./load-recorder.ts";
import { RouteStats, routeLabel } from "./metrics.ts";
import { NodeBook } from "./node-health.ts";
import { CircuitBreaker } from "./policies/circuit-breaker.ts";
import { OutlierDetector, UNREACHABLE_OUTLIER } from "./policies/outlier.ts";
import { RetryBudget } from "./policies/retry-budget.ts";
import { type Grant, KeyedLimiter, type TakeResult, TokenBucket } from "./policies/token-bucket.ts";
import { type LeaseClient, LeasedLimit } from "./rate-lease.ts";
import { compileStages } from "./stages.ts";

export { Backend, type Endpoint, fnv1a, type ServicePolicies, SHED_ABOVE };

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

/** An aggregation route, resolved when the table is built: each part's backend and its request. */
export interface Aggregation {
  readonly parts: readonly AggregatePart[];
  /** Client headers (lowercase names) sent to every part. */
  readonly headers: ReadonlySet<string>;
}

/** One part of an aggregation. */
export interface AggregatePart {
  readonly name: string;
  /** `"name":`, JSON-encoded once for the merged body. */
  readonly key: string;
  readonly backend: Backend;
  /** The path (and query) to request. */
  readonly path: string;
  /** What joins the client's query string to `path` (`?` or `&`), or null to not forward it. */
  readonly queryJoin: string | null;
  readonly timeoutMs: number;
}

/**
 * A route's rate limit: one bucket for the route, one per client address, or
 * one per consumer (requests without one: per client address).
 * With several gateway workers the limit holds for the gateway as a whole:
 * workers spend tokens leased from the primary's buckets (rate-lease.ts), and
 * keep buckets of their share of the rate (1 / workers) only to fall back on
 * when the primary does not answer. A single process uses its buckets alone.
 */
export class RouteLimit {
  /** The spec it was made from, to tell whether a rebuilt table may keep it. */
  readonly spec: string;
  /** The route's identity (`service id`), how the primary finds its copy. */
  readonly route: string;
  /** The limit as a client sees it (RateLimit headers): the whole gateway's. */
  readonly rate: number;
  readonly burst: number;
  readonly #per: "route" | "ip" | "consumer";
  readonly #route: TokenBucket | null;
  readonly #perClient: KeyedLimiter | null;
  /** Separate from the client buckets, so a consumer's name can never share an address's bucket. */
  readonly #perConsumer: KeyedLimiter | null;
  /** Set in a worker of several: tokens come from the primary. */
  readonly #leased: LeasedLimit | null;

  constructor(spec: RateLimitSpec, share: number, route = "", leases: LeaseClient | null = null) {
    this.spec = JSON.stringify(spec);
    this.route = route;
    this.#per = spec.per;
    const rate = spec.rate * share;
    const burst = Math.max(1, Math.round(spec.burst * share));
    this.#leased = leases !== null && share < 1 ? new LeasedLimit(this, route, spec.burst, leases) : null;
    this.rate = this.#leased !== null ? spec.rate : rate;
    this.burst = this.#leased !== null ? spec.burst : burst;
    this.#route = spec.per === "route" ? new TokenBucket(rate, burst, Date.now()) : null;
    this.#perClient = spec.per !== "route" ? new KeyedLimiter(rate, burst) : null;
    this.#perConsumer = spec.per === "consumer" ? new KeyedLimiter(rate, burst) : null;
  }

  /**
   * `consumer` is the authenticated consumer's name, or null. A Promise only in
   * a worker whose lease for the key is empty: the verdict once the primary answers.
   */
  take(client: string, now: number, consumer: string | null = null): TakeResult | Promise<TakeResult> {
    if (this.#leased === null) return this.takeLocal(client, now, consumer);
    if (this.#per === "route") return this.#leased.take("", client, consumer, now);
    if (consumer !== null && this.#per === "consumer")
      return this.#leased.take(`c${consumer}`, client, consumer, now);
    return this.#leased.take(`a${client}`, client, consumer, now);
  }

  /** This process's own buckets. */
  takeLocal(client: string, now: number, consumer: string | null): TakeResult {
    if (this.#route !== null) return this.#route.take(now);
    if (consumer !== null && this.#perConsumer !== null) return this.#perConsumer.take(consumer, now);
    return this.#perClient!.take(client, now);
  }

  /** Up to `max` tokens of the key at once: the primary's answer to a worker's lease. */
  grant(client: string, consumer: string | null, max: number, now: number): Grant {
    if (this.#route !== null) return this.#route.takeUpTo(max, now);
    if (consumer !== null && this.#perConsumer !== null)
      return this.#perConsumer.takeUpTo(consumer, max, now);
    return this.#perClient!.takeUpTo(client, max, now);
  }
}

/** A route's degraded answer, encoded once when the table is built. */
export interface Fallback {
  status: number;
  body: Buffer;
  contentType: string;
}

/**
 * A traffic split: shares of a route's requests to other services. Without
 * stickiness the shares are exact (smooth weighted round robin); with it, a
 * client's key hashes to a fixed point in 0..100, so a client stays on one side
 * and raising a share moves only the clients in between.
 */
export class Split {
  readonly sticky: StickySpec | null;
  readonly #targets: { backend: Backend; weight: number; current: number }[];
  readonly #total: number;

  constructor(home: Backend, to: { backend: Backend; weight: number }[], sticky: StickySpec | null) {
    const rest = Math.max(0, 100 - to.reduce((sum, t) => sum + t.weight, 0));
    this.#targets = [...to, { backend: home, weight: rest }]
      .filter((t) => t.weight > 0)
      .map((t) => ({ ...t, current: 0 }));
    this.#total = this.#targets.reduce((sum, t) => sum + t.weight, 0);
    this.sticky = sticky;
  }

  /** The backend for a request; `key` is the client's sticky key when the split is sticky. */
  choose(key: string | undefined): Backend {
    const targets = this.#targets;
    if (this.sticky !== null && key !== undefined && key !== "") {
      let point = (fnv1a(key) % 10_000) / 100; // 0 ≤ point < 100
      for (const t of targets) {
        if (point < t.weight) return t.backend;
        point -= t.weight;
      }
      return targets[targets.length - 1].backend;
    }
    // Smooth weighted round robin (as nginx's): every target gains its weight, the leader pays the total.
    let best = targets[0];
    for (const t of targets) {
      t.current += t.weight;
      if (t.current > best.current) best = t;
    }
    best.current -= this.#total;
    return best.backend;
  }
}

/** Shadow traffic: `percent` of a route's bodiless requests, evenly spaced, are copied to `backend`. */
export class Mirror {
  readonly backend: Backend;
  readonly percent: number;
  #credit = 0;

  constructor(backend: Backend, percent: number) {
    this.backend = backend;
    this.percent = percent;
  }

  /** Whether this request is copied (an even spread: 25 % copies one request in four). */
  sample(): boolean {
    this.#credit += this.percent;
    if (this.#credit < 100) return false;
    this.#credit -= 100;
    return true;
  }
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

/** What a request carries that routes match on. */
export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

function servicePolicies(service: Service, previous: ServicePolicies | undefined): ServicePolicies {
  const { breaker, outlier } = effectiveTraffic(service);
  // Outlier ejection turned off through the API (`false`): not even unreachable instances are ejected.
  const off = service.traffic?.outlier === null;
  const spec = JSON.stringify({ breaker, outlier, off });
  // Every service gets its own state (its own retry budget even without other policies).
  if (previous !== undefined && previous !== NO_POLICIES && previous.spec === spec) return previous;
  return {
    spec,
    breaker: breaker
      ? new CircuitBreaker({ failureThreshold: breaker.failures, openMs: breaker.openMs })
      : null,
    // Without a policy, only instances that refuse connections are ejected (a dead one, even with no control plane).
    outlier: outlier
      ? new OutlierDetector({
          consecutiveFailures: outlier.failures,
          baseEjectionMs: outlier.ejectionMs,
          maxEjectedShare: outlier.maxShare,
        })
      : off
        ? null
        : new OutlierDetector(UNREACHABLE_OUTLIER),
    retries: new RetryBudget(),
  };
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

/** A Host header reduced to the name routes use: lowercase, no port, no trailing dot. */
export function normalizeHost(host: string): string {
  let end = host.length;
  if (host.charCodeAt(0) === 91 /* [ */) {
    // IPv6 literal: the port, if any, follows the closing bracket.
    end = host.indexOf("]") + 1 || end;
  } else {
    const colon = host.lastIndexOf(":");
    if (colon !== -1) end = colon;
  }
  if (host.charCodeAt(end - 1) === 46 /* . */) end--;
  return (end === host.length ? host : host.slice(0, end)).toLowerCase();
}

const NO_HEADERS: RequestHeaders = {};

function firstMatch(
  routes: RouteEntry[],
  path: string,
  method: string,
  headers: RequestHeaders,
): RouteEntry | undefined {
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i];
    if (!pathMatches(r, path)) continue;
    if (r.methods !== null && !r.methods.has(method)) continue;
    if (r.headers !== null && !headersMatch(r.headers, headers)) continue;
    return r;
  }
  return undefined;
}

function pathMatches(r: RouteEntry, path: string): boolean {
  const { prefix } = r;
  if (r.exact) {
    if (!path.startsWith(prefix)) return false;
    return path.length === prefix.length || path.charCodeAt(prefix.length) === 63 /* ? */;
  }
  // "/" matches every path.
  if (prefix.length === 1) return true;
  if (!path.startsWith(prefix)) return false;
  if (path.length === prefix.length) return true;
  const next = path.charCodeAt(prefix.length);
  return next === 47 /* / */ || next === 63 /* ? */;
}

function headersMatch(required: readonly (readonly [string, string])[], headers: RequestHeaders): boolean {
  for (let i = 0; i < required.length; i++) {
    const [name, value] = required[i];
    const got = headers[name];
    if (got === value) continue;
    if (Array.isArray(got) && got.includes(value)) continue;
    return false;
  }
  return true;
}

/**
 * The path to forward for a request that matched `route`: the matched prefix
 * replaced by the route's rewrite (the rest, including the query, kept).
 */
export function rewritePath(route: RouteEntry, path: string): string {
  if (route.rewrite === null) return path;
  const rest = route.prefix.length === 1 ? path.slice(1) : path.slice(route.prefix.length);
  if (rest.length === 0) return route.rewrite;
  const base = route.rewrite.endsWith("/") ? route.rewrite.slice(0, -1) : route.rewrite;
  if (rest.charCodeAt(0) === 63 /* ? */) return `${route.rewrite}${rest}`;
  return rest.charCodeAt(0) === 47 ? `${base}${rest}` : `${base}/${rest}`;
}

function normalizePrefix(path: string | undefined): string {
  if (!path || path === "/") return "/";
  let end = path.length;
  while (end > 1 && path.charCodeAt(end - 1) === 47) end--;
  return path.slice(0, end);
}

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
    const progressive = service.progressive;
    let releases: Split | null = null;
    if (progressive !== undefined) {
      // Two releases side by side: the new one gets `weight` percent of the requests (none while it has no endpoint).
      const fresh = endpoints.filter((e) => e.release === progressive.release);
      const old = endpoints.filter((e) => e.release !== progressive.release);
      const freshBackend = new Backend(key, name, fresh, policies, settings);
      if (fresh.length > 0 && old.length > 0) {
        releases = new Split(
          new Backend(key, name, old, policies, settings),
          [{ backend: freshBackend, weight: progressive.weight }],
          progressive.sticky ?? null,
        );
      }
      if (progressive.strategy === "bluegreen" && progressive.phase !== "aborted") {
        const host = previewHost(service.app, service.name, progressive.release);
        const paths = new Set((service.spec.routes ?? []).map((r) => normalizePrefix(r.path)));
        const routes = [...paths].map((path): Route => ({ host, path: path }));
        previews.push({ key, service, routes, backend: freshBackend });
      }
    }
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

/** Loads modules on first use, synchronously (require of an ES module). */
const requireLazily = createRequire(import.meta.url);

/**
 * Route objects as routes of their services, sorted by key. Each is checked
 * against the API's schema first: one that is not valid (written around the
 * API, or by an older or newer control plane) fails the build, naming it.
 * The schema and herd.yaml's normaliser (TypeBox and yaml, about 23 MB) are
 * loaded at the first table that has route objects, not at start.
 */
function routeObjectSources(objects: RouteObject[]): { key: string; service: Service; routes: Route[] }[] {
  if (objects.length === 0) return [];
  const { checkRouteBody, normalizeRoute } = requireLazily(
    "../model/live-config.ts",
  ) as typeof import("../model/live-config.ts");
  const out: { key: string; service: Service; routes: Route[]; name: string }[] = [];
  for (const o of objects) {
    const name = `${o.tenant}/${o.app}/${o.name}`;
    if (typeof o.tenant !== "string" || typeof o.app !== "string" || typeof o.name !== "string") {
      throw new Error(`route object ${name}: tenant, app and name must be strings`);
    }
    const spec = checkRouteBody(o.spec, `route ${name}`);
    const key = serviceKey(o.tenant, o.app, spec.service);
    // Only what splits, mirrors and messages read of the service.
    const service = { tenant: o.tenant, app: o.app, name: spec.service } as Service;
    out.push({ key, service, routes: [normalizeRoute(o.app, spec)], name });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function byInstance(a: Endpoint, b: Endpoint): number {
  return a.instance < b.instance ? -1 : a.instance > b.instance ? 1 : 0;
}

/** Priority first; then exact paths before prefixes; then longer prefixes; then the more specific (method, headers) first. */
function byPrecedence(a: RouteEntry, b: RouteEntry): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.exact !== b.exact) return a.exact ? -1 : 1;
  if (a.prefix.length !== b.prefix.length) return b.prefix.length - a.prefix.length;
  return specificity(b) - specificity(a);
}

function specificity(r: RouteEntry): number {
  return (r.methods === null ? 0 : 1) + (r.headers === null ? 0 : r.headers.length);
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

function buildSplit(
  home: Backend,
  to: { service: string; weight: number }[],
  sticky: StickySpec | undefined,
  service: Service,
  backends: Map<string, Backend>,
  problems: string[],
): Split {
  const targets: { backend: Backend; weight: number }[] = [];
  for (const t of to) {
    const target = backends.get(serviceKey(service.tenant, service.app, t.service));
    if (target === undefined) {
      problems.push(
        `${service.app}/${service.name} splits ${t.weight}% to ${t.service}, which does not exist; that share stays`,
      );
      continue;
    }
    targets.push({ backend: target, weight: t.weight });
  }
  return new Split(home, targets, sticky ?? null);
}

function buildMirror(
  spec: Route["mirror"],
  service: Service,
  backends: Map<string, Backend>,
  problems: string[],
): Mirror | null {
  if (!spec || spec.percent <= 0) return null;
  const target = backends.get(serviceKey(service.tenant, service.app, spec.service));
  if (target === undefined) {
    problems.push(`${service.app}/${service.name} mirrors to ${spec.service}, which does not exist`);
    return null;
  }
  return new Mirror(target, spec.percent);
}

function buildAggregation(
  spec: AggregateSpec,
  service: Service,
  backends: Map<string, Backend>,
  problems: string[],
): Aggregation {
  const parts = spec.parts.map((p): AggregatePart => {
    const key = serviceKey(service.tenant, service.app, p.service);
    let backend = backends.get(key);
    if (backend === undefined) {
      // The part stays in the answer (its key clients expect), always failing as unavailable.
      problems.push(
        `${service.app}/${service.name} aggregates part ${p.name} from ${p.service}, which does not exist`,
      );
      backend = new Backend(key, `${service.app}/${p.service}`, []);
    }
    return {
      name: p.name,
      key: `${JSON.stringify(p.name)}:`,
      backend,
      path: p.path,
      queryJoin: p.query ? (p.path.includes("?") ? "&" : "?") : null,
      timeoutMs: p.timeoutMs,
    };
  });
  return { parts, headers: new Set(spec.headers) };
}
