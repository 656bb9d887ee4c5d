/**
 * From store objects to the scheduler's questions: what a service's instance
 * asks for (placementRequest), what holds each node's resources now
 * (placedInstances), and whether a service's desired count can be placed on
 * today's nodes at all (serviceShortfall) — the check that fails a rollout at
 * once instead of letting it wait for capacity that will not come, and that
 * `herd scale` answers with.
 */

import { type Instance, type Node, type Service, serviceKey } from "../model/objects.ts";
import { ClusterState, type PlacedInstance } from "../scheduler/cluster-state.ts";
import {
  copiesThatFit,
  holdsResources,
  type PlacementRequest,
  schedulerNode,
} from "../scheduler/scheduler.ts";
import { findShortfall, type Shortfall } from "../scheduler/shortfall.ts";
import { Informer } from "../store/informer.ts";
import type { Store } from "../store/store.ts";

/** The part of an instance placement looks at (a planned one has no node yet). */
export type PlacementSubject = Pick<Instance, "id" | "mode" | "node" | "moving"> & {
  resources: Instance["run"]["resources"];
  /** A pet's: the node whose disk holds its volume (a pet made again after a scale down), if one does. */
  dataOn?: string;
};

/**
 * Where a pet has its data: the node whose agent reports its volume. A pet
 * made again under the same id (scaled away and back, given up on in a crash
 * loop) goes back there, as a pet never moves silently (placementRequest: its
 * own node, then where an operator moves it, then this one); removing the
 * node frees it.
 */
export function dataOn(nodes: Iterable<Node>, i: Pick<Instance, "id" | "mode">): { dataOn?: string } {
  if (i.mode !== "pet") return {};
  for (const n of nodes) if (n.volumes?.includes(i.id)) return { dataOn: n.name };
  return {};
}

/** What the scheduler needs to know of one instance of `svc`. */
export function placementRequest(svc: Service, i: PlacementSubject): PlacementRequest {
  const p = svc.spec.placement;
  const key = (name: string) => serviceKey(svc.tenant, svc.app, name);
  const terms = (list: { service: string; required: boolean }[] | undefined) =>
    list?.map((t) => ({ service: key(t.service), required: t.required }));
  return {
    id: i.id,
    service: key(svc.name),
    resources: i.resources,
    criticality: svc.spec.criticality ?? "normal",
    strategy: p?.strategy ?? "spread",
    // Pets go back to the node that holds their data (or to where an operator moves them).
    ...(i.mode === "pet" && (i.node ?? i.moving?.to ?? i.dataOn)
      ? { node: i.node ?? i.moving?.to ?? i.dataOn }
      : {}),
    ...(p?.nodeSelector ? { nodeSelector: p.nodeSelector } : {}),
    ...(p?.tolerations ? { tolerations: p.tolerations } : {}),
    ...(p?.affinity ? { affinity: terms(p.affinity) } : {}),
    ...(p?.antiAffinity ? { antiAffinity: terms(p.antiAffinity) } : {}),
    ...(p?.spreadBy ? { spreadBy: p.spreadBy } : {}),
    ...(svc.spec.runtime ? { runtime: svc.spec.runtime } : {}),
  };
}

/** The instances that hold resources on their nodes, as the scheduler sees them (those `keep` accepts). */
export function placedInstances(
  instances: Iterable<Instance>,
  services: ReadonlyMap<string, Service>,
  keep: (i: Instance) => boolean = () => true,
): PlacedInstance[] {
  const placed: PlacedInstance[] = [];
  for (const i of instances) {
    if (!keep(i)) continue;
    const p = placedInstance(i, services.get(serviceKey(i.tenant, i.app, i.service)));
    if (p) placed.push(p);
  }
  return placed;
}

/** One instance as the scheduler sees it, if it holds resources on a node (`svc`: its service, for its criticality). */
export function placedInstance(i: Instance, svc: Service | undefined): PlacedInstance | undefined {
  if (!i.node || !holdsResources(i)) return undefined;
  return {
    id: i.id,
    service: serviceKey(i.tenant, i.app, i.service),
    node: i.node,
    resources: i.run.resources,
    criticality: svc?.spec.criticality ?? "normal",
    pet: i.mode === "pet",
  };
}

/**
 * How many of `count` instances of `svc`'s release cannot be placed on
 * today's nodes, and why — or undefined when all fit. The question is asked
 * generously, so that only what cannot succeed is called so: the service's
 * own instances are left out (old ones stop as new ones run), and so is
 * whatever is on its way out (told to stop, crashed cattle, instances of the
 * app's releases being replaced); nodes that missed a few heartbeats count as
 * ready; lost nodes do not count.
 */
export function serviceShortfall(
  svc: Service,
  count: number,
  nodes: readonly Node[],
  instances: readonly Instance[],
  services: ReadonlyMap<string, Service>,
): Shortfall | undefined {
  if (count === 0) return undefined;
  const going = (i: Instance) => {
    if (i.desired !== "running" || (i.state === "crashed" && i.mode === "cattle")) return true;
    if (i.tenant !== svc.tenant || i.app !== svc.app) return false;
    if (i.service === svc.name) return true;
    const own = services.get(serviceKey(i.tenant, i.app, i.service));
    return own !== undefined && own.release !== i.release;
  };
  const state = new ClusterState(
    nodes.filter((n) => n.state !== "lost").map((n) => ({ ...schedulerNode(n), ready: true })),
    placedInstances(instances, services, (i) => !going(i)),
  );
  // The service's current instances (a pet keeps its node), then as many planned ones as are missing.
  const mine = instances.filter(
    (i) =>
      i.tenant === svc.tenant &&
      i.app === svc.app &&
      i.service === svc.name &&
      i.desired === "running" &&
      i.release === svc.release,
  );
  const requests: PlacementRequest[] = mine
    .slice(0, count)
    .map((i) => placementRequest(svc, { ...i, resources: i.run.resources, ...dataOn(nodes, i) }));
  for (let n = requests.length; n < count; n++) {
    requests.push(
      placementRequest(svc, {
        id: `${svc.app}-${svc.name}-planned-${n}`,
        mode: svc.spec.mode,
        node: null,
        resources: svc.spec.resources,
      }),
    );
  }
  return findShortfall(state, requests);
}

/** One service's instances that cannot be placed (the reply of a scale). */
export interface Unplaced extends Shortfall {
  service: string;
}

/**
 * For each named service of an app, how many of its desired instances
 * cannot be placed on today's nodes and why (services that fit are left out).
 *
 * With `live` (the scheduler's kept view, controllers/cluster-view.ts, read
 * from the synced informer) a service whose missing instances plainly fit
 * among what is free now is answered from it at once: replaying every
 * placement on a cluster built for the question costs milliseconds per call
 * with thousands of instances. What does not plainly fit gets the full,
 * generous question (serviceShortfall).
 */
export async function appShortfalls(
  source: Store | Informer,
  tenant: string,
  app: string,
  names: string[],
  live?: () => ClusterState,
): Promise<Unplaced[]> {
  const informer = source instanceof Informer ? source : undefined;
  if (informer) await informer.sync();
  const plainlyFits = (svc: Service) => {
    if (!informer || !live || svc.spec.mode === "pet") return false;
    // Its instances of this release that already hold their share stay where they are.
    const placed = informer
      .by<Instance>("instance", "service", serviceKey(svc.tenant, svc.app, svc.name))
      .filter(
        (o) =>
          o.value.desired === "running" &&
          o.value.release === svc.release &&
          o.value.node !== null &&
          holdsResources(o.value),
      ).length;
    const missing = svc.instances - placed;
    if (missing <= 0) return true;
    const request = placementRequest(svc, {
      id: `${svc.app}-${svc.name}-planned`,
      mode: svc.spec.mode,
      node: null,
      resources: svc.spec.resources,
    });
    const fit = copiesThatFit(live(), request, missing);
    return fit !== undefined && fit >= missing;
  };
  const read = async <T>(kind: "service" | "node" | "instance") =>
    informer ? informer.list<T>(kind) : (await (source as Store).list<T>(kind)).items;
  const wanted: Service[] = [];
  for (const name of names) {
    const svc = informer
      ? informer.get<Service>("service", serviceKey(tenant, app, name))?.value
      : (await (source as Store).get<Service>("service", serviceKey(tenant, app, name)))?.value;
    if (svc && svc.instances > 0 && !plainlyFits(svc)) wanted.push(svc);
  }
  if (wanted.length === 0) return [];
  const services = new Map((await read<Service>("service")).map((o) => [o.key, o.value]));
  const nodes = (await read<Node>("node")).map((o) => o.value);
  const instances = (await read<Instance>("instance")).map((o) => o.value);
  const out: Unplaced[] = [];
  for (const svc of wanted) {
    const name = svc.name;
    const short = serviceShortfall(svc, svc.instances, nodes, instances, services);
    if (short) out.push({ service: name, ...short });
  }
  return out;
}
