/**
 * What the gateway suspects about the machines its instances run on.
 *
 * A connection to one instance that cannot be opened (refused, no route to
 * the host, connect timeout) is the first sign that its whole node may be
 * gone: the node becomes suspect for SUSPECT_MS (renewed by each further such
 * failure), and every service's balancer tries its endpoints on that node
 * last, so the next requests, and the retry of the one that failed, go to
 * other machines at once instead of finding each dead instance one by one.
 * An answer from any instance on the node clears it (one instance that
 * crashed on a live machine moves its neighbours' traffic only until one of
 * them answers a request already in flight, or for SUSPECT_MS at most).
 *
 * The control plane's own verdict (the node not ready, its instances moved to
 * standby in the table) follows within seconds; this bridges the time until
 * then, and keeps working while the control plane is away.
 *
 *   connect error to instance i on node N ─► N.suspect(now) ─► book.suspectEndsAt
 *   Backend.next / leastRequest / byKey / nextExcept: while now < suspectEndsAt, endpoints on a
 *   suspect node are skipped unless nothing else is left
 */

import { CONNECT_TIMEOUT } from "./upstream-pool.ts";

/** How long a node stays suspect after a connection to one of its instances failed (ms). */
export const SUSPECT_MS = 5_000;

/** One node as the gateway sees it; shared by every endpoint on it, in every service. */
export class NodeHealth {
  readonly name: string;
  readonly #book: NodeBook;
  /** Until when (Date.now()) the node is suspect; 0: not suspect. */
  suspectUntil = 0;

  constructor(name: string, book: NodeBook) {
    this.name = name;
    this.#book = book;
  }

  /** A connection to one of its instances could not be opened. */
  suspect(now: number): void {
    this.suspectUntil = now + SUSPECT_MS;
    if (this.suspectUntil > this.#book.suspectEndsAt) this.#book.suspectEndsAt = this.suspectUntil;
  }

  /** One of its instances answered: the machine is there. */
  answered(): void {
    this.suspectUntil = 0;
  }

  isSuspect(now: number): boolean {
    return this.suspectUntil > now;
  }
}

/**
 * Every node's health, by name. Kept across table rebuilds (a table built
 * while a node dies must not forget what the last one learnt).
 */
export class NodeBook {
  /** When the last suspicion ends: before then some node may be suspect (one comparison per pick). */
  suspectEndsAt = 0;
  readonly #nodes = new Map<string, NodeHealth>();

  /** The node's health (made on first use). */
  of(name: string): NodeHealth {
    let node = this.#nodes.get(name);
    if (node === undefined) {
      node = new NodeHealth(name, this);
      this.#nodes.set(name, node);
    }
    return node;
  }

  /** Forgets nodes no longer in use, so a long-lived gateway does not collect every node ever seen. */
  keepOnly(names: ReadonlySet<string>): void {
    for (const name of this.#nodes.keys()) if (!names.has(name)) this.#nodes.delete(name);
  }

  /** Whether some node may be suspect at `now`. */
  anySuspect(now: number): boolean {
    return now < this.suspectEndsAt;
  }
}

/** Connection errors that say the instance's machine may be gone: the connection could not be opened. */
export const CONNECT_FAILURES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  CONNECT_TIMEOUT,
]);
