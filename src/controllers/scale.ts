/**
 * The one way a service's instance count changes outside a deploy: `herd
 * scale`, the autoscaler, the remediation engine and a scale-to-zero wake all
 * call scaleServices, so each is checked against the tenant's quota, recorded
 * as an event, and answered with what cannot be placed and why.
 *
 *   caller ─► scaleServices ─► known services? ─► clamp to autoscale [min, max]
 *                                 ─► quota ─► Service.instances (optimistic put)
 *                                 ─► event per service ─► shortfall (unplaced + why, warning event)
 *
 * Placement itself stays with the service controller; this only sets the
 * count and says, from capacity-check, which instances fit nowhere today.
 */

import { conflict, HerdError, notFound } from "../common/errors.ts";
import { type App, appKey, type Resources, type Service, serviceKey } from "../model/objects.ts";
import type { ClusterState } from "../scheduler/cluster-state.ts";
import type { Informer } from "../store/informer.ts";
import { type Store, updateObject } from "../store/store.ts";
import { appShortfalls, type Unplaced } from "./capacity-check.ts";
import type { EventInput, EventRecorder } from "./events.ts";
import { checkQuota } from "./quota.ts";

/** What scaleServices needs: the store, the event record and the resource unit quotas count in. */
export interface ScaleDeps {
  store: Store;
  events: EventRecorder;
  unit: Resources;
  /** Where the shortfall reads nodes, instances and services (absent: whole-kind store lists). */
  informer?: Informer;
  /** The scheduler's live view (ServiceController.clusterState): a scale that plainly fits is answered from it. */
  cluster?: () => ClusterState;
}

/** A change of instance counts of one app's services. */
export interface ScaleRequest {
  tenant: string;
  app: string;
  /** Wanted instances by service name. */
  services: Record<string, number>;
  /** Optimistic concurrency: the service revisions the change is based on (conflict when one is stale). */
  revisions?: Record<string, number>;
  /** Event reason per service (default `Scaled`). */
  reason?: string;
  /** Appended to each event's message, e.g. the autoscaler's figures. */
  why?: string;
  /** Extra lines of each event (the figures of a decision). */
  details?: string[];
}

/** What a scale did: the services as written, what cannot be placed, and what was changed from the ask. */
export interface ScaleResult {
  items: Service[];
  unplaced: Unplaced[];
  /** E.g. "web is autoscaled between 1 and 5: 9 became 5; the autoscaler may change it". */
  warnings: string[];
}

/**
 * Sets the instance counts of `req.services`. A service with `autoscale:` gets
 * a count inside [min, max] (as the HPA keeps `kubectl scale` inside its
 * bounds) and a warning that the autoscaler may change it. Throws `invalid`
 * for an unknown service, `forbidden` over the quota, `conflict` for a stale
 * revision; records one event per service whose count changed or was asked.
 */
export async function scaleServices(deps: ScaleDeps, req: ScaleRequest): Promise<ScaleResult> {
  const { store, events } = deps;
  const { tenant, app } = req;
  if (!(await store.get<App>("app", appKey(tenant, app))))
    throw notFound(`app ${app} does not exist (herd apps lists the apps)`);
  const services = (await store.list<Service>("service", { prefix: `${appKey(tenant, app)}/` })).items;
  const unknown = Object.keys(req.services).filter((n) => !services.some((s) => s.value.name === n));
  if (unknown.length > 0) {
    throw new HerdError(
      "invalid",
      `app ${app} has no service ${unknown.join(", ")} (it has ${services.map((s) => s.value.name).join(", ") || "none: deploy first"})`,
      unknown.map((n) => ({ field: `services.${n}`, message: "no such service" })),
    );
  }
  const warnings: string[] = [];
  const wanted: Record<string, number> = {};
  for (const [name, asked] of Object.entries(req.services)) {
    const spec = services.find((s) => s.value.name === name)!.value.spec;
    const count = clampToAutoscale(spec.autoscale, asked);
    wanted[name] = count;
    const a = spec.autoscale;
    if (a && req.reason === undefined) {
      warnings.push(
        `${name} is autoscaled between ${a.min} and ${a.max}` +
          `${count !== asked ? `: ${asked} became ${count}` : ""}; the autoscaler may change it`,
      );
    }
  }
  await checkQuota(
    store,
    deps.unit,
    tenant,
    app,
    Object.fromEntries(
      Object.entries(wanted).map(([name, count]) => [
        name,
        { instances: count, resources: services.find((s) => s.value.name === name)!.value.spec.resources },
      ]),
    ),
    false,
  );
  const items: Service[] = [];
  for (const [name, count] of Object.entries(wanted)) {
    const key = serviceKey(tenant, app, name);
    let from = 0;
    const written = await updateObject<Service>(store, "service", key, (s) => {
      if (!s) throw notFound(`service ${name} of app ${app} was removed during the scale`);
      const based = req.revisions?.[name];
      if (based !== undefined && based !== s.revision) {
        throw conflict(
          `service ${name} changed since revision ${based} (it is at ${s.revision}): read it again`,
        );
      }
      from = s.value.instances;
      const busy = s.value.state === "updating" || s.value.state === "rolling_back";
      return {
        ...s.value,
        instances: count,
        state: busy
          ? s.value.state
          : s.value.instances === count && s.value.state !== "failed"
            ? s.value.state
            : "scaling",
        crashes: 0,
        backoffUntil: undefined,
        message: busy ? s.value.message : `scaling from ${s.value.instances} to ${count}`,
      };
    });
    if (written) items.push(written.value);
    const event: EventInput = {
      tenant,
      app,
      service: name,
      reason: req.reason ?? "Scaled",
      message: `${name} scaled from ${from} to ${count}${req.why ? `: ${req.why}` : ""}`,
      ...(req.details ? { details: req.details } : {}),
    };
    await events.record(event);
  }
  const unplaced = await appShortfalls(
    deps.informer ?? store,
    tenant,
    app,
    Object.keys(wanted),
    deps.cluster,
  );
  for (const u of unplaced) {
    await events.record({
      tenant,
      app,
      service: u.service,
      type: "warning",
      reason: "ScaleUnplaced",
      message: `${u.service}: ${u.message}; they wait as pending until there is room`,
    });
  }
  return { items, unplaced, warnings };
}

/** `count` inside the service's autoscale bounds, or as is without autoscale. */
export function clampToAutoscale(a: { min: number; max: number } | undefined, count: number): number {
  return a ? Math.min(a.max, Math.max(a.min, count)) : count;
}
