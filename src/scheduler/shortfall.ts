/**
 * Whether a set of instances can be placed at all, and if not, why — in
 * numbers: "needs 6.0 CPU, 1.9 free on 1 node: vm 1.9 free of 1.9".
 *
 * Pure, like the scheduler: the caller builds the ClusterState it asks about
 * (for a rollout: today's nodes with everything that is on its way out left
 * out), this places every request on it and explains what did not fit.
 */

import { type ClusterState, cpuCapacity } from "./cluster-state.ts";
import { nodesWithRoomFor, type PlacementRequest, Scheduler } from "./scheduler.ts";

/** Instances that fit nowhere, of how many, and why. */
export interface Shortfall {
  unplaced: number;
  of: number;
  /** "9 of 12 instances cannot be placed: needs 6.0 CPU, 1.9 free on 1 node: vm 1.9 free of 1.9" */
  message: string;
}

/** Nodes named in a message at most; the rest are counted. */
const LISTED = 3;

/**
 * Places `requests` one by one on `state` (which it changes: pass a state
 * built for the question) and explains those that fit nowhere, or returns
 * undefined when all fit.
 */
export function findShortfall(
  state: ClusterState,
  requests: readonly PlacementRequest[],
): Shortfall | undefined {
  const cpuFree = Float64Array.from(state.cpuFree);
  const memoryFree = Float64Array.from(state.memoryFree);
  const scheduler = new Scheduler(state);
  const failed: { request: PlacementRequest; message: string; reasons: Record<string, number> }[] = [];
  for (const request of requests) {
    const p = scheduler.place(request, { preempt: true });
    if (p.node === null) failed.push({ request, message: p.message, reasons: p.reasons });
  }
  if (failed.length === 0) return undefined;
  const first = failed[0];
  const head = `${failed.length} of ${requests.length} instance${requests.length === 1 ? "" : "s"} cannot be placed`;
  const nodes = nodesWithRoomFor(state, first.request);
  const resourceShort = "insufficient cpu" in first.reasons || "insufficient memory" in first.reasons;
  if (nodes.length === 0 || !resourceShort)
    return { unplaced: failed.length, of: requests.length, message: `${head}: ${first.message}` };

  const need = requests.reduce(
    (sum, r) => ({ cpu: sum.cpu + r.resources.cpu, memory: sum.memory + r.resources.memory }),
    {
      cpu: 0,
      memory: 0,
    },
  );
  const free = nodes.reduce((sum, n) => ({ cpu: sum.cpu + cpuFree[n], memory: sum.memory + memoryFree[n] }), {
    cpu: 0,
    memory: 0,
  });
  const on = `on ${nodes.length} node${nodes.length === 1 ? "" : "s"}`;
  const parts: string[] = [];
  if (need.cpu > free.cpu + 1e-9) {
    parts.push(
      `needs ${cores(need.cpu)} CPU, ${cores(Math.max(0, free.cpu))} free ${on}: ${listNodes(state, nodes, cpuFree, "cpu")}`,
    );
  }
  if (need.memory > free.memory) {
    parts.push(
      `needs ${bytes(need.memory)} memory, ${bytes(Math.max(0, free.memory))} free ${on}: ${listNodes(state, nodes, memoryFree, "memory")}`,
    );
  }
  if (parts.length === 0) {
    // Enough in all, but not on any one node.
    const r = first.request.resources;
    const short = "insufficient cpu" in first.reasons ? "cpu" : "memory";
    parts.push(
      `each needs ${short === "cpu" ? `${cores(r.cpu)} CPU` : bytes(r.memory)}, more than ${nodes.length === 1 ? "the 1 node" : `any of ${nodes.length} nodes`} has free: ${listNodes(state, nodes, short === "cpu" ? cpuFree : memoryFree, short)}`,
    );
  }
  return { unplaced: failed.length, of: requests.length, message: `${head}: ${parts.join("; ")}` };
}

/** "vm 1.4 free of 1.9, n2 0.5 free of 4.0 and 3 more" — the freest first. */
function listNodes(
  state: ClusterState,
  nodes: number[],
  free: Float64Array,
  resource: "cpu" | "memory",
): string {
  const show = resource === "cpu" ? cores : bytes;
  const sorted = [...nodes].sort((a, b) => free[b] - free[a]);
  const listed = sorted
    .slice(0, LISTED)
    .map(
      (n) =>
        `${state.nodes[n].name} ${show(Math.max(0, free[n]))} free of ${show(resource === "cpu" ? cpuCapacity(state.nodes[n]) : state.nodes[n].allocatable.memory)}`,
    );
  const more = sorted.length - LISTED;
  return `${listed.join(", ")}${more > 0 ? ` and ${more} more` : ""}`;
}

/** Cores with one decimal, two when the second one matters: 6.0, 1.9, 0.25. */
export function cores(cpu: number): string {
  const hundredths = Math.round(cpu * 100);
  return hundredths % 10 === 0 ? (hundredths / 100).toFixed(1) : (hundredths / 100).toFixed(2);
}

/** 256 MiB, 1.5 GiB. */
export function bytes(n: number): string {
  const GiB = 1024 ** 3;
  return n >= GiB ? `${(n / GiB).toFixed(1)} GiB` : `${Math.round(n / 1024 ** 2)} MiB`;
}
