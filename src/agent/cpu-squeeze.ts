/**
 * Low-criticality instances give way at once when a critical one waits for a
 * CPU. A critical instance's weight (4× its request, cgroups.ts
 * CRITICALITY_WEIGHT) decides shares over time, but a busy critical service
 * on a full node still queues behind every runnable task, and the remediation
 * engine's answer (throttle the low routes, scale out) takes seconds to
 * come. The node answers within one window: every GUARD_INTERVAL_MS the agent
 * reads how long each critical instance's threads waited runnable
 * (/proc/<pid>/task/<tid>/schedstat; cpu-guard.ts, realtime-guard.ts windowBetween);
 * when one waited SQUEEZE_WAIT of the window and SQUEEZE_WAIT_SHARE of its
 * runnable time, every low-criticality instance on the node gets the
 * kernel's least CPU weight, its cgroup idle where the kernel can
 * (cgroups.ts setCpuWeight: a CPU running only idle tasks takes a waiting
 * task at once; they keep running on what is left) until
 * RELEASE_WINDOWS windows in a row pass with no critical instance waiting
 * so; then their weights are written back. A squeeze again within
 * RESQUEEZE_MS of that doubles the calm needed next time (up to
 * MAX_RELEASE_WINDOWS): the load that made it wait is still there, and each
 * release costs the critical service a window of waiting. Normal instances keep their
 * fair share. A critical instance in real time preempts and does not wait,
 * so this acts when it is busy past its budget (or on cgroup v2).
 */

import { timesOf, type Window } from "./realtime-guard.ts";

/** Of the window: a critical instance waited this long runnable (its threads' waits added up). */
const SQUEEZE_WAIT = 0.1;
/** Of its runnable time (run + wait) in the window: it waited this much. */
const SQUEEZE_WAIT_SHARE = 0.2;
/** Windows in a row with no critical instance waiting so before the low ones get their weight back (10 s). */
const RELEASE_WINDOWS = 50;
/** A squeeze this soon after a release (ms) doubles the windows of the next release. */
const RESQUEEZE_MS = 30_000;
/** The most windows a release waits for (5 min). */
const MAX_RELEASE_WINDOWS = 1500;

/** What the squeeze remembers between windows. */
export interface SqueezeState {
  squeezed: boolean;
  /** Calm windows in a row while squeezed. */
  calm: number;
  /** Calm windows in a row this squeeze needs before its release. */
  releaseAfter: number;
  /** When the last release was (ms). */
  releasedAt?: number;
}

export function newSqueezeState(): SqueezeState {
  return { squeezed: false, calm: 0, releaseAfter: RELEASE_WINDOWS };
}

/** The critical instance that waited past the thresholds in a window, with its wait (ms). */
export interface Contention {
  id: string;
  waitMs: number;
  windowMs: number;
}

/**
 * One window: updates `state` from what each critical instance's threads
 * did in it (an instance without a window yet, just started, is left out),
 * at `now` (ms), and says what to do: "squeeze" (the low instances to the least weight,
 * with the instance that waited), "release" (their weights back) or nothing.
 */
export function judgeContention(
  state: SqueezeState,
  windows: Map<string, Window>,
  now: number,
): { action: "squeeze"; by: Contention } | { action: "release" } | undefined {
  let by: Contention | undefined;
  for (const [id, w] of windows) {
    const { runMs, waitMs } = timesOf(w);
    if (waitMs >= SQUEEZE_WAIT * w.ms && waitMs >= SQUEEZE_WAIT_SHARE * (waitMs + runMs)) {
      if (!by || waitMs > by.waitMs) by = { id, waitMs, windowMs: w.ms };
    }
  }
  if (by) {
    state.calm = 0;
    if (state.squeezed) return undefined;
    state.squeezed = true;
    const soon = state.releasedAt !== undefined && now - state.releasedAt < RESQUEEZE_MS;
    state.releaseAfter = soon ? Math.min(MAX_RELEASE_WINDOWS, state.releaseAfter * 2) : RELEASE_WINDOWS;
    return { action: "squeeze", by };
  }
  if (!state.squeezed || ++state.calm < state.releaseAfter) return undefined;
  state.squeezed = false;
  state.calm = 0;
  state.releasedAt = now;
  return { action: "release" };
}
