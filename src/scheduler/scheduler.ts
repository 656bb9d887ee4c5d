/**
 * Placement: pure logic. A ClusterState and one request in; a node out — or
 * the reasons no node fits, counted per filter so `herd ps` can say
 * "5 nodes: 3 insufficient memory, 2 anti-affinity".
 *
 * The whole pipeline is wired here, in order. Feasibility filters, cheap
 * first; the first one a node fails is its reason:
 *   1. ready           — heartbeats arrive
 *   2. cordoned        — the node takes new instances
 *   3. bound           — a pet goes back to the node that holds its data
 *   4. moved off       — not a node the service's instances are being moved off
 *   5. taints          — every taint of the node is tolerated
 *   6. node selector   — the node has the labels asked for
 *   7. memory          — fits what is not allocated (memory is never overcommitted)
 *   8. cpu             — fits what is not requested, up to allocatable × the node's CPU overcommit
 *   9. affinity        — required: a replica of the named service is on the node
 *  10. anti-affinity   — required: no replica of the named service (itself: its own replicas) is there
 * then scorers, each 0..1 times its weight, summed; the best node wins:
 *   resources   — spread: most free after placing; binpack: least free after placing
 *   replicas    — spread: fewer replicas of the same service on the node
 *   affinity    — preferred affinity / anti-affinity terms satisfied
 *   zones       — fewer replicas in the node's zone (spreadBy label)
 *   warm slug   — the node holds the release's slug already (no download before the start)
 *
 * At scale the scan stops after SAMPLE feasible nodes, starting where the
 * last scan stopped (Kubernetes' percentageOfNodesToScore does the same), so
 * one placement costs about the same at 500 or 5,000 nodes and every node
 * gets its turn. Binpack scans every node: packing needs the fullest one.
 * Nothing fits → a full pass counts the reasons, then preemption is tried.
 */

import type { Instance, Node, Resources } from "../model/objects.ts";
import { qosClass } from "../model/qos.ts";
import {
  type ClusterState,
  type Criticality,
  cpuCapacity,
  type PlacedInstance,
  RANK,
  type SchedulerNode,
  type Toleration,
} from "./cluster-state.ts";

/** A service another one wants to be near (affinity) or away from (anti-affinity). */
export interface ServiceTerm {
  /** `tenant/app/service`; the request's own service means its replicas. */
  service: string;
  /** Required terms filter nodes; preferred ones only score. */
  required: boolean;
}

/** One instance to place. */
export interface PlacementRequest {
  id: string;
  /** `tenant/app/service`. */
  service: string;
  resources: Resources;
  criticality?: Criticality;
  /** spread (default): most free node, replicas apart; binpack: fullest node that fits. */
  strategy?: "spread" | "binpack";
  /** A pet's node: it may only go there. */
  node?: string;
  nodeSelector?: Readonly<Record<string, string>>;
  tolerations?: readonly Toleration[];
  affinity?: readonly ServiceTerm[];
  antiAffinity?: readonly ServiceTerm[];
  /** A node label (e.g. zone) whose values replicas are spread over. */
  spreadBy?: string;
  /** Nodes replicas are being moved off (`herd instances move`). */
  avoid?: readonly string[];
  /** The release's slug digest: nodes that hold it are preferred (warm start). */
  slug?: string;
  /** A runtime driver besides process that it needs (docker): only nodes that have it. */
  runtime?: string;
}

export type Placement =
  | { node: string; preempted: PlacedInstance[] }
  | { node: null; reasons: Record<string, number>; message: string };

/** A per-request check of one node index. */
type Check = (node: number) => boolean;
/** A per-request score of one node index, 0..1. */
type Score = (node: number) => number;

interface Filter {
  reason: string;
  /** Memory and CPU: preemption can make room for these, not for the others. */
  resource?: boolean;
  /** The check for this request, or null when the filter does not apply to it. */
  prepare(state: ClusterState, request: PlacementRequest): Check | null;
}

interface Scorer {
  /** What it prefers, for messages and tests. */
  name: string;
  weight: number;
  prepare(state: ClusterState, request: PlacementRequest): Score | null;
}

/** Feasible nodes a spread placement compares at most. */
export const SAMPLE = 128;

const FILTERS: readonly Filter[] = [
  {
    reason: "not ready",
    prepare: (state) => (n) => state.nodes[n].ready,
  },
  {
    reason: "cordoned",
    prepare: (state) => (n) => state.nodes[n].schedulable,
  },
  {
    reason: "not the pet's node",
    prepare: (state, request) => {
      if (request.node === undefined) return null;
      const bound = state.indexOf(request.node);
      return (n) => n === bound;
    },
  },
  {
    reason: "being moved off",
    prepare: (state, request) => {
      if (request.avoid === undefined || request.avoid.length === 0) return null;
      const avoided = new Set(request.avoid.map((name) => state.indexOf(name)));
      return (n) => !avoided.has(n);
    },
  },
  {
    reason: "untolerated taint",
    prepare: (state, request) => {
      const tolerations = request.tolerations ?? [];
      return (n) => {
        const taints = state.nodes[n].taints;
        if (taints === undefined) return true;
        for (const t of taints) {
          if (!tolerations.some((o) => o.key === t.key && (o.value === undefined || o.value === t.value))) {
            return false;
          }
        }
        return true;
      };
    },
  },
  {
    reason: "runtime driver missing",
    prepare: (state, request) => {
      const runtime = request.runtime;
      if (runtime === undefined) return null;
      return (n) => state.nodes[n].drivers?.includes(runtime) === true;
    },
  },
  {
    reason: "node selector",
    prepare: (state, request) => {
      const selector = request.nodeSelector;
      if (selector === undefined) return null;
      const pairs = Object.entries(selector);
      if (pairs.length === 0) return null;
      return (n) => {
        const labels = state.nodes[n].labels;
        for (const [k, v] of pairs) if (labels[k] !== v) return false;
        return true;
      };
    },
  },
  {
    reason: "insufficient memory",
    resource: true,
    prepare: (state, request) => {
      const memory = request.resources.memory;
      const free = state.memoryFree;
      return (n) => free[n] >= memory;
    },
  },
  {
    reason: "insufficient cpu",
    resource: true,
    prepare: (state, request) => {
      // A small tolerance: sums of quarters of a core are exact, other fractions not quite.
      const cpu = request.resources.cpu - 1e-9;
      const free = state.cpuFree;
      return (n) => free[n] >= cpu;
    },
  },
  {
    reason: "affinity",
    prepare: (state, request) => {
      const terms = request.affinity?.filter((t) => t.required) ?? [];
      if (terms.length === 0) return null;
      const maps = terms.map((t) => state.replicas(t.service));
      return (n) => maps.every((m) => m.has(n));
    },
  },
  {
    reason: "anti-affinity",
    prepare: (state, request) => {
      const terms = request.antiAffinity?.filter((t) => t.required) ?? [];
      if (terms.length === 0) return null;
      const maps = terms.map((t) => state.replicas(t.service));
      return (n) => {
        for (const m of maps) if (m.has(n)) return false;
        return true;
      };
    },
  },
];

const SCORERS: readonly Scorer[] = [
  {
    name: "resources",
    weight: 1,
    prepare: (state, request) => {
      const { cpu, memory } = request.resources;
      const binpack = request.strategy === "binpack";
      return (n) => {
        const a = state.nodes[n].allocatable;
        const cpus = cpuCapacity(state.nodes[n]);
        const free =
          (a.memory > 0 ? (state.memoryFree[n] - memory) / a.memory : 0) * 0.5 +
          (cpus > 0 ? (state.cpuFree[n] - cpu) / cpus : 0) * 0.5;
        return binpack ? 1 - free : free;
      };
    },
  },
  {
    name: "replicas apart",
    weight: 1,
    prepare: (state, request) => {
      if (request.strategy === "binpack") return null;
      const mine = state.replicas(request.service);
      return (n) => 1 / (1 + (mine.get(n) ?? 0));
    },
  },
  {
    name: "preferred affinity",
    weight: 1,
    prepare: (state, request) => {
      const near = (request.affinity ?? []).filter((t) => !t.required).map((t) => state.replicas(t.service));
      const away = (request.antiAffinity ?? [])
        .filter((t) => !t.required)
        .map((t) => state.replicas(t.service));
      const total = near.length + away.length;
      if (total === 0) return null;
      return (n) => {
        let met = 0;
        for (const m of near) if (m.has(n)) met++;
        for (const m of away) if (!m.has(n)) met++;
        return met / total;
      };
    },
  },
  {
    name: "zones apart",
    weight: 1,
    prepare: (state, request) => {
      const key = request.spreadBy;
      if (key === undefined) return null;
      // Replicas per zone value, from the service's replicas per node.
      const perZone = new Map<string, number>();
      for (const [n, count] of state.replicas(request.service)) {
        const zone = state.nodes[n].labels[key];
        if (zone !== undefined) perZone.set(zone, (perZone.get(zone) ?? 0) + count);
      }
      return (n) => {
        const zone = state.nodes[n].labels[key];
        return zone === undefined ? 0 : 1 / (1 + (perZone.get(zone) ?? 0));
      };
    },
  },
  {
    // A node that holds the release's slug starts it without a download: what a cold start from
    // zero waits for. Less than half a replica apart (1 → 0.5), so replicas still spread; among
    // equals (no replica anywhere: a wake from zero) it decides unless another node is far emptier.
    name: "warm slug",
    weight: 0.4,
    prepare: (state, request) => {
      const slug = request.slug;
      if (slug === undefined) return null;
      return (n) => (state.nodes[n].slugs?.has(slug) ? 1 : 0);
    },
  },
];

/** Places instances on a ClusterState, one at a time, keeping it up to date. */
export class Scheduler {
  readonly state: ClusterState;
  /** Where the next sampled scan starts (carry it from one Scheduler to the next so every node gets its turn). */
  cursor: number;

  constructor(state: ClusterState, cursor = 0) {
    this.state = state;
    this.cursor = state.nodes.length > 0 ? cursor % state.nodes.length : 0;
  }

  /**
   * Picks a node for one instance and records it there. With `preempt`, an
   * instance that fits nowhere may take the place of lower-criticality ones
   * (returned in `preempted`, already removed from the state).
   */
  place(request: PlacementRequest, options: { preempt?: boolean } = {}): Placement {
    const state = this.state;
    const count = state.nodes.length;
    const checks = prepareChecks(state, request, FILTERS);
    const scores: Score[] = [];
    const weights: number[] = [];
    for (const s of SCORERS) {
      const score = s.prepare(state, request);
      if (score !== null) {
        scores.push(score);
        weights.push(s.weight);
      }
    }
    const bound = request.node === undefined ? undefined : state.indexOf(request.node);
    const enough = request.strategy === "binpack" ? count : SAMPLE;
    let best = -1;
    let bestScore = Number.NEGATIVE_INFINITY;
    let feasible = 0;
    // A pet looks at its own node only.
    const start = bound ?? this.cursor;
    const steps = request.node !== undefined ? (bound === undefined ? 0 : 1) : count;
    let step = 0;
    scan: for (; step < steps && feasible < enough; step++) {
      const n = (start + step) % count;
      for (const check of checks) if (!check(n)) continue scan;
      feasible++;
      let score = 0;
      for (let k = 0; k < scores.length; k++) score += scores[k](n) * weights[k];
      if (score > bestScore) {
        bestScore = score;
        best = n;
      }
    }
    if (request.node === undefined && count > 0) this.cursor = (start + step) % count;
    if (best >= 0) {
      this.#record(request, best);
      return { node: state.nodes[best].name, preempted: [] };
    }
    if (options.preempt) {
      const taken = this.#preempt(request);
      if (taken !== null) return taken;
    }
    const reasons = explainNodes(state, request);
    return { node: null, reasons, message: explain(count, reasons) };
  }

  #record(request: PlacementRequest, node: number): void {
    this.state.add({
      id: request.id,
      service: request.service,
      node: this.state.nodes[node].name,
      resources: request.resources,
      criticality: request.criticality ?? "normal",
    });
  }

  /**
   * Finds the node where evicting the fewest instances of lower criticality
   * than the request makes room, burstable ones before guaranteed ones and
   * then the least critical first (victimOrder); evicts them and places it.
   */
  #preempt(request: PlacementRequest): Placement | null {
    const rank = RANK[request.criticality ?? "normal"];
    if (rank === 0) return null;
    const state = this.state;
    const checks = prepareChecks(
      state,
      request,
      FILTERS.filter((f) => !f.resource),
    );
    let best: { node: number; victims: PlacedInstance[]; cost: number } | null = null;
    scan: for (let n = 0; n < state.nodes.length; n++) {
      for (const check of checks) if (!check(n)) continue scan;
      let needMemory = request.resources.memory - state.memoryFree[n];
      let needCpu = request.resources.cpu - 1e-9 - state.cpuFree[n];
      const candidates = state
        .instancesOn(n)
        .filter((i) => !i.pet && RANK[i.criticality] < rank)
        .sort(victimOrder);
      const victims: PlacedInstance[] = [];
      for (const v of candidates) {
        if (needMemory <= 0 && needCpu <= 0) break;
        victims.push(v);
        needMemory -= v.resources.memory;
        needCpu -= v.resources.cpu;
      }
      if (needMemory > 0 || needCpu > 0) continue;
      // Fewest victims first, then the fewest guaranteed ones, then the least critical ones.
      const cost = victims.reduce(
        (s, v) => s + 100 + (qosClass(v.resources) === "guaranteed" ? 10 : 0) + RANK[v.criticality],
        0,
      );
      if (best === null || cost < best.cost) best = { node: n, victims, cost };
    }
    if (best === null) return null;
    for (const v of best.victims) state.remove(v.id);
    this.#record(request, best.node);
    return { node: state.nodes[best.node].name, preempted: best.victims };
  }
}

/**
 * The order preemption takes victims on a node in, as Kubernetes evicts:
 * burstable before guaranteed (a guaranteed instance was promised its
 * request), then the lowest criticality, then the largest memory request
 * (fewer victims).
 */
export function victimOrder(a: PlacedInstance, b: PlacedInstance): number {
  return (
    QOS_RANK[qosClass(a.resources)] - QOS_RANK[qosClass(b.resources)] ||
    RANK[a.criticality] - RANK[b.criticality] ||
    b.resources.memory - a.resources.memory
  );
}

const QOS_RANK = { burstable: 0, guaranteed: 1 } as const;

function prepareChecks(state: ClusterState, request: PlacementRequest, filters: readonly Filter[]): Check[] {
  const checks: Check[] = [];
  for (const f of filters) {
    const check = f.prepare(state, request);
    if (check !== null) checks.push(check);
  }
  return checks;
}

/**
 * The nodes a request could go to if they had room: those that pass every
 * filter before the resource ones (ready, cordoned, pet's node, moved off,
 * taints, node selector). Capacity explanations add up these nodes' free share.
 */
export function nodesWithRoomFor(state: ClusterState, request: PlacementRequest): number[] {
  const before = FILTERS.slice(
    0,
    FILTERS.findIndex((f) => f.resource),
  );
  const checks = prepareChecks(state, request, before);
  const nodes: number[] = [];
  scan: for (let n = 0; n < state.nodes.length; n++) {
    for (const check of checks) if (!check(n)) continue scan;
    nodes.push(n);
  }
  return nodes;
}

/**
 * How many copies of `request` fit on `state` as it is, without preempting
 * anything, counting up to `enough` at least (it stops there): a quick "do N
 * more fit?" for capacity checks. Undefined when copies are not independent
 * of each other (required affinity or anti-affinity, where one placement
 * changes where the next may go; a pet bound to its node).
 */
export function copiesThatFit(
  state: ClusterState,
  request: PlacementRequest,
  enough: number,
): number | undefined {
  if (
    request.node !== undefined ||
    request.affinity?.some((t) => t.required) ||
    request.antiAffinity?.some((t) => t.required)
  )
    return undefined;
  const { cpu, memory } = request.resources;
  let fit = 0;
  for (const n of nodesWithRoomFor(state, request)) {
    // The CPU filter's tolerance, k times over: free >= k × cpu - 1e-9.
    const byCpu = cpu > 0 ? Math.floor((state.cpuFree[n] + 1e-9) / cpu) : Number.POSITIVE_INFINITY;
    const byMemory = memory > 0 ? Math.floor(state.memoryFree[n] / memory) : Number.POSITIVE_INFINITY;
    fit += Math.max(0, Math.min(byCpu, byMemory));
    if (fit >= enough) return fit;
  }
  return fit;
}

/** Runs every filter over every node; each node counts under the first filter it fails. */
function explainNodes(state: ClusterState, request: PlacementRequest): Record<string, number> {
  const prepared = FILTERS.map((f) => ({ reason: f.reason, check: f.prepare(state, request) }));
  const counts = new Map<string, number>();
  for (let n = 0; n < state.nodes.length; n++) {
    for (const { reason, check } of prepared) {
      if (check !== null && !check(n)) {
        counts.set(reason, (counts.get(reason) ?? 0) + 1);
        break;
      }
    }
  }
  // In pipeline order, so equal counts are listed in the order the filters run.
  const reasons: Record<string, number> = {};
  for (const f of FILTERS) {
    const n = counts.get(f.reason);
    if (n !== undefined) reasons[f.reason] = n;
  }
  return reasons;
}

/** "5 nodes: 3 insufficient memory, 2 not ready" */
export function explain(total: number, reasons: Readonly<Record<string, number>>): string {
  if (total === 0) return "no nodes: start an agent (herd agent --server URL)";
  const parts = Object.entries(reasons)
    .sort((a, b) => b[1] - a[1])
    .map(([r, n]) => `${n} ${r}`);
  return `${total} node${total === 1 ? "" : "s"}: ${parts.join(", ")}`;
}

/** An instance holds its node's resources until it is stopped, failed or lost. */
export function holdsResources(i: Instance): boolean {
  return i.state !== "stopped" && i.state !== "failed" && !(i.state === "lost" && i.mode === "cattle");
}

/** The scheduler's view of a store node. */
export function schedulerNode(node: Node): SchedulerNode {
  return {
    name: node.name,
    labels: node.labels,
    allocatable: node.allocatable,
    ...(node.cpuOvercommit !== undefined ? { cpuOvercommit: node.cpuOvercommit } : {}),
    ready: node.state === "ready",
    schedulable: node.schedulable,
    taints: node.taints,
    ...(node.slugs && node.slugs.length > 0 ? { slugs: new Set(node.slugs) } : {}),
    ...(node.drivers ? { drivers: node.drivers } : {}),
  };
}
