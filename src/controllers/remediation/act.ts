/**
 * Applies a plan's change through the paths people use: a rollback is the
 * deploy controller's (`herd rollback`), a scale-out `herd scale`'s, a replace
 * retires the instance as a scale-down does (drained, stopped; the service
 * controller starts a replacement), a restart bumps a pet's generation as the
 * service controller does for a crashed pet (same id, node and data), a cordon
 * `herd nodes cordon`'s; throttle and degrade are traffic overrides
 * (live-config, `PATCH …/traffic` with `concurrency` or `fallback: true`),
 * undone by `restoreThrottle` and `restoreDegrade`.
 */

import { patchTraffic, type TrafficOverride } from "../../model/live-config.ts";
import { type Instance, type Node, type Service, serviceKey } from "../../model/objects.ts";
import type { Degrade, Throttle } from "../../model/remediation.ts";
import { updateObject } from "../../store/store.ts";
import type { Context } from "../context.ts";
import type { Change, ThrottleChange } from "./plan.ts";

/** The changes the engine makes, as functions (tests pass their own; the server passes the real ones). */
export interface Actuators {
  rollback(tenant: string, app: string, version: number): Promise<unknown>;
  scale(tenant: string, app: string, service: string, count: number, why: string): Promise<void>;
}

/** What a change put in force, to be undone later: throttles, a service switched to its fallbacks. */
export interface Applied {
  throttles: Throttle[];
  degraded?: Degrade;
}

const NOTHING: Applied = { throttles: [] };

/** Applies `change`; returns what it put in force (to be restored later). */
export async function applyChange(
  ctx: Context,
  act: Actuators,
  tenant: string,
  app: string,
  change: Change,
  why: string,
): Promise<Applied> {
  switch (change.kind) {
    case "none":
      return NOTHING;
    case "rollback":
      await act.rollback(tenant, app, change.to);
      return NOTHING;
    case "scale-out": {
      const throttles = await throttle(ctx, tenant, app, change.throttle, change.service);
      await act.scale(tenant, app, change.service, change.to, why);
      return { throttles };
    }
    case "throttle":
      return { throttles: await throttle(ctx, tenant, app, change.throttle, "") };
    case "replace": {
      // Out of the gateway now, stopped after the drain; the service controller starts a replacement
      // wherever it fits (on one machine too: a move would wait for another node).
      const drainUntil = new Date(ctx.clock.now() + ctx.settings.drainMs).toISOString();
      const message = `replaced by the remediation engine: ${why}`;
      const retired = await updateInstance(ctx, change.instance, (i) => ({
        ...i,
        desired: "stopped",
        drainUntil,
        state: i.state === "running" || i.state === "ready" ? "draining" : i.state,
        reason: "Replaced",
        message,
      }));
      if (!retired) throw new Error(`instance ${change.instance} is no longer running`);
      await ctx.events.record({
        tenant,
        app,
        service: change.service,
        instance: change.instance,
        reason: "Replaced",
        type: "warning",
        message: `${change.instance} ${message}`,
      });
      return NOTHING;
    }
    case "restart": {
      // In place, as the service controller restarts a crashed pet: a new generation on the same node
      // with the same data; out of the gateway until its health check passes again.
      let generation = 0;
      const restarted = await updateInstance(ctx, change.instance, (i) => {
        generation = i.generation + 1;
        return {
          ...i,
          generation,
          restartAt: undefined,
          restarts: i.restarts + 1,
          state: "provisioning",
          reason: "Restarting",
          message: `restarted by the remediation engine: ${why}`,
          startedAt: new Date(ctx.clock.now()).toISOString(),
        };
      });
      if (!restarted) throw new Error(`instance ${change.instance} is no longer running`);
      await ctx.events.record({
        tenant,
        app,
        service: change.service,
        instance: change.instance,
        reason: "Restarting",
        type: "warning",
        message: `restarting pet ${change.instance} in place (generation ${generation}) for the remediation engine: ${why}`,
      });
      return NOTHING;
    }
    case "degrade": {
      await updateTraffic(ctx, tenant, app, change.service, (t) => patchTraffic(t, { fallback: true }));
      return {
        throttles: [],
        degraded: {
          service: change.service,
          dependencies: change.dependencies,
          since: new Date(ctx.clock.now()).toISOString(),
        },
      };
    }
    case "cordon": {
      const o = await ctx.store.get<Node>("node", change.node);
      if (!o) throw new Error(`node ${change.node} is gone`);
      if (o.value.schedulable) {
        await ctx.store.put(
          "node",
          change.node,
          { ...o.value, schedulable: false },
          { expectRevision: o.revision },
        );
        await ctx.events.record({
          node: change.node,
          reason: "NodeCordon",
          message: `node ${change.node} cordoned: nothing new is placed there (${why})`,
        });
      }
      return NOTHING;
    }
  }
}

async function throttle(
  ctx: Context,
  tenant: string,
  app: string,
  changes: ThrottleChange[],
  forService: string,
): Promise<Throttle[]> {
  const out: Throttle[] = [];
  const since = new Date(ctx.clock.now()).toISOString();
  for (const t of changes) {
    await updateTraffic(ctx, tenant, app, t.service, (cur) =>
      patchTraffic(cur, { concurrency: t.concurrency }),
    );
    out.push({
      service: t.service,
      for: forService,
      previous: t.previous === undefined ? {} : { concurrency: t.previous },
      since,
    });
  }
  return out;
}

/** Puts back the concurrency a throttle replaced (or removes the override when there was none). */
export async function restoreThrottle(ctx: Context, tenant: string, app: string, t: Throttle): Promise<void> {
  await updateTraffic(ctx, tenant, app, t.service, (cur) => {
    const next: TrafficOverride = { ...cur };
    if ("concurrency" in t.previous) next.concurrency = t.previous.concurrency ?? null;
    else delete next.concurrency;
    return next;
  });
}

/** Switches a degraded service's routes back from their fallbacks. */
export async function restoreDegrade(ctx: Context, tenant: string, app: string, d: Degrade): Promise<void> {
  await updateTraffic(ctx, tenant, app, d.service, (cur) => patchTraffic(cur, { fallback: null }));
}

async function updateTraffic(
  ctx: Context,
  tenant: string,
  app: string,
  service: string,
  change: (t: TrafficOverride | undefined) => TrafficOverride,
): Promise<void> {
  await updateObject<Service>(ctx.store, "service", serviceKey(tenant, app, service), (s) => {
    if (!s) return undefined;
    const traffic = change(s.value.traffic);
    const next: Service = { ...s.value };
    if (Object.keys(traffic).length > 0) next.traffic = traffic;
    else delete next.traffic;
    return next;
  });
}

/** Changes a running instance (retrying on concurrent writes); false when it is gone or already stopping. */
async function updateInstance(ctx: Context, id: string, change: (i: Instance) => Instance): Promise<boolean> {
  const written = await updateObject<Instance>(ctx.store, "instance", id, (o) =>
    o && o.value.desired === "running" ? change(o.value) : undefined,
  );
  return written !== undefined;
}
