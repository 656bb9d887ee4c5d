/**
 * Rate limits for the gateway as a whole when it runs several worker
 * processes (`herd gateway --workers N`), by token leasing.
 *
 * The primary holds the real buckets (the route's full rate and burst) in its
 * own copy of the table, per route and key (the route, a client address or a
 * consumer: whatever `RouteLimit.take` keys on). A worker keeps a small lease
 * of tokens per key and spends it without asking anyone; when it is empty the
 * worker asks the primary for up to `leaseSize` tokens (one question per key in
 * flight: requests arriving meanwhile wait for the same answer, in order).
 * No token at the primary: the worker refuses that key locally until the
 * primary said one would be there, so a flood of refused requests costs no IPC.
 *
 * Error bound, per key: tokens sit in leases for at most `LEASE_TTL_MS`
 * (unused ones then lapse, they are not returned), at most `leaseSize` per
 * worker. So in any window the gateway admits at most workers × leaseSize
 * more than one bucket would (tokens taken before the window, spent in it),
 * and a worker that stops getting traffic wastes at most leaseSize tokens.
 * With leaseSize = burst / (4 × workers) that is a quarter of the burst.
 *
 * A primary that does not answer within `LEASE_TIMEOUT_MS` fails open to the
 * worker's local share (rate / workers, the limit every worker enforced before
 * leasing), for the next `LEASE_TIMEOUT_MS`; then the primary is asked again.
 * The gateway is never stricter than the limit, and never looser than before.
 */

import { type Clock, systemClock } from "../common/clock.ts";
import type { Grant, TakeResult } from "./policies/token-bucket.ts";
import type { RouteLimit } from "./route-limit.ts";

/** Worker → primary: up to `max` tokens of one key of a route's limit. */
export interface LeaseRequest {
  type: "lease";
  id: number;
  /** The route's identity (`service id`) and its limit's spec: the primary's limit must be the same one. */
  route: string;
  spec: string;
  client: string;
  consumer: string | null;
  max: number;
}

/** Primary → worker: the tokens granted (0: none, and when one will be there). */
export interface LeaseReply extends Grant {
  type: "lease";
  id: number;
}

/** Leased tokens not spent within this lapse. */
export const LEASE_TTL_MS = 1_000;

/** How long a worker waits for the primary's answer before failing open to its local share. */
export const LEASE_TIMEOUT_MS = 1_000;

/** Keys (client addresses, consumers) a worker keeps leases for, per route; the oldest go first. */
const MAX_LEASES = 10_000;

/** Tokens a worker asks for at once: a small share of the burst, so few are parked in leases. */
export function leaseSize(burst: number, workers: number): number {
  return Math.max(1, Math.floor(burst / (workers * 4)));
}

/** What a request that spends a leased token gets (the proxy reads nothing of it but `ok`). */
const LEASED: TakeResult = { ok: true, remaining: 0, retryAfterMs: 0, resetMs: 0 };

/** One key's tokens in a worker. */
interface Lease {
  tokens: number;
  /** When they were granted (ms); they lapse LEASE_TTL_MS later. */
  grantedAt: number;
  /** The primary had none: refuse locally until then. */
  refusedUntil: number;
  resetAt: number;
  /** Requests waiting for the primary's answer, first come first served; null when nobody asked. */
  waiting: ((verdict: TakeResult) => void)[] | null;
}

/** A question to the primary in flight. */
interface Asked {
  limit: LeasedLimit;
  lease: Lease;
  client: string;
  consumer: string | null;
  timer: NodeJS.Timeout;
}

/** A worker's side: sends the questions, matches the answers. One per worker process. */
export class LeaseClient {
  readonly workers: number;
  readonly #send: (request: LeaseRequest) => void;
  readonly #asked = new Map<number, Asked>();
  #nextId = 0;
  /** Until then the primary counts as not answering: limits use their local share at once. */
  #downUntil = 0;

  readonly #clock: Clock;

  /** `clock`: the time answers and timeouts are judged at (tests pass a ManualClock). */
  constructor(workers: number, send: (request: LeaseRequest) => void, clock: Clock = systemClock) {
    this.workers = workers;
    this.#send = send;
    this.#clock = clock;
  }

  /** True while failing open (the primary did not answer the last question in time). */
  down(now: number): boolean {
    return now < this.#downUntil;
  }

  ask(limit: LeasedLimit, lease: Lease, client: string, consumer: string | null, max: number): void {
    const id = this.#nextId++;
    const timer = setTimeout(() => this.#timedOut(id), LEASE_TIMEOUT_MS);
    timer.unref();
    this.#asked.set(id, { limit, lease, client, consumer, timer });
    this.#send({ type: "lease", id, route: limit.route, spec: limit.spec, client, consumer, max });
  }

  /** The primary's answer (late ones, after the timeout, are dropped: their tokens lapse). */
  answer(reply: LeaseReply): void {
    const asked = this.#asked.get(reply.id);
    if (asked === undefined) return;
    this.#asked.delete(reply.id);
    clearTimeout(asked.timer);
    asked.limit.granted(asked, reply, this.#clock.now());
  }

  #timedOut(id: number): void {
    const asked = this.#asked.get(id);
    if (asked === undefined) return;
    this.#asked.delete(id);
    const now = this.#clock.now();
    this.#downUntil = now + LEASE_TIMEOUT_MS;
    asked.limit.failOpen(asked, now);
  }
}

/** A worker's leases for one route's limit. */
export class LeasedLimit {
  readonly route: string;
  readonly spec: string;
  readonly size: number;
  readonly #limit: RouteLimit;
  readonly #client: LeaseClient;
  readonly #leases = new Map<string, Lease>();

  constructor(limit: RouteLimit, route: string, burst: number, client: LeaseClient) {
    this.#limit = limit;
    this.route = route;
    this.spec = limit.spec;
    this.size = leaseSize(burst, client.workers);
    this.#client = client;
  }

  /** A token of `key`'s lease now, a refusal now, or (lease empty) the verdict once the primary answers. */
  take(key: string, client: string, consumer: string | null, now: number): TakeResult | Promise<TakeResult> {
    let lease = this.#leases.get(key);
    if (lease === undefined) {
      if (this.#leases.size >= MAX_LEASES) this.#leases.delete(this.#leases.keys().next().value as string);
      lease = { tokens: 0, grantedAt: 0, refusedUntil: 0, resetAt: 0, waiting: null };
      this.#leases.set(key, lease);
    }
    if (lease.tokens >= 1) {
      if (now - lease.grantedAt <= LEASE_TTL_MS) {
        lease.tokens--;
        return LEASED;
      }
      lease.tokens = 0;
    }
    if (now < lease.refusedUntil) {
      return {
        ok: false,
        remaining: 0,
        retryAfterMs: lease.refusedUntil - now,
        resetMs: Math.max(0, lease.resetAt - now),
      };
    }
    if (lease.waiting === null && this.#client.down(now)) return this.#limit.takeLocal(client, now, consumer);
    const waiting = lease.waiting;
    return new Promise<TakeResult>((resolve) => {
      if (waiting !== null) waiting.push(resolve);
      else {
        lease.waiting = [resolve];
        this.#client.ask(this, lease, client, consumer, this.size);
      }
    });
  }

  /** The primary answered: the waiting requests take the granted tokens in order; the rest stays leased. */
  granted(asked: Asked, reply: LeaseReply, now: number): void {
    const lease = asked.lease;
    const waiting = lease.waiting ?? [];
    lease.waiting = null;
    lease.tokens = reply.granted;
    lease.grantedAt = now;
    let served = 0;
    while (served < waiting.length && lease.tokens >= 1) {
      lease.tokens--;
      waiting[served++]?.(LEASED);
    }
    if (served === waiting.length) return;
    if (reply.granted > 0) {
      // The primary had some but not enough for everyone waiting: ask again for the others. Each round
      // serves at least one of them or refuses them all, so none waits forever.
      lease.waiting = waiting.slice(served);
      this.#client.ask(this, lease, asked.client, asked.consumer, Math.max(this.size, lease.waiting.length));
      return;
    }
    lease.refusedUntil = now + reply.retryAfterMs;
    lease.resetAt = now + reply.resetMs;
    const refused: TakeResult = {
      ok: false,
      remaining: 0,
      retryAfterMs: reply.retryAfterMs,
      resetMs: reply.resetMs,
    };
    for (let i = served; i < waiting.length; i++) waiting[i]?.(refused);
  }

  /** No answer in time: the waiting requests are judged by this worker's local share. */
  failOpen(asked: Asked, now: number): void {
    const waiting = asked.lease.waiting ?? [];
    asked.lease.waiting = null;
    for (const resolve of waiting) resolve(this.#limit.takeLocal(asked.client, now, asked.consumer));
  }
}

/**
 * The primary's side: answers the workers' questions from the limits of its
 * own table, which keeps a limit's buckets across rebuilds while its spec is
 * unchanged (as the workers' tables do).
 */
export class LeaseServer {
  #limits = new Map<string, RouteLimit>();
  /** Limits the table does not have (a worker briefly on an older table), by route and spec. */
  readonly #strays = new Map<string, RouteLimit>();
  readonly #make: (spec: string, route: string) => RouteLimit;

  /** `make` builds a full-rate limit from a spec (route-table.ts's RouteLimit, share 1). */
  constructor(make: (spec: string, route: string) => RouteLimit) {
    this.#make = make;
  }

  /** Indexes a new table's limits. */
  update(limits: Iterable<RouteLimit>): void {
    const next = new Map<string, RouteLimit>();
    for (const limit of limits) next.set(limit.route, limit);
    this.#limits = next;
    this.#strays.clear();
  }

  grant(request: LeaseRequest, now: number): LeaseReply {
    let limit = this.#limits.get(request.route);
    if (limit === undefined || limit.spec !== request.spec) {
      const key = `${request.route} ${request.spec}`;
      limit = this.#strays.get(key);
      if (limit === undefined) {
        limit = this.#make(request.spec, request.route);
        this.#strays.set(key, limit);
      }
    }
    const grant = limit.grant(request.client, request.consumer, request.max, now);
    return { type: "lease", id: request.id, ...grant };
  }
}
