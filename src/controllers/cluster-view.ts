/**
 * The scheduler's ClusterState, kept: built once from the informer's nodes and
 * instances, then updated with each change the informer takes, instead of
 * rebuilt from every instance on every placement pass (10,000 instances: a
 * pass per service per second cost more than the placements).
 *
 *   informer.subscribe ─► instance put/delete ─► remove(id) + add(as it is now)
 *                      ─► node changed (what the scheduler sees of it) ─► replaceNode
 *                      ─► node added/removed, a service's criticality, relist ─► rebuilt on the next read
 *
 * A Scheduler that places on the state adds its placements at once (the next
 * placement, in this pass or another, sees them); the store's copy replaces
 * them when the write lands. A placement whose write fails is put back as the
 * informer has it (`refresh`).
 */

import { type Instance, type Node, type Service, serviceKey } from "../model/objects.ts";
import { ClusterState, type SchedulerNode } from "../scheduler/cluster-state.ts";
import { schedulerNode } from "../scheduler/scheduler.ts";
import type { Informer, InformerChange } from "../store/informer.ts";
import type { StoredObject } from "../store/store.ts";
import { placedInstance, placedInstances } from "./capacity-check.ts";

/** What the scheduler sees of a node, as one string: a change of it is a change for the scheduler. */
function seen(n: SchedulerNode): string {
  return JSON.stringify([
    n.labels,
    n.allocatable,
    n.cpuOvercommit,
    n.ready,
    n.schedulable,
    n.taints,
    n.slugs ? [...n.slugs] : undefined,
    n.drivers,
  ]);
}

export class ClusterView {
  readonly #informer: Informer;
  /** Undefined: built afresh on the next read. */
  #state: ClusterState | undefined;
  readonly #unsubscribe: () => void;

  constructor(informer: Informer) {
    this.#informer = informer;
    this.#unsubscribe = informer.subscribe((change) => this.#take(change));
  }

  /**
   * The cluster as the informer holds it now (sync the informer first for a
   * store-fresh view), with the placements made on it since.
   */
  state(): ClusterState {
    this.#state ??= this.#build();
    return this.#state;
  }

  /** Puts an instance back as the informer holds it (its placement's write failed). */
  refresh(id: string): void {
    const state = this.#state;
    if (!state) return;
    state.remove(id);
    const o = this.#informer.get<Instance>("instance", id);
    if (o) this.#add(state, o.value);
  }

  stop(): void {
    this.#unsubscribe();
  }

  #build(): ClusterState {
    const nodes = this.#informer.list<Node>("node").map((o) => schedulerNode(o.value));
    const services = new Map(this.#informer.list<Service>("service").map((o) => [o.key, o.value]));
    const instances = this.#informer.list<Instance>("instance").map((o) => o.value);
    return new ClusterState(nodes, placedInstances(instances, services));
  }

  #add(state: ClusterState, i: Instance): void {
    const p = placedInstance(
      i,
      this.#informer.get<Service>("service", serviceKey(i.tenant, i.app, i.service))?.value,
    );
    if (p) state.add(p);
  }

  #take(change: InformerChange): void {
    const state = this.#state;
    if (!state) return;
    if (change.reset) {
      this.#state = undefined;
      return;
    }
    switch (change.kind) {
      case "instance": {
        const before = change.before as StoredObject<Instance> | undefined;
        const after = change.after as StoredObject<Instance> | undefined;
        if (before) state.remove(before.value.id);
        if (after) this.#add(state, after.value);
        return;
      }
      case "node": {
        const before = change.before as StoredObject<Node> | undefined;
        const after = change.after as StoredObject<Node> | undefined;
        if (!before || !after) {
          this.#state = undefined;
          return;
        }
        const next = schedulerNode(after.value);
        if (seen(schedulerNode(before.value)) !== seen(next) && !state.replaceNode(next))
          this.#state = undefined;
        return;
      }
      case "service": {
        const criticality = (o: InformerChange & { reset?: undefined }, side: "before" | "after") =>
          (o[side] as StoredObject<Service> | undefined)?.value.spec?.criticality ?? "normal";
        if (criticality(change, "before") !== criticality(change, "after")) this.#state = undefined;
        return;
      }
    }
  }
}
