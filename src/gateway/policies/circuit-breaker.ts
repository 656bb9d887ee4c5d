/**
 * A circuit breaker per upstream service: closed → open → half-open.
 *
 *   closed:    requests pass; `failureThreshold` failures in a row open it
 *   open:      requests fail fast for `openMs`
 *   half-open: up to `halfOpenRequests` trial requests pass; all succeeding closes it,
 *              any failing opens it again (for openMs × 2, capped at maxOpenMs)
 */

export type BreakerState = "closed" | "open" | "half_open";

export interface BreakerOptions {
  failureThreshold: number;
  openMs: number;
  maxOpenMs: number;
  halfOpenRequests: number;
}

export const DEFAULT_BREAKER: BreakerOptions = {
  failureThreshold: 5,
  openMs: 5000,
  maxOpenMs: 60_000,
  halfOpenRequests: 1,
};

export class CircuitBreaker {
  readonly options: BreakerOptions;
  #state: BreakerState = "closed";
  #failures = 0;
  #openUntil = 0;
  #openMs: number;
  #trials = 0;
  #trialSuccesses = 0;
  #lastTrialAt = 0;

  constructor(options: Partial<BreakerOptions> = {}) {
    this.options = { ...DEFAULT_BREAKER, ...options };
    this.#openMs = this.options.openMs;
  }

  /** The state at `now` (an open breaker whose time is up is half-open). */
  state(now: number): BreakerState {
    if (this.#state === "open" && now >= this.#openUntil) {
      this.#state = "half_open";
      this.#trials = 0;
      this.#trialSuccesses = 0;
    }
    return this.#state;
  }

  /** Whether a request may go to the upstream now. Call `record` with its outcome when it does. */
  allow(now: number): boolean {
    const state = this.state(now);
    if (state === "closed") return true;
    if (state === "open") return false;
    // A trial whose outcome never came (its client left) must not hold the breaker half-open forever.
    if (this.#trials >= this.options.halfOpenRequests && now - this.#lastTrialAt < this.options.openMs)
      return false;
    if (this.#trials >= this.options.halfOpenRequests) this.#trials = 0;
    this.#trials++;
    this.#lastTrialAt = now;
    return true;
  }

  /** How long until an open breaker lets a trial through, ms (0 when not open). */
  retryAfterMs(now: number): number {
    return this.state(now) === "open" ? this.#openUntil - now : 0;
  }

  record(success: boolean, now: number): void {
    const state = this.state(now);
    if (state === "closed") {
      this.#failures = success ? 0 : this.#failures + 1;
      if (this.#failures >= this.options.failureThreshold) this.#open(now, this.options.openMs);
      return;
    }
    if (state === "half_open") {
      if (!success) {
        this.#open(now, Math.min(this.options.maxOpenMs, this.#openMs * 2));
        return;
      }
      this.#trialSuccesses++;
      if (this.#trialSuccesses >= this.options.halfOpenRequests) {
        this.#state = "closed";
        this.#failures = 0;
        this.#openMs = this.options.openMs;
      }
    }
    // Outcomes of requests that started before the breaker opened change nothing while it is open.
  }

  #open(now: number, ms: number): void {
    this.#state = "open";
    this.#openMs = ms;
    this.#openUntil = now + ms;
    this.#failures = 0;
  }
}
