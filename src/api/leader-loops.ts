/**
 * Timers only one server of those sharing a store may run: the alert
 * evaluator, the dependency-drift checker, ACME certificate orders and
 * renewals, the add-on sync, the artifact collection. They start when this server's term as leader
 * begins and stop when it ends (store/leadership.ts), so a new leader takes
 * them over and a deposed one stops them. On SQLite the one server leads from
 * start to close.
 *
 *   server.ts: loops.add("alerts", alerts) … ─► leadership.start(url, term)
 *     term.begin ─► loops.start() (every loop, in the order added)
 *     term.end   ─► loops.stop()  (every loop; waits for a round in flight)
 *   a loop added while the term runs (a route plugin) starts at once.
 */

import type { Logger } from "../common/log.ts";

/** A timer that can be started and stopped again (a new term). */
export interface Loop {
  start(): void;
  /** Stops the timer; resolves once a round in flight has ended. */
  stop(): Promise<void>;
}

export class LeaderLoops {
  readonly #loops = new Map<string, Loop>();
  readonly #logger: Logger;
  #running = false;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** Registers a loop under a name; it runs while this server leads. */
  add(name: string, loop: Loop): void {
    if (this.#loops.has(name)) throw new Error(`leader loop ${name} added twice`);
    this.#loops.set(name, loop);
    if (this.#running) loop.start();
  }

  /** The names of the loops running now (none on a follower). */
  running(): string[] {
    return this.#running ? [...this.#loops.keys()] : [];
  }

  /** A term began: starts every loop. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    for (const loop of this.#loops.values()) loop.start();
  }

  /** The term ended: stops every loop and waits for their rounds in flight. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    await Promise.all(
      [...this.#loops].map(([name, loop]) =>
        loop.stop().catch((err) => this.#logger.warn("stopping a leader loop failed", { loop: name, err })),
      ),
    );
  }
}
