/** A route's rate limit (`rateLimit`), built with the routing table and kept across tables while its spec is unchanged. */

import type { RateLimitSpec } from "../model/manifest.ts";
import { type Grant, KeyedLimiter, type TakeResult, TokenBucket } from "./policies/token-bucket.ts";
import { type LeaseClient, LeasedLimit } from "./rate-lease.ts";

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
