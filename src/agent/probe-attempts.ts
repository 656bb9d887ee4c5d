/**
 * An instance's recent health-check outcomes, for its status: each different
 * outcome is a new record, the same one again only counts up, and only the
 * last PROBE_ATTEMPTS_KEPT records are kept. So a check failing every 200 ms
 * for a minute is one record with a count, and the control plane can stream
 * each new outcome to the deploy log as it happens (controllers/probe-log.ts).
 *
 *   probe result ─► record(): same as the last record? count++ : new record (worth a heartbeat now)
 *   heartbeat    ─► recent(): the records, while the last one failed or passed only lately
 */

import { PROBE_ATTEMPTS_KEPT, type ProbeAttempt } from "../model/protocol.ts";
import type { ProbeResult } from "./probes.ts";

/** How long after its first pass a record is still sent (the control plane learns that it passed). */
export const PASSED_RECENTLY_MS = 15_000;
/** Characters kept of a probe's message. */
const MESSAGE_CHARS = 1000;

export class ProbeAttempts {
  #records: ProbeAttempt[] = [];

  /** Whether `result` would start a new record (it differs from the last outcome). */
  isNew(result: ProbeResult): boolean {
    const last = this.#records.at(-1);
    return last === undefined || !sameOutcome(last, result, messageOf(result));
  }

  /**
   * Adds one outcome at time `at` (ms). Returns the record it went to, and
   * whether that record is new (a different outcome from the last one).
   */
  record(result: ProbeResult, at: number): { attempt: ProbeAttempt; fresh: boolean } {
    const last = this.#records.at(-1);
    const iso = new Date(at).toISOString();
    const message = messageOf(result);
    if (last && sameOutcome(last, result, message)) {
      last.count++;
      last.lastAt = iso;
      return { attempt: last, fresh: false };
    }
    const attempt: ProbeAttempt = {
      attempt: last ? last.attempt + last.count : 1,
      count: 1,
      firstAt: iso,
      lastAt: iso,
      ok: result.ok,
      message,
      ...(result.status !== undefined ? { status: result.status } : {}),
      ...(result.body !== undefined ? { body: result.body } : {}),
    };
    this.#records.push(attempt);
    if (this.#records.length > PROBE_ATTEMPTS_KEPT) this.#records.shift();
    return { attempt, fresh: true };
  }

  /**
   * Copies of the records a status carries at `now` (ms): while the last
   * check failed, or passed for the first time within PASSED_RECENTLY_MS;
   * undefined otherwise (a healthy instance sends none).
   */
  recent(now: number): ProbeAttempt[] | undefined {
    const last = this.#records.at(-1);
    if (!last) return undefined;
    if (last.ok && now - Date.parse(last.firstAt) > PASSED_RECENTLY_MS) return undefined;
    return this.#records.map((r) => ({ ...r, ...(r.logTail ? { logTail: [...r.logTail] } : {}) }));
  }

  /** Forgets every record (a new start). */
  clear(): void {
    this.#records = [];
  }
}

/** A result's message, cut to what the heartbeat schema takes (a long health path makes a long message). */
function messageOf(result: ProbeResult): string {
  return (result.message ?? (result.ok ? "passed" : "failed")).slice(0, MESSAGE_CHARS);
}

function sameOutcome(last: ProbeAttempt, result: ProbeResult, message: string): boolean {
  return (
    last.ok === result.ok &&
    last.message === message &&
    last.status === result.status &&
    last.body === result.body
  );
}
