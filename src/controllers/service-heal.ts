/**
 * Pure: the heal step of the service controller's reconcile (service-controller.ts,
 * step 2) as a plan. From the service, its active instances (desired running)
 * and the time, what happens to each instance and to the service's crash count;
 * reconcile applies the plan, in its order, with its writes.
 *
 *   pet an operator moves ─► move (off its node, pending, a new generation; its data stays)
 *   pet on a release the service no longer runs, or of a failed service ─► skip (the rollout updates it in place)
 *   lost ─► cattle retired (NodeLost) │ pet left (its node may come back)
 *   crashed, or not healthy within startupMs + 5 s:
 *     a pet waiting out its backoff ─► requeue at restartAt │ restart in place once it passed
 *     else a crash is counted on the service (crashes, unhealthy; a new release's in a rollout also on rollout.crashes), then
 *       rolling out, current release, rollout.crashes ≥ rolloutCrashLimit ─► service failed, RolloutFailed (cattle retired, a pet kept)
 *       crashes ≥ crashLoopLimit ─► service failed, CrashLoop (retired, failed)
 *       else backoffUntil on the service ─► pet: BackOff until restartAt │ cattle: retired (Replacing, failed)
 *
 * Instances are taken in the order given; each counted crash sees the ones
 * before it (the service's crashes, unhealthy, rollout and state accumulate:
 * once a step fails the rollout, the service no longer rolls out, and a
 * later crash in the same pass is counted as any crash, not failed again).
 */

import type { Instance, Service } from "../model/objects.ts";
import { backoffMs, type Settings } from "./context.ts";
import type { EventInput } from "./events.ts";

/** The service fields heal writes. */
export type HealedService = Pick<
  Service,
  "crashes" | "unhealthy" | "backoffUntil" | "state" | "message" | "rollout"
>;

/** An instance transition's event (the instance, its node and the service are added when it is written). */
export type TransitionEvent = Pick<EventInput, "reason" | "message" | "type" | "details">;

/** Why heal leaves an instance as it is. */
export type HealSkip =
  /** Nothing to heal: not crashed, not lost, not past its startup time. */
  | "ok"
  /** A pet on a release the service no longer runs, or of a failed service: the rollout step updates it in place. */
  | "pet-in-place"
  /** A pet on a lost node: it waits for its node (its data is there). */
  | "lost-pet"
  /** A pet waiting out its crash backoff (the plan requeues at its restartAt). */
  | "waiting"
  /** A pet whose release failed to roll out: it holds its data and goes back to the old release in place. */
  | "pet-kept";

/** What happens to one instance. */
export type HealAction =
  | { kind: "skip"; why: HealSkip }
  /** A pet an operator moves: this patch and event (a transition). */
  | { kind: "move"; patch: Partial<Instance>; event: TransitionEvent }
  /** A crashed pet waits until `patch.restartAt`, then restarts in place: this patch and event (a transition). */
  | { kind: "backoff"; patch: Partial<Instance>; event: TransitionEvent }
  /** A pet whose backoff is over restarts in place (same id, node and data; a new generation). */
  | { kind: "restart" }
  /** Told to stop at once (no drain), in `state` when given ("failed"), else as a retire leaves it. */
  | { kind: "retire"; reason: string; message: string; state?: "failed" };

/** One instance's step; applied in this order: the service write, the event, the instance's action. */
export interface HealStep {
  /** The instance's id. */
  instance: string;
  /** The service's fields this instance's crash changes (cumulative), written before anything else of the step. */
  service?: Partial<HealedService>;
  /** An event about the service (RolloutFailed, CrashLoop), recorded after the service write. */
  record?: EventInput;
  action: HealAction;
}

export interface HealPlan {
  /** One per instance, in the order given. */
  steps: HealStep[];
  /** The service as the steps leave it (the same object when no step writes it). */
  service: Service;
  /** Look again after each of these (ms; the caller's `later`, which keeps the smallest). */
  requeueMs: number[];
}

/** Settings heal reads. */
export type HealSettings = Pick<
  Settings,
  "rolloutCrashLimit" | "crashLoopLimit" | "backoffBaseMs" | "backoffMaxMs"
>;

/** Pure: the heal plan for `svc`'s active instances at `now` (ms). */
export function planHeal(
  svc: Service,
  active: readonly Instance[],
  now: number,
  settings: HealSettings,
): HealPlan {
  const steps: HealStep[] = [];
  const requeueMs: number[] = [];
  const { tenant, app, name: service } = svc;
  // The service as the steps so far leave it.
  let s = svc;
  for (const i of active) {
    const step = (action: HealAction, patch?: Partial<HealedService>, record?: EventInput) => {
      steps.push({
        instance: i.id,
        ...(patch ? { service: patch } : {}),
        ...(record ? { record } : {}),
        action,
      });
      if (patch) s = { ...s, ...patch };
    };
    if (i.mode === "pet" && i.moving && i.node) {
      // An operator moves a pet: it leaves its node (and the data there) and starts on the new one.
      step({
        kind: "move",
        patch: { node: null, state: "pending", generation: i.generation + 1, reason: "Moving", message: "" },
        event: {
          reason: "PetMoving",
          message: `pet ${i.id} moves off ${i.node}${i.moving.to ? ` to ${i.moving.to}` : ""}; its data stays on ${i.node}`,
        },
      });
      continue;
    }
    const current = i.release === s.release;
    // A pet left on a release the service no longer runs (its update failed and the service went
    // back), or of a service given up on: the rollout step updates it in place, never a new pet.
    if (i.mode === "pet" && (!current || s.state === "failed")) {
      step({ kind: "skip", why: "pet-in-place" });
      continue;
    }
    if (i.state === "lost") {
      if (i.mode === "cattle") {
        step({
          kind: "retire",
          reason: "NodeLost",
          message: `node ${i.node} is lost; replacing ${i.id} elsewhere`,
        });
      } else {
        step({ kind: "skip", why: "lost-pet" });
      }
      continue;
    }
    const startedLongAgo =
      (i.state === "provisioning" || i.state === "ready") &&
      now - Date.parse(i.startedAt ?? i.createdAt) > i.run.health.startupMs + 5000;
    if (i.state !== "crashed" && !startedLongAgo) {
      step({ kind: "skip", why: "ok" });
      continue;
    }
    if (i.restartAt) {
      // A pet already counted and waiting out its backoff.
      const wait = Date.parse(i.restartAt) - now;
      if (wait > 0) {
        requeueMs.push(wait);
        step({ kind: "skip", why: "waiting" });
      } else {
        step({ kind: "restart" });
      }
      continue;
    }
    const why =
      i.state === "crashed"
        ? i.message || "crashed"
        : `not healthy within ${Math.round(i.run.health.startupMs / 1000)}s of starting`;
    const crashes = s.crashes + 1;
    // How many of the crashes in a row were failed health checks (process up, never or no longer healthy).
    const unhealthy =
      (s.crashes > 0 ? (s.unhealthy ?? 0) : 0) + (i.state === "crashed" && i.reason !== "Unhealthy" ? 0 : 1);
    const backoffUntil = new Date(now + backoffMs(settings, crashes)).toISOString();
    // The rollout's own count: its new release's crashes (a record from before it was kept: all of them).
    const rollingOut = (s.state === "updating" || s.state === "rolling_back") && current;
    const rolloutCrashes = s.rollout ? (s.rollout.crashes ?? 0) + 1 : crashes;
    if (rollingOut && rolloutCrashes >= settings.rolloutCrashLimit) {
      const failed = {
        crashes,
        unhealthy,
        state: "failed" as const,
        message: `v${s.release} did not become healthy: ${why}`,
      };
      const record: EventInput = {
        tenant,
        app,
        service,
        instance: i.id,
        deploy: s.deploy,
        reason: "RolloutFailed",
        type: "warning",
        message: `${service}: v${s.release} instance ${i.id} ${why}; rollout stopped`,
        details: i.logTail,
      };
      // A pet holds its data: it stays, and goes back to the old release in place once the service does.
      if (i.mode === "pet") step({ kind: "skip", why: "pet-kept" }, failed, record);
      else
        step(
          { kind: "retire", reason: "RolloutFailed", message: "its release failed to roll out" },
          failed,
          record,
        );
      continue;
    }
    if (crashes >= settings.crashLoopLimit) {
      step(
        { kind: "retire", reason: "CrashLoop", message: "crash loop", state: "failed" },
        { crashes, unhealthy, state: "failed", message: `crash loop: ${why}` },
        {
          tenant,
          app,
          service,
          instance: i.id,
          reason: "CrashLoop",
          type: "warning",
          message: `${service}: ${crashes} crashes in a row, giving up (herd scale or a new deploy retries): ${why}`,
          details: i.logTail,
        },
      );
      continue;
    }
    const counted = {
      crashes,
      unhealthy,
      backoffUntil,
      ...(rollingOut && s.rollout ? { rollout: { ...s.rollout, crashes: rolloutCrashes } } : {}),
    };
    if (i.mode === "pet") {
      const inSeconds = Math.round((Date.parse(backoffUntil) - now) / 100) / 10;
      step(
        {
          kind: "backoff",
          patch: { state: "crashed", restartAt: backoffUntil, reason: "BackOff", message: why },
          event: {
            reason: "BackOff",
            type: "warning",
            message: `pet ${i.id} ${why}; restarting it in place in ${inSeconds}s`,
            details: i.logTail,
          },
        },
        counted,
      );
      requeueMs.push(Date.parse(backoffUntil) - now);
    } else {
      step(
        { kind: "retire", reason: "Replacing", message: `${i.id} ${why}; replacing it`, state: "failed" },
        counted,
      );
    }
  }
  return { steps, service: s, requeueMs };
}
