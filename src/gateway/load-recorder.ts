/**
 * The live load figures a gateway process sends each second (model/load.ts):
 * per service and per instance, responses, errors, shed requests, a latency
 * histogram, requests in flight, and requests held for a cold start.
 *
 *   table build ─► LoadBook.service(key) / .instance(…)   counters made once, kept across tables
 *   response end ─► ServiceCounters.finished(instance, code, outcome, start, end)   a few additions
 *   proxyTo / send ─► .inflight++ …  end ─► .inflight--
 *   hold queue (scale to zero) ─► LoadBook.setWaiting(key, n)
 *   every second: LoadBook.report(now) ─► LoadReport (interval counters reset) ─► load-reporter.ts
 *
 * The counters belong to the LoadBook, which each table hands to the next
 * (like its NodeBook), so a table swap loses nothing: a request that started
 * on the old table ends on the same counters. A service or instance that
 * leaves the table is reported until it is idle, then forgotten.
 */

import type { InstanceLoad, LoadReport, ServiceLoad } from "../model/load.ts";
import { LATENCY_BUCKETS_MS } from "../model/load.ts";
import * as metrics from "./metrics.ts";

/** Buckets per histogram: one per bound and one for slower responses. */
const BUCKETS = LATENCY_BUCKETS_MS.length + 1;

/** How an outcome counts beyond an ordinary response (0): a failure, or a refusal by the gateway's own policies. */
const FAILED = 1;
const REFUSED = 2;
const KIND = new Uint8Array(32);
for (const o of [
  metrics.UNAVAILABLE,
  metrics.BAD_GATEWAY,
  metrics.TIMEOUT,
  metrics.FALLBACK_UNAVAILABLE,
  metrics.FALLBACK_BAD_GATEWAY,
  metrics.FALLBACK_TIMEOUT,
])
  KIND[o] = FAILED;
for (const o of [
  metrics.RATE_LIMITED,
  metrics.CIRCUIT_OPEN,
  metrics.SHED,
  metrics.FALLBACK_CIRCUIT_OPEN,
  metrics.FALLBACK_SHED,
])
  KIND[o] = REFUSED;

function bucketOf(ms: number): number {
  let b = 0;
  while (b < LATENCY_BUCKETS_MS.length && ms > LATENCY_BUCKETS_MS[b]) b++;
  return b;
}

/** One instance's counters in this process. */
export class InstanceCounters {
  readonly instance: string;
  /** The release it runs (updated by the table build). */
  release: number;
  /** In the current interval. */
  requests = 0;
  errors = 0;
  readonly latency: number[] = new Array<number>(BUCKETS).fill(0);
  /** Requests on their way to it or being answered by it now (attempts, as Endpoint.inflight). */
  inflight = 0;
  /** The last LoadBook build that handed it out. */
  generation = 0;

  constructor(instance: string, release: number) {
    this.instance = instance;
    this.release = release;
  }
}

/** One service's counters in this process. */
export class ServiceCounters {
  readonly service: string;
  /** In the current interval. */
  requests = 0;
  errors = 0;
  shed = 0;
  readonly latency: number[] = new Array<number>(BUCKETS).fill(0);
  /** Requests being proxied to it now (as Backend.inflight, but across tables). */
  inflight = 0;
  /** Requests held for a cold start now (set by the hold queue through LoadBook.setWaiting). */
  waiting = 0;
  /** Arrival (performance.now()) of the latest request that finished; -1: none yet. */
  lastArrival = -1;
  readonly instances = new Map<string, InstanceCounters>();
  generation = 0;

  constructor(service: string) {
    this.service = service;
  }

  /**
   * Counts one response: its status code, outcome (a metrics.OUTCOMES
   * index), arrival and end (performance.now()); `instance` is the
   * instance's counters when one was chosen (else DETACHED_INSTANCE).
   */
  finished(instance: InstanceCounters, code: number, outcome: number, start: number, end: number): void {
    this.requests++;
    if (start > this.lastArrival) this.lastArrival = start;
    let kind = KIND[outcome];
    if (kind === REFUSED) {
      this.shed++;
      return;
    }
    if (outcome === metrics.UPSTREAM && code >= 500) kind = FAILED;
    const b = bucketOf(end - start);
    this.latency[b]++;
    instance.requests++;
    instance.latency[b]++;
    if (kind === FAILED) {
      this.errors++;
      instance.errors++;
    }
  }
}

/** Counters that belong to no book: for requests no route took, and for exchanges before an endpoint is chosen. */
export const DETACHED_SERVICE = new ServiceCounters("");
export const DETACHED_INSTANCE = new InstanceCounters("", 0);

/** A service's or instance's interval had nothing and it has nothing in flight or held. */
function idleInstance(c: InstanceCounters): boolean {
  return c.requests === 0 && c.inflight === 0;
}

/**
 * Every service's and instance's counters of one gateway process, handed
 * from each table to the next; `report` reads and resets the interval.
 */
export class LoadBook {
  readonly #services = new Map<string, ServiceCounters>();
  #generation = 1;

  /** A table build starts: what it hands out is kept; the rest is forgotten once idle. */
  beginBuild(): void {
    this.#generation++;
  }

  /** The counters of a service (the same object for the life of the process while it is in tables or busy). */
  service(key: string): ServiceCounters {
    let c = this.#services.get(key);
    if (c === undefined) {
      c = new ServiceCounters(key);
      this.#services.set(key, c);
    }
    c.generation = this.#generation;
    return c;
  }

  /** The counters of one instance of a service, with the release it runs now. */
  instance(service: ServiceCounters, id: string, release: number): InstanceCounters {
    let c = service.instances.get(id);
    if (c === undefined) {
      c = new InstanceCounters(id, release);
      service.instances.set(id, c);
    }
    c.release = release;
    c.generation = this.#generation;
    return c;
  }

  /**
   * The hold queue's count of requests waiting for an instance of `serviceKey`
   * (scale to zero); call it whenever the count changes. Reported each
   * second while above 0, and 0 once after.
   */
  setWaiting(serviceKey: string, n: number): void {
    this.service(serviceKey).waiting = n;
  }

  /**
   * The interval that ends now as a LoadReport (services with responses,
   * requests in flight or held ones), and a fresh interval. Forgets services
   * and instances no table names any more once they are idle.
   */
  report(at: number, intervalMs: number): LoadReport {
    const services: ServiceLoad[] = [];
    // performance.now() arrivals → epoch ms.
    const origin = at - performance.now();
    for (const [key, s] of this.#services) {
      const instances: InstanceLoad[] = [];
      for (const [id, i] of s.instances) {
        if (idleInstance(i)) {
          if (i.generation !== this.#generation) s.instances.delete(id);
          continue;
        }
        instances.push({
          instance: i.instance,
          release: i.release,
          requests: i.requests,
          errors: i.errors,
          inflight: i.inflight,
          latency: [...i.latency],
        });
        i.requests = 0;
        i.errors = 0;
        i.latency.fill(0);
      }
      if (s.requests === 0 && s.inflight === 0 && s.waiting === 0 && instances.length === 0) {
        if (s.generation !== this.#generation && s.instances.size === 0) this.#services.delete(key);
        continue;
      }
      const load: ServiceLoad = {
        service: key,
        requests: s.requests,
        errors: s.errors,
        shed: s.shed,
        inflight: s.inflight,
        waiting: s.waiting,
        latency: [...s.latency],
        instances,
      };
      if (s.lastArrival >= 0) load.lastRequestAt = Math.round(origin + s.lastArrival);
      services.push(load);
      s.requests = 0;
      s.errors = 0;
      s.shed = 0;
      s.latency.fill(0);
    }
    return { at, intervalMs, services };
  }
}
