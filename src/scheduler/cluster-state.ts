/**
 * What the scheduler knows of the cluster, in a shape built for scanning
 * thousands of nodes per placement: free CPU and memory in typed arrays
 * indexed by node, replicas per service per node in sparse maps, and the
 * instances on each node (for preemption). Built from the store's nodes and
 * instances, then updated as instances are placed and as the store changes
 * (controllers/cluster-view.ts keeps one for every scheduling pass).
 */

import type { Resources, Taint } from "../model/objects.ts";

/** Lets an instance onto nodes with a matching taint (same key; same value when the toleration names one). */
export interface Toleration {
  key: string;
  value?: string;
}

export type Criticality = "critical" | "normal" | "low";

/** Higher outranks lower: a critical instance may preempt low ones. */
export const RANK: Readonly<Record<Criticality, number>> = { low: 0, normal: 1, critical: 2 };

/** A node as the scheduler sees it. */
export interface SchedulerNode {
  name: string;
  labels: Readonly<Record<string, string>>;
  allocatable: Resources;
  /** How far CPU requests may exceed allocatable CPU (2: twice); absent: 1, not at all. Memory never is. */
  cpuOvercommit?: number;
  /** Heartbeats arrive (state ready). */
  ready: boolean;
  /** Not cordoned. */
  schedulable: boolean;
  taints?: readonly Taint[];
  /** The slug digests its agent holds (the warm slug scorer). */
  slugs?: ReadonlySet<string>;
  /** Runtime drivers besides process its agent has (docker). */
  drivers?: readonly string[];
}

/** An instance that holds resources on a node. */
export interface PlacedInstance {
  id: string;
  /** `tenant/app/service`. */
  service: string;
  node: string;
  resources: Resources;
  criticality: Criticality;
  /** Pets hold data on their node: never preempted. */
  pet?: boolean;
}

/** The CPU requests a node takes in all: its allocatable CPU times its overcommit ratio. */
export function cpuCapacity(node: Pick<SchedulerNode, "allocatable" | "cpuOvercommit">): number {
  return node.allocatable.cpu * (node.cpuOvercommit ?? 1);
}

export class ClusterState {
  readonly #nodes: SchedulerNode[];
  readonly #index = new Map<string, number>();
  /** Allocatable (CPU: times the overcommit ratio) minus what placed instances hold, per node index. */
  readonly cpuFree: Float64Array;
  readonly memoryFree: Float64Array;
  /** Ready and schedulable, per node index (1) — the first check of every scan. */
  readonly open: Uint8Array;
  /** service → node index → replicas there. */
  readonly #replicas = new Map<string, Map<number, number>>();
  /** Instances per node index (preemption looks for victims here). */
  readonly #onNode: PlacedInstance[][];
  readonly #byId = new Map<string, { instance: PlacedInstance; node: number }>();

  constructor(nodes: readonly SchedulerNode[], placed: Iterable<PlacedInstance> = []) {
    this.#nodes = [...nodes];
    const n = nodes.length;
    this.cpuFree = new Float64Array(n);
    this.memoryFree = new Float64Array(n);
    this.open = new Uint8Array(n);
    this.#onNode = Array.from({ length: n }, () => []);
    for (let i = 0; i < n; i++) {
      const node = nodes[i];
      this.#index.set(node.name, i);
      this.cpuFree[i] = cpuCapacity(node);
      this.memoryFree[i] = node.allocatable.memory;
      this.open[i] = node.ready && node.schedulable ? 1 : 0;
    }
    for (const p of placed) this.add(p);
  }

  get nodes(): readonly SchedulerNode[] {
    return this.#nodes;
  }

  /**
   * Puts a new version of a known node in place (its labels, allocatable,
   * readiness…): what its instances hold stays held. False when the node is
   * not known (a new node needs a new ClusterState).
   */
  replaceNode(node: SchedulerNode): boolean {
    const i = this.#index.get(node.name);
    if (i === undefined) return false;
    const old = this.#nodes[i] as SchedulerNode;
    this.cpuFree[i] += cpuCapacity(node) - cpuCapacity(old);
    this.memoryFree[i] += node.allocatable.memory - old.allocatable.memory;
    this.open[i] = node.ready && node.schedulable ? 1 : 0;
    this.#nodes[i] = node;
    return true;
  }

  /** Whether an instance is recorded as holding resources here. */
  holds(id: string): boolean {
    return this.#byId.has(id);
  }

  indexOf(node: string): number | undefined {
    return this.#index.get(node);
  }

  /** Records an instance as holding resources on its node (nodes the state does not know are ignored). */
  add(instance: PlacedInstance): void {
    const i = this.#index.get(instance.node);
    if (i === undefined || this.#byId.has(instance.id)) return;
    this.cpuFree[i] -= instance.resources.cpu;
    this.memoryFree[i] -= instance.resources.memory;
    let counts = this.#replicas.get(instance.service);
    if (counts === undefined) {
      counts = new Map();
      this.#replicas.set(instance.service, counts);
    }
    counts.set(i, (counts.get(i) ?? 0) + 1);
    this.#onNode[i].push(instance);
    this.#byId.set(instance.id, { instance, node: i });
  }

  /** Frees what an instance held (stopped, preempted, moved). */
  remove(id: string): void {
    const entry = this.#byId.get(id);
    if (entry === undefined) return;
    const { instance, node: i } = entry;
    this.#byId.delete(id);
    this.cpuFree[i] += instance.resources.cpu;
    this.memoryFree[i] += instance.resources.memory;
    const counts = this.#replicas.get(instance.service);
    const left = (counts?.get(i) ?? 1) - 1;
    if (left > 0) counts?.set(i, left);
    else counts?.delete(i);
    const list = this.#onNode[i];
    list.splice(list.indexOf(instance), 1);
  }

  /** Replicas of `service` per node index (absent: none). */
  replicas(service: string): ReadonlyMap<number, number> {
    return this.#replicas.get(service) ?? EMPTY;
  }

  instancesOn(node: number): readonly PlacedInstance[] {
    return this.#onNode[node];
  }
}

const EMPTY: ReadonlyMap<number, number> = new Map();
