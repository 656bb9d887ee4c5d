/**
 * Pure: the scale and roll-out steps of the service controller's reconcile
 * (service-controller.ts, steps 3 and 4) as a plan. From the service, its
 * active instances (desired running, alive, after heal) sorted into current
 * (stay as they are) and old (replaced, or updated in place), the services it
 * depends on that are down and the time: what to create, what to retire, in
 * which order, and the pet to update; reconcile applies the plan with its writes.
 *
 *   scale: counted (cattle: the current ones; pets: all, updated in place) vs want (the count;
 *          a failed service: no more than it has placed; canary, blue/green: the new release's share)
 *     a failed service ─► those still waiting for a node retired (ServiceFailed): never placed later
 *     fewer, a dependency down (outside a rollout) ─► wait: the service's message and an event
 *                                                      (when the message changes), look again
 *     fewer, backoffUntil ahead ─► look again then │ else create the difference (not on nodes moved off)
 *     more ─► retire the surplus (ScaledDown, drained): pets from the highest ordinal, cattle
 *             not running first, then the newest
 *   roll out (not a failed service):
 *     canary, blue/green ─► old ones of another release than the baseline retired (Superseded, drained);
 *                           the baseline's kept, and those leaving a node
 *     pets ─► the first old pet not just scaled away updated (or restarted) in place, once every current one runs
 *     cattle ─► old ones not running: retired at once
 *               running old ones past want: the oldest retired (drained)
 *               then, down to minAvailable: the oldest leaving ones (drained, moved, restarted),
 *               and an old one for each current one waiting for a node (the room the old ones hold)
 *
 * A retirement's reason: Superseded (an old release), Moved (an operator's move, a drained
 * node), Restarted (`herd restart`), ScaledDown (the scale's surplus), ServiceFailed (not
 * placed when its service failed: a failed deploy, a crash loop, starts nothing more).
 */

import { type Instance, restartDue, type Service } from "../model/objects.ts";
import type { Settings } from "./context.ts";
import type { EventInput } from "./events.ts";
import {
  byOrdinalDescending,
  byRetirePreference,
  holdsOldRelease,
  newReleaseCount,
} from "./service-rules.ts";

/** What the scale and roll-out steps read. */
export interface RolloutInput {
  service: Service;
  /** The service's instances desired running and alive, after heal. */
  active: readonly Instance[];
  /** Of them, those that stay as they are: the service's release, not leaving, no pet due a restart. */
  current: readonly Instance[];
  /** The rest: replaced (cattle) or updated or restarted in place (pets). */
  old: readonly Instance[];
  /** Ids of the old cattle leaving: on a draining node, moved by an operator, or due a `herd restart`. */
  leaving: ReadonlySet<string>;
  /** Nodes an operator is moving the service's instances off: new instances go elsewhere. */
  movingOff: string[];
  /**
   * The services it depends on that are down (dependenciesDown), asked by the caller only when
   * `scaleTarget` says instances are missing outside a rollout; undefined when none is.
   */
  down: readonly string[] | undefined;
}

export type RetireReason = "ScaledDown" | "Superseded" | "Moved" | "Restarted" | "ServiceFailed";

/** One instance told to stop: out of the gateway now, stopped after `drainMs`. */
export interface Retirement {
  instance: string;
  reason: RetireReason;
  message: string;
  drainMs: number;
}

export interface RolloutPlan {
  /** Waiting for dependencies to run again: the service's new message, then its event (only when the message changes). */
  wait?: { message: string; record: EventInput };
  /** New instances of the service's release to create and place, away from `avoid`. */
  create?: { count: number; avoid: string[] };
  /** Instances to retire, in this order: the scale's surplus, then the rollout's. */
  retire: Retirement[];
  /** The pet to update (or restart) in place, after the retirements. */
  updatePet?: string;
  /** Look again after each of these (ms; the caller's `later`, which keeps the smallest). */
  requeueMs: number[];
}

/** Settings the plan reads. */
export type RolloutSettings = Pick<Settings, "drainMs">;

/**
 * The instances that count toward the service's count (cattle: the current ones; pets: all; a
 * failed service: those placed), and how many it wants.
 */
export function scaleTarget(
  svc: Service,
  active: readonly Instance[],
  current: readonly Instance[],
): { counted: readonly Instance[]; want: number } {
  const all = svc.spec.mode === "pet" ? active : current;
  if (svc.state === "failed") {
    const placed = all.filter((i) => i.node);
    return { counted: placed, want: Math.min(svc.instances, placed.length) };
  }
  return { counted: all, want: holdsOldRelease(svc) ? newReleaseCount(svc) : svc.instances };
}

/** Pure: the scale and roll-out plan for `input` at `now` (ms). */
export function planRollout(input: RolloutInput, now: number, settings: RolloutSettings): RolloutPlan {
  const plan: RolloutPlan = { retire: [], requeueMs: [] };
  const want = scale(plan, input, now, settings.drainMs);
  // A failed rollout leaves the old instances alone: the deploy controller points the service back at them.
  if (input.service.state !== "failed") rollOut(plan, input, want, settings.drainMs);
  return plan;
}

/** Step 3 into `plan`: wait for dependencies, create the missing instances, or retire the surplus; returns want. */
function scale(plan: RolloutPlan, input: RolloutInput, now: number, drainMs: number): number {
  const svc = input.service;
  const { counted, want } = scaleTarget(svc, input.active, input.current);
  if (svc.state === "failed") {
    // Nothing more starts: one still waiting for a node would otherwise run once room appears.
    for (const i of svc.spec.mode === "pet" ? input.active : input.current) {
      if (i.node) continue;
      const message = `${i.id} stopped before it was placed: ${svc.name} has failed`;
      plan.retire.push({ instance: i.id, reason: "ServiceFailed", message, drainMs: 0 });
    }
  }
  const missing = want - counted.length;
  if (input.down) {
    const note = `waiting for ${input.down.join(", ")} to run again (dependsOn)`;
    if (svc.message !== note) plan.wait = { message: note, record: waitRecord(svc, missing, note) };
    plan.requeueMs.push(250);
  } else if (missing > 0) {
    const wait = svc.backoffUntil ? Date.parse(svc.backoffUntil) - now : 0;
    if (wait > 0) plan.requeueMs.push(wait);
    else plan.create = { count: missing, avoid: input.movingOff };
  } else if (missing < 0) {
    const order = svc.spec.mode === "pet" ? byOrdinalDescending : byRetirePreference;
    for (const i of [...counted].sort(order).slice(0, -missing)) {
      const message = `${i.id} stopped: scaled to ${want}`;
      plan.retire.push({ instance: i.id, reason: "ScaledDown", message, drainMs });
    }
  }
  return want;
}

/** Step 4 into `plan`: keep the baseline (canary, blue/green), update a pet in place, or replace old cattle. */
function rollOut(plan: RolloutPlan, input: RolloutInput, want: number, drainMs: number): void {
  if (holdsOldRelease(input.service)) plan.retire.push(...supersededBeside(input, drainMs));
  else if (input.service.spec.mode !== "pet") plan.retire.push(...replacedCattle(input, want, drainMs));
  else {
    const pet = petToUpdate(input, new Set(plan.retire.map((r) => r.instance)));
    if (pet) plan.updatePet = pet;
  }
}

function waitRecord(svc: Service, missing: number, note: string): EventInput {
  return {
    tenant: svc.tenant,
    app: svc.app,
    service: svc.name,
    reason: "WaitingForDependencies",
    message: `${svc.name}: ${missing} instance(s) to start; ${note}`,
  };
}

/**
 * A canary or blue/green rollout keeps the baseline's instances; any other old release's go (a deploy
 * that superseded a rollout in flight), except those leaving a node (the rollout replaces them later).
 */
function supersededBeside(input: RolloutInput, drainMs: number): Retirement[] {
  const svc = input.service;
  return input.old
    .filter((i) => i.release !== svc.progressive?.baseline && !input.leaving.has(i.id))
    .map((i) => ({ instance: i.id, ...superseded(svc, i), drainMs }));
}

/**
 * Pets are updated in place one at a time: an updated pet joins `current` and must run again before
 * the next goes. Not one the scale step retires (its update would write over the retirement).
 */
function petToUpdate(input: RolloutInput, retired: ReadonlySet<string>): string | undefined {
  if (input.current.some((i) => i.state !== "running")) return undefined;
  return input.old.find((i) => !retired.has(i.id))?.id;
}

/**
 * Old cattle retire as new ones take traffic, never going below `want` running: those not running at
 * once, the running ones past `want`, then — within the disruption budget (minAvailable) — leaving ones
 * before their replacements run (no room for them, say), and an old one for each new one waiting for a
 * node (the room the old ones hold).
 */
function replacedCattle(input: RolloutInput, want: number, drainMs: number): Retirement[] {
  const { service: svc, current, old, leaving } = input;
  const retire = (i: Instance, ms: number): Retirement => ({ instance: i.id, ...why(svc, i), drainMs: ms });
  const notRunning = old.filter((i) => i.state !== "running").map((i) => retire(i, 0));
  const runningCurrent = current.filter((i) => i.state === "running").length;
  const oldest = old
    .filter((i) => i.state === "running")
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  const surplus = Math.max(0, Math.min(oldest.length, runningCurrent + oldest.length - want));
  const minAvailable = Math.min(want, svc.spec.minAvailable ?? want);
  const room = Math.max(0, runningCurrent + oldest.length - surplus - minAvailable);
  const waiting = current.filter((i) => i.state === "pending" && !i.node).length;
  const rest = oldest.slice(surplus);
  const moved = rest.filter((i) => leaving.has(i.id)).slice(0, room);
  const superseded = rest.filter((i) => !leaving.has(i.id)).slice(0, Math.min(waiting, room - moved.length));
  const early = [...oldest.slice(0, surplus), ...moved, ...superseded];
  return [...notRunning, ...early.map((i) => retire(i, drainMs))];
}

/** Why an old instance is replaced: its release is superseded, it leaves its node, or `herd restart`. */
function why(svc: Service, i: Instance): Pick<Retirement, "reason" | "message"> {
  if (i.release !== svc.release) return superseded(svc, i);
  if (i.moving || !restartDue(i, svc.restartedAt))
    return { reason: "Moved", message: `${i.id} moved off ${i.node}` };
  return { reason: "Restarted", message: `${i.id} replaced by a new instance (herd restart)` };
}

function superseded(svc: Service, i: Instance): Pick<Retirement, "reason" | "message"> {
  return { reason: "Superseded", message: `${i.id} (v${i.release}) replaced by v${svc.release}` };
}
