/**
 * Builds the engine's view of the apps from the store (one list per kind per
 * pass, not per app), the alert evaluator's firing alerts and, when a rule may
 * degrade, the calls seen in spans.
 */

import type { LoadFigures } from "../../model/load.ts";
import {
  type App,
  appKey,
  type Instance,
  type Node,
  type Release,
  type Service,
  serviceKey,
} from "../../model/objects.ts";
import type { InstanceUsage } from "../../model/protocol.ts";
import type { Informer } from "../../store/informer.ts";
import type { Store, StoredObject } from "../../store/store.ts";
import { serviceShortfall } from "../capacity-check.ts";
import type { AppView, CallEdge, FiringAlert } from "./view.ts";

/** A firing alert as the evaluator holds it (the fields the engine reads). */
export interface AlertLike {
  rule: string;
  tenant?: string;
  app?: string;
  state: "pending" | "firing";
  labels: Record<string, string>;
  value: number;
  activeAt: number;
  firedAt?: number;
}

/** Figures no gateway reported: every service reads as without traffic. */
export const NO_LOAD: LoadFigures = { service: () => undefined, instances: () => [] };

/**
 * Every live app with services, as views without releases (those are read
 * only when a rule fires). Without a machine provider (`machineProvider`
 * false) each view can say what would not fit on today's nodes.
 */
export async function appViews(
  { store, informer, machineProvider }: { store: Store; informer: Informer; machineProvider: boolean },
  load: LoadFigures,
  alerts: readonly AlertLike[],
  now: number,
  usage?: (instance: Instance) => InstanceUsage | undefined,
): Promise<AppView[]> {
  const apps = (await store.list<App>("app")).items.map((o) => o.value);
  // Services, instances and nodes from the informer, synced: no parse of the whole cluster each pass.
  await informer.sync();
  const services = byKey(informer.list<Service>("service")).map((o) => o.value);
  const instances = byKey(informer.list<Instance>("instance")).map((o) => o.value);
  const nodes = informer.list<Node>("node").map((o) => o.value);
  // Grouped once by app: a pass costs what the cluster holds, not apps × instances.
  const servicesOf = groupByApp(services);
  const instancesOf = groupByApp(instances.filter((i) => i.desired === "running"));
  const nodeOf = new Map(nodes.map((n) => [n.name, n]));
  const serviceOf = new Map(services.map((s) => [serviceKey(s.tenant, s.app, s.name), s]));
  const shortfall = (tenant: string, app: string) => (name: string, count: number) => {
    const svc = serviceOf.get(serviceKey(tenant, app, name));
    return svc && serviceShortfall(svc, count, nodes, instances, serviceOf)?.message;
  };
  const views: AppView[] = [];
  for (const a of apps) {
    if (a.destroying || a.release === null) continue;
    const key = appKey(a.tenant, a.name);
    const mine = servicesOf.get(key) ?? [];
    if (mine.length === 0) continue;
    const insts = instancesOf.get(key) ?? [];
    views.push({
      tenant: a.tenant,
      app: a.name,
      now,
      appRelease: a.release,
      releases: [],
      services: mine.map((s) => ({
        name: s.name,
        release: s.release,
        instances: s.instances,
        running: insts.filter((i) => i.service === s.name && i.state === "running").length,
        state: s.state,
        crashes: s.crashes,
        spec: s.spec,
        ...(s.traffic && "concurrency" in s.traffic
          ? { concurrencyOverride: s.traffic.concurrency ?? null }
          : {}),
        ...(s.traffic?.fallback ? { degraded: true } : {}),
      })),
      instances: insts.map((i) => {
        const u = usage?.(i);
        return {
          id: i.id,
          service: i.service,
          release: i.release,
          node: i.node,
          state: i.state,
          mode: i.mode,
          ...(u?.cpuCores !== undefined ? { cpuCores: u.cpuCores } : {}),
          ...(u?.cpuWaitShare !== undefined ? { cpuWaitShare: u.cpuWaitShare } : {}),
          ...(i.startedAt ? { startedAt: Date.parse(i.startedAt) } : {}),
        };
      }),
      nodes: [...new Set(insts.map((i) => i.node))]
        .flatMap((name) => (name === null ? [] : (nodeOf.get(name) ?? [])))
        .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
        .map((n) => ({ name: n.name, state: n.state, schedulable: n.schedulable })),
      alerts: firingFor(alerts, a.tenant, a.name),
      calls: [],
      load,
      ...(machineProvider ? {} : { shortfall: shortfall(a.tenant, a.name) }),
    });
  }
  return views;
}

function groupByApp<T extends { tenant: string; app: string }>(items: readonly T[]): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const key = appKey(item.tenant, item.app);
    const list = out.get(key);
    if (list) list.push(item);
    else out.set(key, [item]);
  }
  return out;
}

function firingFor(alerts: readonly AlertLike[], tenant: string, app: string): FiringAlert[] {
  return alerts
    .filter(
      (a) => a.state === "firing" && (a.tenant ?? "default") === tenant && (a.app ?? a.labels.app) === app,
    )
    .map((a) => ({
      rule: a.rule,
      ...(a.labels.service ? { service: a.labels.service } : {}),
      value: a.value,
      since: a.firedAt ?? a.activeAt,
    }));
}

/** The app's releases, oldest first. */
export async function releasesOf(store: Store, tenant: string, app: string): Promise<AppView["releases"]> {
  const { items } = await store.list<Release>("release", { prefix: `${tenant}/${app}/` });
  return items.map((o) => ({
    version: o.value.version,
    createdAt: Date.parse(o.value.createdAt),
    ...(o.value.rollbackOf !== undefined ? { rollbackOf: o.value.rollbackOf } : {}),
  }));
}

/** The edges of a dependency map (observe/traces/analysis.ts DependencyMap) as the engine reads them. */
export function callEdges(map: {
  edges: { from: string; to: string; calls: number; errors: number; errorRate: number }[];
}): CallEdge[] {
  return map.edges.map((e) => ({
    from: e.from,
    to: e.to,
    calls: e.calls,
    errors: e.errors,
    errorRate: e.errorRate,
  }));
}

/** Informer objects in key order, as a store list gives them. */
function byKey<T>(objects: StoredObject<T>[]): StoredObject<T>[] {
  return objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
