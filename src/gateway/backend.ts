/**
 * A routed service's backend: its running endpoints, how one is picked
 * (round robin, least request, sticky hashing), and the policies kept across
 * table rebuilds (breaker, outlier ejection, retry budget).
 */

import { effectiveTraffic } from "../model/gateway-view.ts";
import type { Service } from "../model/objects.ts";
import type { ProbeSpec, StickySpec } from "../model/service-spec.ts";
import { DETACHED_SERVICE, type InstanceCounters, type ServiceCounters } from "./load-recorder.ts";
import { NodeBook, type NodeHealth } from "./node-health.ts";
import { CircuitBreaker } from "./policies/circuit-breaker.ts";
import { OutlierDetector, UNREACHABLE_OUTLIER } from "./policies/outlier.ts";
import { RetryBudget } from "./policies/retry-budget.ts";

/**
 * Load shedding by criticality: when the gateway's requests in flight pass
 * these shares of its capacity, new requests to services of that criticality
 * are refused — low first, critical only when it is full.
 */
export const SHED_ABOVE = { low: 0.6, normal: 0.8, critical: 1 } as const;

/** One running instance that traffic for a service can go to. */
export interface Endpoint {
  /** Instance id. */
  instance: string;
  /** The release the instance runs. */
  release: number;
  /** The node's address. */
  address: string;
  port: number;
  /** Requests in flight to it from this process (least-request balancing). */
  inflight: number;
  /** Hash of the instance id, for rendezvous hashing. */
  seed: number;
  /** It fails the service's active probes: no traffic until it passes them again (see health-probe.ts). */
  down: boolean;
  /** The node it runs on, shared by every endpoint there: suspect nodes are tried last (node-health.ts). */
  node: NodeHealth;
  /** Its live load counters (load-recorder.ts), kept across tables. */
  load: InstanceCounters;
}

/**
 * Per-service policy state: a breaker, an outlier detector and a retry
 * budget. State lives across table rebuilds (instances change often) and is
 * made afresh only when the service's policy spec changes.
 */
export interface ServicePolicies {
  readonly spec: string;
  readonly breaker: CircuitBreaker | null;
  readonly outlier: OutlierDetector | null;
  /** Retries add at most 20 % over the service's recent requests. */
  readonly retries: RetryBudget;
}

export const NO_POLICIES: ServicePolicies = {
  spec: "",
  breaker: null,
  outlier: null,
  retries: new RetryBudget(),
};

/** A routed service with its running endpoints and its round-robin cursor. */
/** A degraded service still gets one request this often from each gateway process (its probe). */
export const DEGRADED_PROBE_MS = 1000;

export class Backend {
  /** `tenant/app/service`, the service's key. */
  readonly service: string;
  /** `app/service`, the name users see in error messages. */
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  /** The service's gateway policies; kept across table rebuilds while their spec is unchanged. */
  readonly policies: ServicePolicies;
  /** Share of the gateway's capacity in use above which this service's requests are shed. */
  readonly shedAbove: number;
  /** Most requests in flight to it from this process (Infinity: no limit). */
  readonly concurrency: number;
  /** The gateway's active probe of its instances, or null. */
  readonly probe: ProbeSpec | null;
  /** The health of the nodes its endpoints run on (the table's, shared by every backend). */
  readonly nodes: NodeBook;
  /** It scales to zero (`autoscale.min: 0`): without endpoints, requests wait for one (hold.ts). */
  readonly scalesToZero: boolean;
  /**
   * Switched to its routes' fallbacks (`traffic.fallback`, degraded): routes with a fallback answer
   * it, except one probe request a second (per process) that still reaches the service, so whoever
   * switched it sees when its calls succeed again.
   */
  readonly degraded: boolean;
  #probedAt = 0;
  /** Requests in flight to it from this process (counted by the proxy). */
  inflight = 0;
  /** Its live load counters (load-recorder.ts), kept across tables. */
  readonly load: ServiceCounters;
  /**
   * While a canary or blue/green rollout runs both releases side by side:
   * which release's endpoints a request goes to (two backends of this
   * service, the old release's and the new one's, by weight); null otherwise.
   */
  readonly releases: ReleaseChoice | null;
  /** How many endpoints are down by the active probes; while 0, picking skips no one and checks nothing. */
  down = 0;
  #cursor = 0;

  constructor(
    service: string,
    name: string,
    endpoints: readonly Endpoint[],
    policies: ServicePolicies = NO_POLICIES,
    load: {
      shedAbove?: number;
      concurrency?: number;
      probe?: ProbeSpec | null;
      nodes?: NodeBook;
      counters?: ServiceCounters;
      scalesToZero?: boolean;
      releases?: ReleaseChoice | null;
      degraded?: boolean;
    } = {},
  ) {
    this.service = service;
    this.name = name;
    this.endpoints = endpoints;
    this.policies = policies;
    this.shedAbove = load.shedAbove ?? SHED_ABOVE.normal;
    this.concurrency = load.concurrency ?? Number.POSITIVE_INFINITY;
    this.probe = load.probe ?? null;
    this.nodes = load.nodes ?? new NodeBook();
    this.load = load.counters ?? DETACHED_SERVICE;
    this.scalesToZero = load.scalesToZero ?? false;
    this.releases = load.releases ?? null;
    this.degraded = load.degraded ?? false;
  }

  /** Degraded: whether this request is the probe that goes through (at most one per DEGRADED_PROBE_MS). */
  probeDegraded(now: number): boolean {
    if (now - this.#probedAt < DEGRADED_PROBE_MS) return false;
    this.#probedAt = now;
    return true;
  }

  get breaker(): CircuitBreaker | null {
    return this.policies.breaker;
  }

  next(): Endpoint | undefined {
    const n = this.endpoints.length;
    if (n === 0) return undefined;
    const outlier = this.policies.outlier;
    const now = Date.now();
    if (
      this.down === 0 &&
      now >= this.nodes.suspectEndsAt &&
      (outlier === null || !outlier.anyEjected(now))
    ) {
      return this.#advance(n);
    }
    return this.#nextAvailable(n, outlier, now, null);
  }

  /**
   * Round robin past instances that are down (active probes), ejected
   * (outlier detection) or on a suspect node (node-health.ts), and past
   * `avoid`'s node. None when every instance is down: the route's fallback
   * or a 503 answers.
   */
  #nextAvailable(
    n: number,
    outlier: OutlierDetector | null,
    now: number,
    avoid: Endpoint | null,
  ): Endpoint | undefined {
    if (this.down >= n) return undefined;
    for (let i = 0; i < n; i++) {
      const endpoint = this.#advance(n);
      if (
        !endpoint.down &&
        !endpoint.node.isSuspect(now) &&
        (avoid === null || endpoint.node !== avoid.node) &&
        (outlier === null || !outlier.isEjected(endpoint.instance, now))
      ) {
        return endpoint;
      }
    }
    // Every instance that passes its probes is ejected or on a suspect node (the detector never ejects
    // them all, probes aside): one that is not ejected, then any that passes its probes, first not `avoid`.
    for (let i = 0; i < n; i++) {
      const endpoint = this.#advance(n);
      if (
        !endpoint.down &&
        !sameAddress(endpoint, avoid) &&
        (outlier === null || !outlier.isEjected(endpoint.instance, now))
      ) {
        return endpoint;
      }
    }
    for (let i = 0; i < n; i++) {
      const endpoint = this.#advance(n);
      if (!endpoint.down && !sameAddress(endpoint, avoid)) return endpoint;
    }
    return avoid === null ? undefined : this.endpoints.find((e) => !e.down && sameAddress(e, avoid));
  }

  /** Whether an endpoint may take a request now: passes its probes, not ejected, not on a suspect node. */
  #available(endpoint: Endpoint, outlier: OutlierDetector | null, now: number): boolean {
    return (
      !endpoint.down &&
      !endpoint.node.isSuspect(now) &&
      (outlier === null || !outlier.isEjected(endpoint.instance, now))
    );
  }

  /**
   * The less busy of two instances picked at random (power of two choices):
   * close to the least loaded, without scanning or herding onto one.
   */
  leastRequest(): Endpoint | undefined {
    const n = this.endpoints.length;
    if (n < 2) return this.next();
    const now = Date.now();
    // The detector to consult, only while some instance may be ejected.
    const outlier = this.policies.outlier?.anyEjected(now) ? this.policies.outlier : null;
    for (let tries = 0; tries < 4; tries++) {
      const i = Math.floor(Math.random() * n);
      let j = Math.floor(Math.random() * (n - 1));
      if (j >= i) j++;
      const a = this.endpoints[i];
      const b = this.endpoints[j];
      let pick = a.inflight <= b.inflight ? a : b;
      if (!this.#available(pick, outlier, now)) pick = pick === a ? b : a;
      if (this.#available(pick, outlier, now)) return pick;
    }
    return this.next();
  }

  /**
   * The instance for a key by rendezvous hashing: the same key lands on the
   * same instance while it runs, and when instances come or go only the keys
   * of those instances move.
   */
  byKey(key: string): Endpoint | undefined {
    const n = this.endpoints.length;
    if (n === 0) return undefined;
    const h = fnv1a(key);
    const now = Date.now();
    const outlier = this.policies.outlier?.anyEjected(now) ? this.policies.outlier : null;
    let best: Endpoint | undefined;
    let bestScore = -1;
    for (let i = 0; i < n; i++) {
      const e = this.endpoints[i];
      if (!this.#available(e, outlier, now)) continue;
      const score = mix(h ^ e.seed);
      if (score > bestScore) {
        bestScore = score;
        best = e;
      }
    }
    return best ?? this.next();
  }

  #advance(n: number): Endpoint {
    const endpoint = this.endpoints[this.#cursor % n];
    this.#cursor = (this.#cursor + 1) % n;
    return endpoint;
  }

  /**
   * The endpoint to retry a request on after a connection to `failed`
   * failed: the next available one on another node (a dead instance's
   * neighbours are likely dead too), else the next at another address, else
   * `failed` itself when it is the only one left, since a reset keep-alive
   * socket is worth one more try there.
   */
  nextExcept(failed: Endpoint): Endpoint | undefined {
    const n = this.endpoints.length;
    if (n === 0) return undefined;
    return this.#nextAvailable(n, this.policies.outlier, Date.now(), failed);
  }
}

/** Picks the backend of one release for a request (route-table.ts `Split`, over the old and the new release). */
export interface ReleaseChoice {
  readonly sticky: StickySpec | null;
  choose(key: string | undefined): Backend;
}

/** Whether two endpoints (maybe from different tables) are the same address and port. */

function sameAddress(a: Endpoint, b: Endpoint | null): boolean {
  return b !== null && a.port === b.port && a.address === b.address;
}

/** 32-bit FNV-1a of a string. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A 32-bit finaliser (from MurmurHash3) so nearby inputs score far apart. */
function mix(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A service's breaker, outlier detector and retry budget; the previous table's are kept while their spec is unchanged. */
export function servicePolicies(service: Service, previous: ServicePolicies | undefined): ServicePolicies {
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
