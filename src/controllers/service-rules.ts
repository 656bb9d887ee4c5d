/**
 * The service controller's pure rules (service-controller.ts): how a rollout
 * is judged, how many new-release instances a progressive rollout runs, which
 * instances leave first, pets' ordinal ids.
 */

import type { Instance, InstanceState, RolloutProgress, Service } from "../model/objects.ts";
import { canaryInstances, DEFAULT_STEPS } from "../model/progressive.ts";
import { formatDeadline, serviceDeadlineMs } from "../model/rollout.ts";
import type { Shortfall } from "../scheduler/shortfall.ts";
import type { ReconcileResult } from "./service-controller.ts";

/**
 * Whether a progressive rollout keeps the old release's instances (and its
 * share of requests): during canary steps, a blue/green preview and while the
 * new release is brought to its full count; not once it is promoted or aborted.
 */
export function holdsOldRelease(svc: Service): boolean {
  const p = svc.progressive;
  return (
    p !== undefined &&
    p.release === svc.release &&
    (p.phase === "steps" || p.phase === "preview" || p.phase === "promoting")
  );
}

/** How many instances of the new release a progressive rollout runs now: a canary step's share, else all. */
export function newReleaseCount(svc: Service): number {
  const p = svc.progressive;
  if (p?.phase !== "steps") return svc.instances;
  const steps = svc.spec.rollout?.steps ?? DEFAULT_STEPS;
  return canaryInstances(steps[Math.min(p.step, steps.length - 1)]!.weight, svc.instances);
}

/** A rollout's verdict on one pass: fail it, or (record its progress and) look again in `recheckMs`. */
export type RolloutVerdict =
  | { fail: { reason: string; message: string } }
  | { progress?: RolloutProgress; recheckMs: number };

/**
 * Pure: whether a rollout fails now — its release cannot be placed on today's
 * nodes (`shortfall`), or it made no progress for its deadline — from the
 * release's live instances (`current`) and the time. Progress is new-release
 * instances placed plus those running; it must grow within the deadline.
 */
export function judgeRollout(
  svc: Service,
  current: readonly Instance[],
  now: number,
  defaultDeadlineMs: number,
  shortfall?: Shortfall,
): RolloutVerdict {
  if (shortfall)
    return { fail: { reason: "RolloutUnschedulable", message: `v${svc.release}: ${shortfall.message}` } };
  const best = current.filter((i) => i.node).length + current.filter((i) => i.state === "running").length;
  const deadlineMs = svc.rollout?.deadlineMs ?? serviceDeadlineMs(svc.spec, defaultDeadlineMs);
  if (!svc.rollout || best > svc.rollout.best) {
    // Its other figures (the new release's crashes, service-heal.ts) stay.
    return {
      progress: { ...svc.rollout, deadlineMs, best, since: new Date(now).toISOString() },
      recheckMs: deadlineMs,
    };
  }
  const since = Date.parse(svc.rollout.since);
  if (now - since < deadlineMs) return { recheckMs: since + deadlineMs - now };
  return {
    fail: {
      reason: "ProgressDeadlineExceeded",
      message: `v${svc.release} made no progress for ${formatDeadline(deadlineMs)} (its rollout deadline): ${progressSummary(current, svc.instances)}`,
    },
  };
}

/** "3 of 12 instances running, 2 starting, 7 pending (1 node: 1 insufficient cpu)" */
export function progressSummary(current: readonly Instance[], want: number): string {
  const count = (states: InstanceState[]) => current.filter((i) => states.includes(i.state)).length;
  const running = count(["running"]);
  const parts = [`${running} of ${want} instance${want === 1 ? "" : "s"} running`];
  const starting = count(["provisioning", "ready"]);
  if (starting > 0) parts.push(`${starting} starting`);
  const crashed = count(["crashed"]);
  if (crashed > 0) parts.push(`${crashed} crashed`);
  const pending = current.filter((i) => i.state === "pending");
  if (pending.length > 0) {
    const why = pending.find((i) => i.message)?.message;
    parts.push(`${pending.length} pending${why ? ` (${why})` : ""}`);
  }
  return parts.join(", ");
}

export function finish(requeue: number): ReconcileResult {
  return Number.isFinite(requeue) ? { requeueAfterMs: requeue } : {};
}

/** Which instances to stop first when scaling down: not running before running, newest first. */
export function byRetirePreference(a: Instance, b: Instance): number {
  const ra = a.state === "running" ? 1 : 0;
  const rb = b.state === "running" ? 1 : 0;
  if (ra !== rb) return ra - rb;
  return b.createdAt.localeCompare(a.createdAt);
}

/** Pets leave from the highest ordinal down, as a StatefulSet's do. */
export function byOrdinalDescending(a: Instance, b: Instance): number {
  return ordinal(b.id) - ordinal(a.id);
}

const ordinal = (id: string): number => Number(/-(\d+)$/.exec(id)?.[1] ?? 0);

/**
 * Pets have stable, ordinal ids: `<app>-<service>-0`, `-1`, … in the
 * default tenant, `<tenant>.<app>-<service>-0` in any other. Instance ids
 * are the store's keys and name a pet's data directory on its node
 * (`volumes/<id>`), so two tenants' pets of the same app and service name
 * must not share one (a name holds no dot, so no two tenants' ids meet).
 */
export function nextPetId(svc: Service, taken: Set<string>): string {
  const prefix = svc.tenant === "default" ? "" : `${svc.tenant}.`;
  for (let n = 0; ; n++) {
    const id = `${prefix}${svc.app}-${svc.name}-${n}`;
    if (!taken.has(id)) return id;
  }
}

/** Waits for every write; then throws the first failure, if any (no write is left running). */
export async function allWritten(writes: Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(writes)).find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}
