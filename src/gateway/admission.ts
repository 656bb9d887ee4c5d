/**
 * Admission by criticality when the gateway process is saturated.
 *
 * While the event loop keeps up, every request goes straight on. When its
 * delay passes a target (the process, or the CPU it shares with the apps,
 * cannot keep up), the gateway caps the requests of `normal` and `low`
 * services in flight (`limit`, lowered multiplicatively while the delay stays
 * high and raised additively when it falls, as TCP and Netflix's
 * concurrency-limits do). A request over the cap waits in its criticality's
 * queue; when one in flight ends, `normal` waiting requests go on before
 * `low` ones. A request that waited past its class's longest wait is shed
 * (503, Retry-After). `critical` services never wait and are never capped, so
 * their latency stays near their idle baseline while the rest queue. A class
 * is capped only while a higher one has traffic (seen within `precedenceMs`):
 * with nothing to give way to, queueing would only add latency.
 *
 *   chain.ts SHED stage ─► Admission.admit(x) ─┬─ critical, or under the cap: go on (ENDPOINT)
 *                                              ├─ over the cap: queue[low|normal] (STOP)
 *                                              └─ queue full: shed (503)
 *   exchange.ts response closed ─► Admission.release() ─► waiting requests go on (normal first)
 *   every TICK_MS: event-loop delay ─► limit down or up; waiting past maxWaitMs ─► shed
 *
 * The cap counts the process's proxied requests in flight (`proxy.inflight`,
 * critical ones included: they load the process too), so nothing is counted
 * twice and nothing can leak. Upgrades (WebSockets) are not capped.
 */

import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Backend } from "./backend.ts";
import { SHED_ABOVE } from "./backend.ts";
import { admittedAfterWait, shedAfterWait } from "./chain.ts";
import type { Exchange } from "./exchange.ts";

export const LOW = 0;
export const NORMAL = 1;
export const CRITICAL = 2;

export interface AdmissionOptions {
  /**
   * Event-loop delay (ms, the window's p90) above which the process counts as
   * saturated. Default 1: a critical request crosses the loop twice (its
   * request, its answer), and at 2 its p99 behind 29 busy apps' requests was
   * up to 2.3× its idle one (bench:density; within 1.2× in 10 runs at 1).
   */
  targetDelayMs?: number;
  /** The cap never goes below this many requests in flight. Default 8. */
  minLimit?: number;
  /** Longest wait in the queue per class [low, normal] (ms) before a 503. Default [500, 3000]. */
  maxWaitMs?: readonly [number, number];
  /** Most requests waiting per class. Default 2,000. */
  maxQueue?: number;
  /** A class gives way only to a higher class seen within this long (ms). Default 2,000. */
  precedenceMs?: number;
}

/** What `admit` decided: go on now, wait in the queue, or shed (the queue is full). */
export type Decision = "go" | "wait" | "shed";

interface Waiting<T> {
  item: T;
  since: number;
}

/**
 * The admission logic alone, over any kind of waiting item: the cap, the two
 * queues and how the cap moves. `inflight` is always read from the caller
 * (the proxy's count), so an admitted item that never reaches an upstream
 * cannot leak a slot.
 */
export class AdmissionGate<T> {
  /** Requests in flight allowed now for non-critical services; Infinity while not saturated. */
  limit = Number.POSITIVE_INFINITY;
  readonly targetDelayMs: number;
  readonly minLimit: number;
  readonly maxWaitMs: readonly [number, number];
  readonly maxQueue: number;
  readonly precedenceMs: number;
  /** When a request of each class [low, normal, critical] last arrived. */
  readonly #seen = [Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY];
  /** Waiting items per class: [low, normal]; each is FIFO. */
  readonly #queues: [Waiting<T>[], Waiting<T>[]] = [[], []];
  /** Counts since the gate was made (for the metrics and the tests). */
  readonly counts = { queued: 0, shed: 0 };

  constructor(options: AdmissionOptions = {}) {
    this.targetDelayMs = options.targetDelayMs ?? 1;
    this.minLimit = options.minLimit ?? 8;
    this.maxWaitMs = options.maxWaitMs ?? [500, 3000];
    this.maxQueue = options.maxQueue ?? 2000;
    this.precedenceMs = options.precedenceMs ?? 2000;
  }

  get waiting(): number {
    return this.#queues[LOW].length + this.#queues[NORMAL].length;
  }

  /** Whether an item of `rank` may go on with `inflight` requests in flight, or waits, or is shed. */
  admit(rank: number, item: T, inflight: number, now: number): Decision {
    this.#seen[Math.min(rank, CRITICAL)] = now;
    if (rank >= CRITICAL) return "go";
    // Nobody overtakes a waiting request of its own class or a higher one.
    const ahead = rank === LOW ? this.waiting : this.#queues[NORMAL].length;
    if (ahead === 0 && (inflight < this.limit || !this.#outranked(rank, now))) return "go";
    const queue = this.#queues[rank];
    if (queue.length >= this.maxQueue) {
      this.counts.shed++;
      return "shed";
    }
    queue.push({ item, since: now });
    this.counts.queued++;
    return "wait";
  }

  /** Whether a class above `rank` had traffic within precedenceMs. */
  #outranked(rank: number, now: number): boolean {
    for (let r = rank + 1; r <= CRITICAL; r++) if (now - this.#seen[r] <= this.precedenceMs) return true;
    return false;
  }

  /**
   * The next waiting item that may go on with `inflight` in flight: normal
   * ones before low ones; undefined when none may.
   */
  next(inflight: number): T | undefined {
    if (inflight >= this.limit) return undefined;
    return (this.#queues[NORMAL].shift() ?? this.#queues[LOW].shift())?.item;
  }

  /**
   * Moves the cap by the event loop's delay over the last window (ms), and
   * returns the items that waited too long (to be shed). Saturated: the cap
   * drops to 80 % of what is in flight (never below minLimit). Not
   * saturated: it grows by a tenth, and is lifted once it is well above what
   * is in flight with nobody waiting.
   */
  tick(delayMs: number, inflight: number, now: number): T[] {
    if (delayMs > this.targetDelayMs) {
      this.limit = Math.max(this.minLimit, Math.floor(Math.min(this.limit, inflight) * 0.8));
    } else if (this.limit !== Number.POSITIVE_INFINITY) {
      this.limit = Math.ceil(this.limit * 1.1) + 1;
      if (this.waiting === 0 && this.limit > 2 * inflight + this.minLimit)
        this.limit = Number.POSITIVE_INFINITY;
    }
    const expired: T[] = [];
    for (const rank of [LOW, NORMAL]) {
      const queue = this.#queues[rank];
      let n = 0;
      while (n < queue.length && now - queue[n].since > this.maxWaitMs[rank]) expired.push(queue[n++].item);
      if (n > 0) queue.splice(0, n);
    }
    this.counts.shed += expired.length;
    return expired;
  }

  /** Every waiting item, removed (the proxy closes). */
  drain(): T[] {
    const all = [...this.#queues[NORMAL], ...this.#queues[LOW]].map((w) => w.item);
    this.#queues[LOW].length = 0;
    this.#queues[NORMAL].length = 0;
    return all;
  }
}

/**
 * A service's rank for admission. The backend carries its criticality as
 * the shedding share it was built with (route-table.ts: SHED_ABOVE by
 * criticality), so the rank is read back from that.
 */
export function rankOf(backend: Backend): number {
  if (backend.shedAbove >= SHED_ABOVE.critical) return CRITICAL;
  return backend.shedAbove >= SHED_ABOVE.normal ? NORMAL : LOW;
}

/** How often the cap moves and the event loop's delay is read. */
const TICK_MS = 100;

/** The gateway process's admission: the gate, fed by the event loop's delay and the proxy's count. */
export class Admission {
  readonly gate: AdmissionGate<Exchange>;
  readonly #inflight: () => number;
  readonly #delay = monitorEventLoopDelay({ resolution: 5 });
  readonly #timer: NodeJS.Timeout;

  constructor(inflight: () => number, options: AdmissionOptions = {}) {
    this.gate = new AdmissionGate(options);
    this.#inflight = inflight;
    this.#delay.enable();
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
    this.#timer.unref();
  }

  /** The SHED stage's hook: true when `x` goes on now; false when it waits (resumed later) or was shed. */
  admit(x: Exchange, backend: Backend): boolean {
    if (x.res === null) return true;
    const decision = this.gate.admit(rankOf(backend), x, this.#inflight(), performance.now());
    if (decision === "go") return true;
    if (decision === "shed") shedAfterWait(x);
    return false;
  }

  /** A request in flight ended: waiting ones go on while the cap allows. */
  release(): void {
    if (this.gate.waiting === 0) return;
    for (let x = this.gate.next(this.#inflight()); x !== undefined; x = this.gate.next(this.#inflight()))
      admittedAfterWait(x);
  }

  #tick(): void {
    // p90 of the window, less the timer's own resolution: 0 while the loop keeps up.
    const delayMs = Math.max(0, this.#delay.percentile(90) / 1e6 - 5);
    this.#delay.reset();
    for (const x of this.gate.tick(delayMs, this.#inflight(), performance.now())) shedAfterWait(x);
    this.release();
  }

  /** Stops the timer and sheds whoever still waits. */
  close(): void {
    clearInterval(this.#timer);
    this.#delay.disable();
    for (const x of this.gate.drain()) shedAfterWait(x);
  }
}
