/**
 * The autoscaler's decision, as a pure function: figures in, a count and its
 * reason out (controllers/autoscale.ts reads the figures and applies it).
 * Knative's algorithm, with the HPA's rate limits:
 *
 *   stable window figure ─► want = ceil(figure / target)      (p99: ceil(current × p99 / target))
 *   panic window figure  ─► panic want ≥ 2 × current? ─► panic: answer at once, never scale in,
 *                                                              until a stable window passes without
 *   want < current ─► scale in only to the highest want of the last scaleDownDelay
 *   one step: out by at most max(current, 4), in by at most half; both at most maxStep; then [min, max]
 *   min 0: no request for idleAfter (and none in flight or held), seen for 2 s ─► 0; at 0 any demand ─► wake
 */

import type { AutoscaleSpec } from "../model/manifest.ts";

/** Panic when the panic window asks for this many times the current count (Knative's panic threshold 200 %). */
export const PANIC_THRESHOLD = 2;
/** How long the idle rule must hold before a min-0 service goes to zero (two gateway reports). */
export const IDLE_CONFIRM_MS = 2000;
/** Scale-out per decision is at least this many instances (the HPA's default: 100 % or 4 pods). */
export const MIN_SCALE_UP = 4;

/** What the autoscaler saw for one service at `now`. */
export interface Observation {
  now: number;
  /** The service's desired instance count now. */
  current: number;
  /** The target metric over the stable window; undefined when it could not be read (nothing is decided). */
  stable: number | undefined;
  /** The target metric over the panic window. */
  panic: number | undefined;
  /** Latest request arrival (gateways' figures), ms since the epoch. */
  lastRequestAt?: number;
  /** Requests in flight and held for a cold start now. */
  inflight: number;
  waiting: number;
  /** False when no gateway figures exist at all: then nothing says the service is idle (default true). */
  traffic?: boolean;
}

/** What the decision remembers between calls for one service (the autoscaler stores it: it survives a restart). */
export interface Memory {
  /** When this service was first seen, or last rose from 0: counts as a request for the idle rule and starts the scale-down history. */
  activeSince: number;
  /** The count at the last call. */
  lastCount: number;
  /** Set while panicking: when the panic window last asked for ≥ 2× (panic ends a stable window later). */
  panicAt?: number;
  /** Since when the idle rule has held without a break. */
  idleSince?: number;
  /**
   * What the last scaleDownDelay asked for, oldest first, kept as a falling
   * staircase: each want with the last time it (or more) was asked, wants
   * decreasing. The first is the highest of the delay; a handful of entries
   * however long the delay, so the memory is small enough to store.
   */
  wants: { at: number; want: number }[];
}

/** Adds `want` asked at `now` to the staircase, dropping what it covers and what the delay left behind. */
export function rememberWant(mem: Memory, now: number, want: number, delayMs: number): void {
  const w = mem.wants;
  while (w.length > 0 && w[w.length - 1].want <= want) w.pop();
  w.push({ at: now, want });
  while (w.length > 0 && w[0].at < now - delayMs) w.shift();
}

/** One decision: the count, and why. */
export interface Decision {
  at: number;
  from: number;
  to: number;
  /** Instances the stable and the panic window ask for (before delay, steps and bounds). */
  stableWant?: number;
  panicWant?: number;
  panic: boolean;
  /** The figures over both windows, in the target's unit. */
  stable?: number;
  panicFigure?: number;
  reason: string;
}

export function newMemory(now: number, count: number): Memory {
  return { activeSince: now, lastCount: count, wants: [] };
}

/** Instances `figure` asks for at the target (undefined: no figure). */
export function wantFor(
  spec: AutoscaleSpec,
  figure: number | undefined,
  current: number,
): number | undefined {
  if (figure === undefined) return undefined;
  const ratio = figure / spec.target.value;
  // p99 does not add up over instances: it scales the current count (the HPA's ratio), others are totals.
  const raw = spec.target.metric === "p99" ? Math.max(current, 1) * ratio : ratio;
  // A hair under a whole number is that number: 100 rps at 50 per instance wants 2, not 3.
  return Math.max(0, Math.ceil(raw - 1e-9));
}

/** Decides the next count; updates `mem` in place (it belongs to the caller's one service). */
export function decide(spec: AutoscaleSpec, o: Observation, mem: Memory): Decision {
  const { now, current } = o;
  if (mem.lastCount === 0 && current > 0) mem.activeSince = now;
  mem.lastCount = current;
  const stableWant = wantFor(spec, o.stable, current);
  const panicWant = wantFor(spec, o.panic, current);
  const base = {
    at: now,
    from: current,
    ...(stableWant !== undefined ? { stableWant } : {}),
    ...(panicWant !== undefined ? { panicWant } : {}),
    ...(o.stable !== undefined ? { stable: o.stable } : {}),
    ...(o.panic !== undefined ? { panicFigure: o.panic } : {}),
  };
  const result = (to: number, reason: string): Decision => {
    mem.lastCount = to;
    return { ...base, to, panic: mem.panicAt !== undefined, reason };
  };
  const unit = targetUnit(spec);

  // Scaled to zero: any demand wakes it (the gateway's wake usually came first).
  if (current === 0) {
    const demand = Math.max(stableWant ?? 0, panicWant ?? 0, o.waiting > 0 ? 1 : 0);
    if (demand === 0) return result(0, "idle at zero: no demand");
    const to = clamp(spec, Math.min(demand, spec.maxStep), 1);
    mem.activeSince = now;
    return result(to, `demand at zero (${o.waiting} held, wants ${demand}): waking to ${to}`);
  }

  // Idle: only this takes a min-0 service to zero.
  // Gateways report once a second, so a request may not show yet: idle must be seen for a while.
  const last = Math.max(o.lastRequestAt ?? 0, mem.activeSince);
  if (
    spec.min === 0 &&
    o.traffic !== false &&
    o.inflight === 0 &&
    o.waiting === 0 &&
    now - last >= spec.idleAfterMs
  ) {
    mem.idleSince ??= now;
    if (now - mem.idleSince >= IDLE_CONFIRM_MS) {
      mem.panicAt = undefined;
      mem.idleSince = undefined;
      mem.wants = [];
      return result(
        0,
        `idle: no request for ${seconds(now - last)} (idleAfter ${seconds(spec.idleAfterMs)})`,
      );
    }
  } else mem.idleSince = undefined;

  if (stableWant === undefined || panicWant === undefined) return result(current, "no figures: holding");

  // Panic: entered when the short window asks for ≥ 2× the current count, kept while it does
  // and for a stable window after.
  if (panicWant >= PANIC_THRESHOLD * current) mem.panicAt = now;
  else if (mem.panicAt !== undefined && now - mem.panicAt >= spec.stableWindowMs) mem.panicAt = undefined;
  const panic = mem.panicAt !== undefined;

  let want: number;
  let why: string;
  if (panic) {
    want = Math.max(panicWant, current);
    why = `panic: the last ${seconds(spec.panicWindowMs)} ask for ${panicWant} (${fmt(o.panic!)}${unit} at ${fmt(spec.target.value)}${unit} each)`;
  } else {
    want = stableWant;
    why = `the last ${seconds(spec.stableWindowMs)} ask for ${stableWant} (${fmt(o.stable!)}${unit} at ${fmt(spec.target.value)}${unit} each)`;
  }

  // Scale-down delay: the highest want of the delay's window, once a whole window has been seen.
  rememberWant(mem, now, want, spec.scaleDownDelayMs);
  if (want < current) {
    const seen = now - mem.activeSince >= spec.scaleDownDelayMs;
    const highest = Math.max(mem.wants[0]?.want ?? want, want);
    const floor = seen ? highest : current;
    if (floor >= current) {
      return result(
        clamp(spec, current, 1),
        `${why}; holding ${current} for the scale-down delay (${seconds(spec.scaleDownDelayMs)})`,
      );
    }
    if (floor > want) {
      why += `; ${floor} is the most asked in the scale-down delay (${seconds(spec.scaleDownDelayMs)})`;
    }
    want = floor;
  }

  // One step at a time: out by at most doubling (or +4), in by at most half; maxStep caps both.
  let to = want;
  const up = Math.min(spec.maxStep, Math.max(current, MIN_SCALE_UP));
  const down = Math.min(spec.maxStep, Math.ceil(current / 2));
  if (to > current + up) {
    to = current + up;
    why += `; at most +${up} in one step`;
  } else if (to < current - down) {
    to = current - down;
    why += `; at most -${down} in one step`;
  }
  const bounded = clamp(spec, to, 1);
  if (bounded !== to)
    why += bounded === spec.max ? `; max is ${spec.max}` : `; min is ${Math.max(spec.min, 1)}`;
  return result(bounded, why);
}

/** `n` inside [max(min, floor), max]: a running min-0 service keeps at least `floor` until it is idle. */
function clamp(spec: AutoscaleSpec, n: number, floor: number): number {
  return Math.min(spec.max, Math.max(spec.min, floor, n));
}

/** How figures of the spec's metric read: " rps", " in flight", "ms", " CPU", "". */
export function targetUnit(spec: AutoscaleSpec): string {
  return { rps: " rps", concurrency: " in flight", cpu: " CPU", p99: "ms p99", query: "" }[
    spec.target.metric
  ];
}

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2));
const seconds = (ms: number) =>
  ms % 60_000 === 0 && ms >= 120_000 ? `${ms / 60_000}m` : `${Math.round(ms / 100) / 10}s`;
