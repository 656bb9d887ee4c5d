/**
 * Placement: pure logic. State in (nodes, instances already placed), a node
 * out — or the reasons no node fits, counted per filter so `herd ps` can say
 * "3 nodes: 2 not ready, 1 insufficient memory".
 *
 * The pipeline, cheap checks first:
 *   1. ready        — the node is ready (heartbeats arrive) and schedulable
 *   2. memory       — the instance's memory fits what is not yet allocated (never overcommitted)
 *   3. cpu          — the instance's CPU fits what is not yet allocated
 * then the score: the node with the most free capacity (memory and CPU share) wins.
 */

import type { Instance, Node, Resources } from "../model/objects.ts";

/** Names of the reasons a node is rejected. */
export const REJECT = {
  notReady: "not ready",
  unschedulable: "cordoned",
  memory: "insufficient memory",
  cpu: "insufficient cpu",
} as const;

export type RejectReason = (typeof REJECT)[keyof typeof REJECT];

export type Placement =
  | { node: string }
  | { node: null; reasons: Partial<Record<RejectReason, number>>; message: string };

/** What is already allocated on each node, from the instances that hold resources there. */
export function allocatedByNode(instances: Iterable<Instance>): Map<string, Resources> {
  const used = new Map<string, Resources>();
  for (const i of instances) {
    if (!i.node || !holdsResources(i)) continue;
    const u = used.get(i.node) ?? { cpu: 0, memory: 0 };
    u.cpu += i.run.resources.cpu;
    u.memory += i.run.resources.memory;
    used.set(i.node, u);
  }
  return used;
}

/** An instance holds its node's resources until it is stopped, failed or lost. */
export function holdsResources(i: Instance): boolean {
  return i.state !== "stopped" && i.state !== "failed" && !(i.state === "lost" && i.mode === "cattle");
}

/** Picks a node for one instance. `used` is updated when a node is chosen, so a batch can be placed in a loop. */
export function placeInstance(
  request: Resources,
  nodes: readonly Node[],
  used: Map<string, Resources>,
): Placement {
  const reasons: Partial<Record<RejectReason, number>> = {};
  const reject = (r: RejectReason) => {
    reasons[r] = (reasons[r] ?? 0) + 1;
  };
  let best: Node | undefined;
  let bestScore = Number.NEGATIVE_INFINITY;
  for (const node of nodes) {
    if (node.state !== "ready") {
      reject(REJECT.notReady);
      continue;
    }
    if (!node.schedulable) {
      reject(REJECT.unschedulable);
      continue;
    }
    const u = used.get(node.name) ?? { cpu: 0, memory: 0 };
    const freeMemory = node.allocatable.memory - u.memory;
    const freeCpu = node.allocatable.cpu - u.cpu;
    if (freeMemory < request.memory) {
      reject(REJECT.memory);
      continue;
    }
    if (freeCpu + 1e-9 < request.cpu) {
      reject(REJECT.cpu);
      continue;
    }
    // Most free capacity after placing, as the mean of the free shares.
    const score =
      (freeMemory - request.memory) / node.allocatable.memory +
      (freeCpu - request.cpu) / node.allocatable.cpu;
    if (score > bestScore) {
      bestScore = score;
      best = node;
    }
  }
  if (best) {
    const u = used.get(best.name) ?? { cpu: 0, memory: 0 };
    used.set(best.name, { cpu: u.cpu + request.cpu, memory: u.memory + request.memory });
    return { node: best.name };
  }
  return { node: null, reasons, message: explain(nodes.length, reasons) };
}

/** "5 nodes: 3 insufficient memory, 2 not ready" */
export function explain(total: number, reasons: Partial<Record<RejectReason, number>>): string {
  if (total === 0) return "no nodes: start an agent (herd agent --server URL)";
  const parts = Object.entries(reasons)
    .sort((a, b) => (b[1] ?? 0) - (a[1] ?? 0))
    .map(([r, n]) => `${n} ${r}`);
  return `${total} node${total === 1 ? "" : "s"}: ${parts.join(", ")}`;
}
