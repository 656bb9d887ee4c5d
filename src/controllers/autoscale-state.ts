/**
 * The autoscaler's memory in the store (kind `autoscale_state`, key the
 * service's), so a restarted control plane (kill -9 too) goes on where it
 * was: the scale-down delay's wants, panic, the idle timer, the last request
 * seen and the last decisions.
 *
 *   each round ─► decide (memory in place) ─► what matters changed? ─► put at once
 *                                           └► only times moved ─► put at most every SAVE_EVERY_MS
 *   first sight of a service (a start) ─► get ─► memory restored
 *
 * What is not kept: the cpu and query samples (they refill within a stable
 * window) and the live traffic figures (gateways report them again within a
 * second, with the last request each saw, also while the control plane was
 * away). The idle rule's 2 s confirmation starts again after a restart, so
 * those reports are in before a service goes to zero.
 */

import type { Store } from "../store/store.ts";
import type { AutoscaleDecision } from "./autoscale.ts";
import type { Decision, Memory } from "./autoscale-decide.ts";

/** The stored object. */
export interface AutoscaleState {
  mem: Memory;
  /** The latest request seen (ms since the epoch). */
  lastRequestAt?: number;
  /** The last decision (status shows its figures). */
  last?: Decision;
  /** The last decisions that changed the count or were refused, oldest first. */
  decisions: AutoscaleDecision[];
  /** When it was written (ms since the epoch). */
  savedAt: number;
}

/** A state whose only change is that times moved is written at most this often. */
export const SAVE_EVERY_MS = 5000;

/**
 * What must be stored at once when it changes: the count, the wants' levels,
 * panic and idle switching, a new decision. Times moving on alone wait for
 * SAVE_EVERY_MS.
 */
export function shapeOf(s: Omit<AutoscaleState, "savedAt">): string {
  return JSON.stringify([
    s.mem.lastCount,
    s.mem.wants.map((w) => w.want),
    s.mem.panicAt !== undefined,
    s.mem.idleSince !== undefined,
    s.decisions.length,
    s.decisions.at(-1)?.time,
    s.last?.to,
  ]);
}

/** The stored state of a service, as a copy the autoscaler may change (objects read from the store never are). */
export async function loadState(store: Store, key: string): Promise<AutoscaleState | undefined> {
  const o = await store.get<AutoscaleState>("autoscale_state", key);
  if (!o) return undefined;
  const s = structuredClone(o.value) as AutoscaleState;
  // The idle confirmation starts again: the gateways' figures must be seen after the restart.
  delete s.mem.idleSince;
  return s;
}

export async function saveState(store: Store, key: string, state: AutoscaleState): Promise<void> {
  await store.put("autoscale_state", key, state);
}

/** Removes the states of services that are no longer autoscaled (gone, or autoscale dropped). */
export async function dropStates(store: Store, keep: (key: string) => boolean): Promise<void> {
  for (const o of (await store.list("autoscale_state")).items)
    if (!keep(o.key)) await store.delete("autoscale_state", o.key);
}
