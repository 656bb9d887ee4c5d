/**
 * Fan-out of committed changes to watchers, shared by the stores that live in
 * this process (SQLite, memory). A store publishes each change after it
 * commits, in revision order; every watcher has its own buffer, so a slow
 * consumer never blocks a writer.
 *
 * A watch that starts at a revision subscribes first and reads history second;
 * live events the history read already covered are dropped by revision, so
 * nothing is lost or delivered twice across that seam.
 */

import { HerdError } from "../common/errors.ts";
import type { Kind } from "../model/objects.ts";
import { closedStoreError } from "./checks.ts";
import type { WatchEvent, WatchOptions } from "./store.ts";

/** What a store read from its history for a watch that starts at a revision. */
export interface HistoryRead {
  /** Changes with revision > fromRevision, only of the kinds asked for, in revision order. */
  events: WatchEvent[];
  /** The store revision the read covered: every change up to it is in `events` or was filtered out. */
  revision: number;
}

/**
 * Reads the changes after `fromRevision` (of `kinds`, or all when undefined).
 * Throws HerdError `gone` when some of them were compacted away.
 */
export type ReadHistory = (fromRevision: number, kinds: Kind[] | undefined) => HistoryRead;

interface Subscriber {
  kinds: Set<Kind> | undefined;
  /** Events published but not yet taken; taken ones before `head` are cleared. */
  queue: (WatchEvent | undefined)[];
  head: number;
  /** The buffer outgrew the limit and was dropped; the watcher ends with `gone`. */
  overflowed: boolean;
  /** The store closed while this watcher was open. */
  closed: boolean;
  /** Resolves the watcher's pending wait, if it is waiting. */
  wake: (() => void) | undefined;
}

/** Delivers published changes to watchers, each through its own buffer. */
export class WatchHub {
  #subscribers = new Set<Subscriber>();
  #maxBuffered: number;
  #closed = false;

  /**
   * `maxBuffered`: how many undelivered events one watcher may hold. A watcher
   * further behind than that gets `gone` (like a compacted revision) and must
   * relist, instead of growing without bound.
   */
  constructor(maxBuffered: number) {
    this.#maxBuffered = maxBuffered;
  }

  /** Hands a committed change to every interested watcher. Call in revision order. */
  publish(event: WatchEvent): void {
    this.publishAll([event]);
  }

  /**
   * Hands one commit's changes to every interested watcher, in revision
   * order. A watcher is cut off (`gone`) when it was already `maxBuffered`
   * behind before this commit: one commit larger than that (a scale that
   * places 10,000 instances in one transaction) does not cut off watchers that
   * were keeping up, since they had no turn to take its events in between.
   */
  publishAll(events: readonly WatchEvent[]): void {
    if (events.length === 0) return;
    for (const sub of this.#subscribers) {
      if (sub.overflowed) continue;
      if (sub.queue.length - sub.head >= this.#maxBuffered) {
        sub.overflowed = true;
        sub.queue = [];
        sub.head = 0;
        sub.wake?.();
        continue;
      }
      let added = false;
      for (const event of events) {
        if (sub.kinds && !sub.kinds.has(event.kind)) continue;
        sub.queue.push(event);
        added = true;
      }
      if (added) sub.wake?.();
    }
  }

  /**
   * A watch as the Store interface defines it. It subscribes at once, so no
   * change committed after this call is missed even if iteration starts later;
   * history is read when iteration starts.
   */
  watch<T>(options: WatchOptions, readHistory: ReadHistory): AsyncIterable<WatchEvent<T>> {
    const { signal } = options;
    const sub: Subscriber = {
      kinds: options.kinds ? new Set(options.kinds) : undefined,
      queue: [],
      head: 0,
      overflowed: false,
      closed: this.#closed,
      wake: undefined,
    };
    // Unsubscribing on abort also covers a watch that is never iterated.
    const onAbort = () => {
      this.#subscribers.delete(sub);
      sub.wake?.();
    };
    if (!signal.aborted && !this.#closed) {
      this.#subscribers.add(sub);
      signal.addEventListener("abort", onAbort, { once: true });
    }
    return this.#stream<T>(sub, options, readHistory, onAbort);
  }

  /** Ends every open watcher with `unavailable`; later watches end the same way. */
  close(): void {
    this.#closed = true;
    for (const sub of this.#subscribers) {
      sub.closed = true;
      sub.wake?.();
    }
    this.#subscribers.clear();
  }

  async *#stream<T>(
    sub: Subscriber,
    options: WatchOptions,
    readHistory: ReadHistory,
    onAbort: () => void,
  ): AsyncGenerator<WatchEvent<T>> {
    const { fromRevision, signal } = options;
    try {
      if (signal.aborted) return;
      if (sub.closed) throw closedStoreError();
      if (fromRevision !== undefined && !(Number.isSafeInteger(fromRevision) && fromRevision >= 0)) {
        throw new HerdError("invalid", `watch fromRevision must be an integer >= 0, got ${fromRevision}`);
      }
      // Highest revision delivered or covered by the history read; anything
      // at or below it in the live buffer is a duplicate.
      let seen = 0;
      if (fromRevision !== undefined) {
        const history = readHistory(fromRevision, options.kinds);
        seen = Math.max(fromRevision, history.revision);
        for (const event of history.events) {
          if (signal.aborted) return;
          yield event as WatchEvent<T>;
        }
      }
      while (!signal.aborted) {
        if (sub.head < sub.queue.length) {
          const event = sub.queue[sub.head]!;
          sub.queue[sub.head] = undefined;
          sub.head++;
          // Drop the taken prefix now and then so the buffer does not only grow.
          if (sub.head > 1024 && sub.head * 2 > sub.queue.length) {
            sub.queue = sub.queue.slice(sub.head);
            sub.head = 0;
          }
          if (event.revision <= seen) continue;
          seen = event.revision;
          yield event as WatchEvent<T>;
          continue;
        }
        if (sub.overflowed) {
          throw new HerdError(
            "gone",
            `watcher fell more than ${this.#maxBuffered} changes behind after revision ${seen}; relist and watch from the list's revision`,
          );
        }
        if (sub.closed) throw closedStoreError();
        await new Promise<void>((resolve) => {
          sub.wake = resolve;
        });
        sub.wake = undefined;
      }
    } finally {
      this.#subscribers.delete(sub);
      signal.removeEventListener("abort", onAbort);
    }
  }
}
