/**
 * Token buckets for rate limiting: `rate` tokens a second, holding at most
 * `burst`. Time is passed in (milliseconds), so the logic is exact in tests
 * and costs no clock read per bucket.
 */

export interface TakeResult {
  ok: boolean;
  /** Tokens left after this take (floored). */
  remaining: number;
  /** When refused: how long until one token is there, ms. */
  retryAfterMs: number;
  /** Until the bucket is full again, ms (for the RateLimit-Reset header). */
  resetMs: number;
}

/** What a lease (rate-lease.ts) got: up to the tokens asked for; when none, how long until one is there. */
export interface Grant {
  granted: number;
  retryAfterMs: number;
  resetMs: number;
}

export class TokenBucket {
  readonly rate: number;
  readonly burst: number;
  #tokens: number;
  #at: number;

  constructor(rate: number, burst: number, now: number) {
    if (!(rate > 0) || !(burst >= 1)) throw new Error("a token bucket needs rate > 0 and burst >= 1");
    this.rate = rate;
    this.burst = burst;
    this.#tokens = burst;
    this.#at = now;
  }

  take(now: number): TakeResult {
    this.#refill(now);
    const perTokenMs = 1000 / this.rate;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return {
        ok: true,
        remaining: Math.floor(this.#tokens),
        retryAfterMs: 0,
        resetMs: Math.ceil((this.burst - this.#tokens) * perTokenMs),
      };
    }
    return {
      ok: false,
      remaining: 0,
      retryAfterMs: Math.ceil((1 - this.#tokens) * perTokenMs),
      resetMs: Math.ceil((this.burst - this.#tokens) * perTokenMs),
    };
  }

  /** Takes up to `max` whole tokens at once, for a worker's lease; 0 when not even one is there. */
  takeUpTo(max: number, now: number): Grant {
    this.#refill(now);
    const perTokenMs = 1000 / this.rate;
    const granted = Math.min(max, Math.floor(this.#tokens));
    this.#tokens -= granted;
    return {
      granted,
      retryAfterMs: granted > 0 ? 0 : Math.ceil((1 - this.#tokens) * perTokenMs),
      resetMs: Math.ceil((this.burst - this.#tokens) * perTokenMs),
    };
  }

  #refill(now: number): void {
    const elapsed = now - this.#at;
    if (elapsed > 0) {
      this.#tokens = Math.min(this.burst, this.#tokens + (elapsed * this.rate) / 1000);
      this.#at = now;
    }
  }
}

/**
 * One bucket per key (client IP, consumer), with a bound on how many keys are
 * remembered: the least recently used key is forgotten first, so a flood of
 * new addresses cannot exhaust memory (a forgotten key starts with a full bucket).
 */
export class KeyedLimiter {
  readonly rate: number;
  readonly burst: number;
  readonly maxKeys: number;
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(rate: number, burst: number, maxKeys = 100_000) {
    this.rate = rate;
    this.burst = burst;
    this.maxKeys = maxKeys;
  }

  take(key: string, now: number): TakeResult {
    return this.#bucket(key, now).take(now);
  }

  takeUpTo(key: string, max: number, now: number): Grant {
    return this.#bucket(key, now).takeUpTo(max, now);
  }

  #bucket(key: string, now: number): TokenBucket {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.maxKeys)
        this.#buckets.delete(this.#buckets.keys().next().value as string);
      bucket = new TokenBucket(this.rate, this.burst, now);
    } else {
      // Re-insert: Map order is insertion order, so the front is the least recently used.
      this.#buckets.delete(key);
    }
    this.#buckets.set(key, bucket);
    return bucket;
  }

  get size(): number {
    return this.#buckets.size;
  }
}
