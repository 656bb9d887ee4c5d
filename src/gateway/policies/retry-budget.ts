/**
 * A retry budget: retries may add at most `ratio` (default 20%) extra load
 * over the requests of the last `windowMs`, plus `minPerSecond` so that a
 * quiet service can still retry. Counted in one-second buckets over a ring.
 */

export class RetryBudget {
  readonly ratio: number;
  readonly minPerSecond: number;
  readonly #seconds: number;
  readonly #requests: Float64Array;
  readonly #retries: Float64Array;
  #second = -1;

  constructor(ratio = 0.2, windowMs = 10_000, minPerSecond = 1) {
    this.ratio = ratio;
    this.minPerSecond = minPerSecond;
    this.#seconds = Math.max(1, Math.round(windowMs / 1000));
    this.#requests = new Float64Array(this.#seconds);
    this.#retries = new Float64Array(this.#seconds);
  }

  /** Counts a first attempt. */
  request(now: number): void {
    this.#requests[this.#advance(now)]++;
  }

  /** Whether one more retry fits the budget now; if so it is counted. */
  tryRetry(now: number): boolean {
    const slot = this.#advance(now);
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < this.#seconds; i++) {
      requests += this.#requests[i];
      retries += this.#retries[i];
    }
    if (retries + 1 > requests * this.ratio + this.minPerSecond * this.#seconds) return false;
    this.#retries[slot]++;
    return true;
  }

  #advance(now: number): number {
    const second = Math.floor(now / 1000);
    if (second !== this.#second) {
      // Clear the slots of the seconds that passed since the last call (all of them after a long pause).
      const gap = this.#second < 0 ? this.#seconds : Math.min(this.#seconds, second - this.#second);
      for (let i = 1; i <= gap; i++) {
        const slot = (((this.#second + i) % this.#seconds) + this.#seconds) % this.#seconds;
        this.#requests[slot] = 0;
        this.#retries[slot] = 0;
      }
      this.#second = second;
    }
    return second % this.#seconds;
  }
}
