/**
 * The service controller: one level-based `reconcile(serviceKey)` that moves a
 * service's instances toward its desired state — count, release, health.
 *
 *   desired (Service: release, spec, instances)   actual (Instance objects, as agents report them)
 *                    └──────────── compare ───────────┘
 *                                   │
 *   clean up → heal (replace cattle / restart pets, with backoff) → scale → roll out → place → state
 *              │                                                    └──┬───────────┘
 *              planHeal (service-heal.ts, pure):                       planRollout (service-rollout.ts, pure):
 *              service + instances + time → a plan                     service + current and old instances +
 *              (the service's crash count, each                        what it depends on that is down + time
 *              instance's action, events, requeues)                    → a plan (how many to create, what
 *                                                                      retires in which order, the pet to
 *                                                                      update, the wait for dependencies,
 *                                                                      requeues)
 *
 * Heal, scale and roll out are planned, then applied: each decision is a pure function, its writes
 * are reconcile's (the project's "reconcile = plan, then apply"; clean up, place and the rollout's
 * verdict still decide as they write, the verdict by judgeRollout's rules).
 *
 * It remembers nothing between calls: everything it needs is in the store, so
 * it is safe to run twice and a restarted server picks up where it was.
 */

import { newId } from "../common/ids.ts";
import {
  type Instance,
  type InstanceState,
  type Node,
  type Release,
  releaseKey,
  restartDue,
  type Service,
} from "../model/objects.ts";
import { qosClass } from "../model/qos.ts";
import type { ClusterState } from "../scheduler/cluster-state.ts";
import { Scheduler } from "../scheduler/scheduler.ts";
import type { StoredObject } from "../store/store.ts";
import { dataOn, placementRequest, serviceShortfall } from "./capacity-check.ts";
import { ClusterView } from "./cluster-view.ts";
import type { Context } from "./context.ts";
import { dependenciesDown, dependencyWait } from "./dependencies.ts";
import type { EventInput } from "./events.ts";
import { imageUserOf } from "./image-user.ts";
import { planHeal } from "./service-heal.ts";
import { planRollout, scaleTarget } from "./service-rollout.ts";
import {
  allWritten,
  finish,
  holdsOldRelease,
  judgeRollout,
  newReleaseCount,
  nextPetId,
} from "./service-rules.ts";

/** Result of one reconcile: when to look again (ms), if a timer matters. */
export interface ReconcileResult {
  requeueAfterMs?: number;
}

/** How often a waiting instance's changed "cannot be placed" message is written again. */
const UNSCHEDULABLE_REWRITE_MS = 30_000;

/** States in which an instance still counts toward its service's desired count. */
const ALIVE: ReadonlySet<InstanceState> = new Set([
  "pending",
  "provisioning",
  "ready",
  "running",
  "crashed",
  "lost",
]);

export class ServiceController {
  readonly #ctx: Context;
  /** Where the scheduler's next sampled scan of the nodes starts. */
  #cursor = 0;
  /** When each waiting instance's "cannot be placed" message was last written (a rate limit, not state). */
  readonly #unschedulableAt = new Map<string, number>();

  /** What the scheduler places on: kept up to date from the informer, not rebuilt per pass. */
  readonly #view: ClusterView;

  constructor(ctx: Context) {
    this.#ctx = ctx;
    this.#view = new ClusterView(ctx.informer);
  }

  /** The scheduler's kept view of the cluster, with its placements so far: for reading only (capacity checks). */
  clusterState(): ClusterState {
    return this.#view.state();
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { store, clock, informer } = this.#ctx;
    const now = clock.now();
    const [tenant, app, service] = key.split("/");
    // Reads come from the informer, synced (as fresh as a list now, own earlier writes included);
    // writes go to the store with the revision read, so a moment-old read only costs a conflict.
    await informer.sync();
    const svcObj = informer.get<Service>("service", key);
    const mine = informer.by<Instance>("instance", "service", key);
    // Nodes one at a time from the informer: a reconcile costs what its service holds, not the cluster's size.
    const nodeOf = (name: string) => informer.get<Node>("node", name)?.value;
    let requeue = Number.POSITIVE_INFINITY;
    const later = (ms: number) => {
      requeue = Math.min(requeue, Math.max(50, ms));
    };

    // 1. Clean up instances that were told to stop and are gone (or can never report).
    for (const o of mine) {
      const i = o.value;
      if (i.desired !== "stopped") continue;
      const unreachable = !i.node || nodeOf(i.node)?.state !== "ready";
      if (i.state === "stopped" || i.state === "pending" || unreachable) {
        await store.delete("instance", o.key, { expectRevision: o.revision });
      } else if (i.drainUntil) {
        later(Date.parse(i.drainUntil) - now + 100);
      }
    }

    if (!svcObj) {
      // The service is gone (app destroyed, or dropped from herd.yaml): stop what is left.
      for (const o of mine)
        if (o.value.desired === "running")
          await this.#retire(o, "ServiceRemoved", "its service was removed", 0);
      return finish(requeue);
    }
    let svc = svcObj.value;
    let svcRevision = svcObj.revision;
    const saveService = async (next: Service) => {
      const saved = await store.put("service", key, next, { expectRevision: svcRevision });
      svcRevision = saved.revision;
      svc = next;
    };

    let active = mine.filter((o) => o.value.desired === "running");
    const rollingOut = svc.state === "updating" || svc.state === "rolling_back";

    // 2. Heal: instances that crashed, never became healthy, or whose node is lost. Decided by the pure
    //    planHeal (service-heal.ts), applied here in its order, each step as it was written before: the
    //    service write that counts an instance's crash, then the event about the service, then the
    //    instance's own write. The service is still written once per counted crash, not once up front
    //    for the lot (the same final content): an instance write that fails (a conflict) then leaves
    //    counted only the crashes up to it, not those of later instances the next pass counts again.
    const heal = planHeal(
      svc,
      active.map((o) => o.value),
      now,
      this.#ctx.settings,
    );
    // `later` keeps the smallest delay, read only once the pass ends: when it is called does not matter.
    for (const ms of heal.requeueMs) later(ms);
    // One step per active instance, in their order; nothing reads the service between its writes.
    for (const [n, step] of heal.steps.entries()) {
      const o = active[n]!;
      if (step.service) await saveService({ ...svc, ...step.service });
      if (step.record) await this.#ctx.events.record(step.record);
      const a = step.action;
      if (a.kind === "move" || a.kind === "backoff") await this.#transition(o, a.patch, a.event);
      else if (a.kind === "restart") await this.#restartPet(o);
      else if (a.kind === "retire") await this.#retire(o, a.reason, a.message, 0, a.state);
    }

    // Re-read what is still active after healing: placement must see the share of a crashed or
    // retired instance freed, or its replacement is refused room that is there.
    await informer.sync();
    const fresh = informer.by<Instance>("instance", "service", key);
    active = fresh.filter((o) => o.value.desired === "running" && ALIVE.has(o.value.state));
    const pets = svc.spec.mode === "pet";
    // Instances `herd restart` asked to restart.
    const due = (i: Instance) => restartDue(i, svc.restartedAt);
    // Cattle leaving a node (drained, or moved by an operator) or restarted are replaced first and
    // retired after, like a rollout.
    const leaving = (i: Instance) =>
      !pets && (i.moving !== undefined || (i.node !== null && nodeOf(i.node)?.draining === true) || due(i));
    // What stays as it is; the rest is replaced (cattle) or updated or restarted in place (pets).
    const stays = (i: Instance) => i.release === svc.release && !leaving(i) && !(pets && due(i));
    const current = active.filter((o) => stays(o.value));
    // Nodes an operator is moving instances of this service off: their replacements go elsewhere.
    const movingOff = active.flatMap((o) => (o.value.moving && o.value.node ? [o.value.node] : []));
    const old = active.filter((o) => !stays(o.value));

    // dependsOn: a rollout starts its new release only once what it depends on runs.
    if (rollingOut && svc.state !== "failed") {
      const waiting = await dependencyWait(store, svc);
      const note = waiting ? `waiting for ${waiting.join(", ")} (dependsOn)` : undefined;
      if (note) {
        if (svc.message !== note) {
          await saveService({ ...svc, message: note });
          await this.#ctx.events.record({
            tenant,
            app,
            service,
            deploy: svc.deploy,
            reason: "WaitingForDependencies",
            message: `${service}: v${svc.release} ${note}`,
          });
        }
        return finish(Math.min(requeue, 250));
      }
      if (svc.message.endsWith("(dependsOn)") && svc.rollout) {
        // The progress deadline counts from now, not from the deploy.
        await saveService({
          ...svc,
          message: `rolling out v${svc.release}`,
          rollout: { ...svc.rollout, best: 0, since: new Date(now).toISOString() },
        });
        await this.#ctx.events.record({
          tenant,
          app,
          service,
          deploy: svc.deploy,
          reason: "DependenciesReady",
          message: `${service}: its dependencies run; rolling out v${svc.release}`,
        });
      }
    }

    // 3–4. Scale (create or retire instances) and roll out (retire old-release instances as new ones
    //    take traffic, update pets in place). Decided by the pure planRollout (service-rollout.ts),
    //    applied here in its order, each write as before: the service's message and its event while a
    //    dependency is down, the new instances, the retirements, the pet's update. Replacements
    //    outside a rollout (a lost node's, a crash's, a scale-up) wait until what the service depends
    //    on runs again (failover follows dependsOn): asked only when instances are missing.
    const failed = svc.state === "failed"; // step 6 reads these two as well
    const holding = holdsOldRelease(svc);
    const values = (list: StoredObject<Instance>[]) => list.map((o) => o.value);
    const seen = { service: svc, active: values(active), current: values(current), old: values(old) };
    const { counted, want } = scaleTarget(svc, seen.active, seen.current);
    const down =
      counted.length < want && !rollingOut
        ? await dependenciesDown(store, svc, (service) =>
            informer.by<Instance>("instance", "service", service).map((o) => o.value),
          )
        : undefined;
    const leavingIds = new Set(seen.old.filter(leaving).map((i) => i.id));
    const plan = planRollout({ ...seen, leaving: leavingIds, movingOff, down }, now, this.#ctx.settings);
    for (const ms of plan.requeueMs) later(ms);
    if (plan.wait) {
      await saveService({ ...svc, message: plan.wait.message });
      await this.#ctx.events.record(plan.wait.record);
    }
    if (plan.create) await this.#create(svc, plan.create.count, fresh, plan.create.avoid);
    const byId = new Map(active.map((o) => [o.value.id, o]));
    for (const r of plan.retire) await this.#retire(byId.get(r.instance)!, r.reason, r.message, r.drainMs);
    if (plan.updatePet) await this.#updatePet(svc, byId.get(plan.updatePet)!);

    // 5. Place pending instances (capacity may have appeared).
    // Not one the plan just retired (its copy here is stale: placing it would conflict).
    const gone = new Set(plan.retire.map((r) => r.instance));
    const pending = current.filter(
      (o) => o.value.state === "pending" && !o.value.node && !gone.has(o.value.id),
    );
    if (pending.length > 0) {
      await informer.sync();
      await this.#place(svc, pending, movingOff);
      later(2000);
    }

    // 6. A rollout that cannot be placed on today's nodes fails now; one that stops making progress
    //    fails at its deadline. Either way the deploy controller points the service back at the old release.
    await informer.sync();
    const after = informer
      .by<Instance>("instance", "service", key)
      .filter((o) => o.value.desired === "running" && ALIVE.has(o.value.state));
    if (!failed && (svc.state === "updating" || svc.state === "rolling_back")) {
      const current = after.map((o) => o.value).filter((i) => i.release === svc.release);
      // With no node at all (a control plane whose agents have not checked in yet), or a machine
      // provider that can bring more, wait for the deadline.
      const short =
        informer.count("node") > 0 &&
        !this.#ctx.settings.machineProvider &&
        current.some((i) => i.state === "pending" && !i.node)
          ? serviceShortfall(
              svc,
              svc.instances,
              informer.list<Node>("node").map((o) => o.value),
              informer.list<Instance>("instance").map((o) => o.value),
              new Map(informer.list<Service>("service").map((o) => [o.key, o.value])),
            )
          : undefined;
      const verdict = judgeRollout(svc, current, now, this.#ctx.settings.rolloutDeadlineMs, short);
      // A canary step or blue/green preview whose instances all run waits for the rollout controller, not a deadline.
      const waitsForRollout =
        holding && current.filter((i) => i.state === "running").length >= newReleaseCount(svc);
      if (waitsForRollout) {
        // Nothing to judge.
      } else if ("fail" in verdict) {
        await saveService({ ...svc, state: "failed", message: verdict.fail.message });
        await this.#ctx.events.record({
          tenant,
          app,
          service,
          deploy: svc.deploy,
          reason: verdict.fail.reason,
          type: "warning",
          message: `${service}: ${verdict.fail.message}; rollout stopped`,
        });
      } else {
        if (verdict.progress) await saveService({ ...svc, rollout: verdict.progress });
        later(verdict.recheckMs);
      }
    }

    // 7. The service's state: back to running once desired == actual.
    const settled =
      after.length === svc.instances &&
      after.every((o) => o.value.release === svc.release && o.value.state === "running");
    if (
      svc.state !== "failed" &&
      svc.state !== "destroying" &&
      settled &&
      (svc.state !== "running" || svc.crashes > 0 || svc.message)
    ) {
      await saveService({
        ...svc,
        state: "running",
        crashes: 0,
        unhealthy: 0,
        backoffUntil: undefined,
        message: "",
      });
    }
    if (!settled) later(5000);
    return finish(requeue);
  }

  /**
   * Creates `count` new instances of the service's release, placed: each is
   * written once, already on its node (or pending, saying why none fits).
   */
  async #create(svc: Service, count: number, mine: StoredObject<Instance>[], avoid: string[]): Promise<void> {
    const now = new Date(this.#ctx.clock.now()).toISOString();
    const fresh: StoredObject<Instance>[] = [];
    const taken = new Set(mine.map((o) => o.value.id));
    const run = await this.#runSpec(svc);
    for (let n = 0; n < count; n++) {
      const id = svc.spec.mode === "pet" ? nextPetId(svc, taken) : `${svc.app}-${svc.name}-${newId(6)}`;
      taken.add(id);
      const instance: Instance = {
        id,
        tenant: svc.tenant,
        app: svc.app,
        service: svc.name,
        release: svc.release,
        mode: svc.spec.mode,
        node: null,
        desired: "running",
        generation: 1,
        state: "pending",
        reason: "Created",
        message: "",
        run,
        restarts: 0,
        createdAt: now,
      };
      // Not stored yet: revision 0, so the placement's write creates it (and only if it does not exist).
      fresh.push({ kind: "instance", key: id, revision: 0, createRevision: 0, value: instance });
    }
    await this.#place(svc, fresh, avoid);
  }

  /**
   * Assigns nodes to pending instances, or records why none fits. An instance
   * that fits nowhere may preempt less critical ones (an event says which).
   */
  async #place(svc: Service, pending: StoredObject<Instance>[], avoid: string[] = []): Promise<void> {
    const scheduler = new Scheduler(this.#view.state(), this.#cursor);
    // Where pets made again find their data (their volumes, as the nodes' agents report them).
    const nodes = svc.spec.mode === "pet" ? this.#ctx.informer.list<Node>("node").map((o) => o.value) : [];
    // Largest first: a batch packs better, and big instances do not wait behind small ones.
    const queue = [...pending].sort((a, b) => b.value.run.resources.memory - a.value.run.resources.memory);
    // The placements are decided here, one after the other; their writes go out together
    // (one store transaction for the lot: store/sqlite-store.ts group commit).
    const writes: Promise<void>[] = [];
    const events: EventInput[] = [];
    for (const o of queue) {
      const i = o.value;
      const placement = scheduler.place(
        {
          ...placementRequest(svc, {
            ...i,
            resources: i.run.resources,
            ...dataOn(nodes, i),
          }),
          slug: i.run.slug,
          ...(avoid.length > 0 ? { avoid } : {}),
        },
        { preempt: true },
      );
      if (placement.node !== null) {
        this.#unschedulableAt.delete(i.id);
        for (const victim of placement.preempted) {
          const v = this.#ctx.informer.get<Instance>("instance", victim.id);
          if (v === undefined) continue;
          await this.#retire(
            v,
            "Preempted",
            `${victim.id} (${qosClass(victim.resources)}, ${victim.criticality}) preempted on ${placement.node} ` +
              `to make room for ${i.id} (${qosClass(i.run.resources)}, ${svc.spec.criticality ?? "normal"})`,
            0,
          );
        }
        writes.push(
          this.#write(
            events,
            o,
            {
              node: placement.node,
              state: "provisioning",
              reason: "Scheduled",
              message: "",
              startedAt: this.#nowIso(),
              moving: undefined,
            },
            { reason: "Scheduled", message: `${i.id} (v${i.release}) placed on ${placement.node}` },
          ).catch((err: unknown) => {
            // Not placed after all (another writer came first): the view forgets this placement.
            this.#view.refresh(i.id);
            throw err;
          }),
        );
      } else if ((o.revision === 0 || i.message !== placement.message) && this.#mayRewrite(i)) {
        writes.push(
          this.#write(
            events,
            o,
            { reason: "Unschedulable", message: placement.message },
            {
              reason: "FailedScheduling",
              type: "warning",
              message: `${i.id} cannot be placed: ${placement.message}`,
            },
          ),
        );
      }
    }
    this.#cursor = scheduler.cursor;
    try {
      await allWritten(writes);
    } finally {
      // The written ones' events, one per service and reason (EventRecorder.recordAll).
      await this.#ctx.events.recordAll(events);
    }
  }

  /**
   * Whether a waiting instance's "cannot be placed" message may be rewritten now:
   * the first time, then at most every UNSCHEDULABLE_REWRITE_MS. The message
   * follows the nodes' states, and rewriting hundreds of waiting instances (and
   * an event each) whenever a node misses a heartbeat is a write storm that
   * starves the API and the heartbeats (issue 13).
   */
  #mayRewrite(i: Instance): boolean {
    const now = this.#ctx.clock.now();
    if (i.reason === "Unschedulable") {
      const last = this.#unschedulableAt.get(i.id);
      if (last !== undefined && now - last < UNSCHEDULABLE_REWRITE_MS) return false;
    }
    if (this.#unschedulableAt.size > 100_000) this.#unschedulableAt.clear();
    this.#unschedulableAt.set(i.id, now);
    return true;
  }

  /** Tells an instance to stop: out of the gateway now, process stopped after `drainMs`. */
  async #retire(
    o: StoredObject<Instance>,
    reason: string,
    message: string,
    drainMs: number,
    state?: InstanceState,
  ): Promise<void> {
    const i = o.value;
    const draining = i.state === "running" || i.state === "ready" ? "draining" : i.state;
    const routine = reason === "ScaledDown" || reason === "Superseded" || reason === "ServiceRemoved";
    await this.#transition(
      o,
      {
        desired: "stopped",
        drainUntil: new Date(this.#ctx.clock.now() + drainMs).toISOString(),
        state: state ?? draining,
        reason,
        message,
      },
      { reason, message, type: routine ? "normal" : "warning" },
    );
  }

  /** Restarts a crashed pet in place: same id, node and data; a new generation. */
  async #restartPet(o: StoredObject<Instance>): Promise<void> {
    const i = o.value;
    await this.#transition(
      o,
      {
        generation: i.generation + 1,
        restartAt: undefined,
        restarts: i.restarts + 1,
        state: "provisioning",
        reason: "Restarting",
        message: "",
        startedAt: this.#nowIso(),
      },
      { reason: "Restarting", message: `restarting pet ${i.id} in place (restart ${i.restarts + 1})` },
    );
  }

  /** Updates (or restarts, herd restart) a pet in place: same id, node and data (planRollout picks it, one at a time). */
  async #updatePet(svc: Service, o: StoredObject<Instance>): Promise<void> {
    const i = o.value;
    const restart = i.release === svc.release;
    await this.#transition(
      o,
      {
        release: svc.release,
        run: await this.#runSpec(svc),
        generation: i.generation + 1,
        state: "provisioning",
        reason: restart ? "Restarting" : "Updating",
        message: "",
        startedAt: this.#nowIso(),
      },
      restart
        ? { reason: "Restarting", message: `restarting pet ${i.id} in place (herd restart)` }
        : {
            reason: "Updating",
            message: `updating pet ${i.id} in place from v${i.release} to v${svc.release}`,
          },
    );
  }

  /** Writes a change to an instance; once written, adds the Event that says why to `events`. */
  async #write(
    events: EventInput[],
    o: StoredObject<Instance>,
    patch: Partial<Instance>,
    event: Pick<EventInput, "reason" | "message" | "type" | "details">,
  ): Promise<void> {
    const i = o.value;
    await this.#ctx.store.put("instance", o.key, { ...i, ...patch }, { expectRevision: o.revision });
    events.push({
      tenant: i.tenant,
      app: i.app,
      service: i.service,
      instance: i.id,
      node: (patch.node ?? i.node) || undefined,
      ...event,
    });
  }

  /** Writes a change to an instance and the Event that says why (every transition is one). */
  async #transition(
    o: StoredObject<Instance>,
    patch: Partial<Instance>,
    event: Pick<EventInput, "reason" | "message" | "type" | "details">,
  ): Promise<void> {
    const written: EventInput[] = [];
    await this.#write(written, o, patch, event);
    await this.#ctx.events.recordAll(written);
  }

  #nowIso(): string {
    return new Date(this.#ctx.clock.now()).toISOString();
  }

  async #runSpec(svc: Service): Promise<Instance["run"]> {
    const release = await this.#ctx.store.get<Release>(
      "release",
      releaseKey(svc.tenant, svc.app, svc.release),
    );
    if (!release) throw new Error(`release v${svc.release} of ${svc.app} is missing`);
    // Secrets by name and the version the release pinned: the values reach only the agent.
    const pins = Object.entries(svc.spec.secrets ?? {}).map(([variable, secret]) => [
      variable,
      { secret, version: release.value.secrets?.[secret] ?? 0 },
    ]);
    return {
      slug: release.value.slug,
      command: svc.spec.command,
      ...(svc.spec.image ? { image: svc.spec.image } : {}),
      ...(svc.spec.runtime ? { runtime: svc.spec.runtime } : {}),
      ...(await imageUserOf(this.#ctx.store, svc.tenant, svc.spec)),
      env: svc.spec.env,
      ...(pins.length > 0 ? { secrets: Object.fromEntries(pins) } : {}),
      resources: svc.spec.resources,
      health: svc.spec.health,
      ...(svc.spec.criticality && svc.spec.criticality !== "normal"
        ? { criticality: svc.spec.criticality }
        : {}),
    };
  }
}
