/**
 * Capacity: per node and per tenant, CPU and memory as the scheduler counts
 * them (allocatable, requested by the instances placed there, free) beside
 * what the agents measure (used). Pure: the store's objects and the nodes'
 * last heartbeat figures in, one report out (`GET /api/v1/capacity`,
 * routes/capacity.ts; `herd capacity`, `herd nodes`).
 *
 *   nodes ─┬─ allocatable ─────────────────────────────┐
 *          │                                            ├─► free = allocatable (CPU × overcommit) − requested (what placement can still use)
 *   instances placed (holding resources) ─► requested ─┘
 *   heartbeats (usage of running instances) ──────────► used (measured; absent when a node does not report)
 *   services × size ───────────────────────────────────► a tenant's units (what its quota counts)
 */

import { unitsOf } from "../controllers/quota.ts";
import type { Instance, Node, NodeState, Resources, Service, Tenant } from "../model/objects.ts";
import type { InstanceUsage, NodeStats } from "../model/protocol.ts";
import { cpuCapacity } from "../scheduler/cluster-state.ts";
import { holdsResources } from "../scheduler/scheduler.ts";

/** CPU in cores and memory in bytes, as measured: a part is absent when nothing reported it. */
export interface Measured {
  cpu?: number;
  memory?: number;
}

export interface NodeCapacity {
  name: string;
  state: NodeState;
  /** Takes new instances (not cordoned or draining, and ready). */
  schedulable: boolean;
  /** The machine. */
  capacity: Resources;
  /** What instances may be given: capacity minus the agent's reserve. */
  allocatable: Resources;
  /** How far CPU requests may exceed allocatable CPU here (1: not at all); memory never does. */
  cpuOvercommit: number;
  /** What the instances placed here asked for (every tenant's). */
  requested: Resources;
  /** allocatable (CPU: times cpuOvercommit) − requested: what placement can still give (negative when over). */
  free: Resources;
  /** What the instances running here use, as their agent measured it (its last reading). */
  used: Measured;
  /** The whole machine's use (herd, instances and everything else), when its agent reports it. */
  machine?: Measured;
  /** Instances placed here. */
  instances: number;
  /** The report's tenant's share of this node (only in a report for one tenant). */
  tenant?: TenantShare;
}

/** One tenant's instances on one node, or on all. */
export interface TenantShare {
  instances: number;
  requested: Resources;
  used: Measured;
}

export interface TenantCapacity extends TenantShare {
  name: string;
  /** Resource units its services hold (desired instances × size), what its quota counts. */
  units: number;
  /** Its quota in units, when it has one. */
  quota?: number;
  /** Its share per node, for the nodes it has instances on. */
  nodes: (TenantShare & { node: string })[];
}

export interface CapacityReport {
  /** The tenant the report is limited to; absent: every tenant's (a platform admin's view). */
  tenant?: string;
  nodes: NodeCapacity[];
  tenants: TenantCapacity[];
  /** The nodes summed up (ready nodes only: a node that is not ready takes nothing). */
  total: { allocatable: Resources; requested: Resources; free: Resources; used: Measured };
}

/** What the report is made of. */
export interface CapacityInput {
  nodes: readonly Node[];
  instances: readonly Instance[];
  services: readonly Service[];
  tenants: readonly Tenant[];
  /** The platform's resource unit (quotas count in it). */
  unit: Resources;
  /** A node's last heartbeat figures: its stats and its instances' usage by id. */
  report(node: string): { stats?: NodeStats; usage: ReadonlyMap<string, InstanceUsage> } | undefined;
  /** Limit the tenants to this one (a tenant member's view); absent: all of them. */
  only?: string;
}

/** Instance states whose process runs, so their usage is current. */
const RUNNING = new Set(["ready", "running"]);

/** Builds the report: every node, and every tenant with instances, services or a quota (or just `only`). */
export function capacityReport(input: CapacityInput): CapacityReport {
  const placed = input.instances.filter((i) => i.node !== null && holdsResources(i));
  const nodes = [...input.nodes]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((n) => nodeCapacity(n, placed, input));
  const names = new Set<string>();
  if (input.only !== undefined) names.add(input.only);
  else {
    for (const t of input.tenants) names.add(t.name);
    for (const i of placed) names.add(i.tenant);
    for (const s of input.services) names.add(s.tenant);
  }
  const tenants = [...names].sort().map((name) => tenantCapacity(name, placed, input));
  if (input.only !== undefined) {
    const mine = tenants[0];
    for (const n of nodes) {
      const share = mine.nodes.find((s) => s.node === n.name);
      n.tenant = share
        ? { instances: share.instances, requested: share.requested, used: share.used }
        : { instances: 0, requested: zero(), used: {} };
    }
  }
  const ready = nodes.filter((n) => n.state === "ready");
  return {
    ...(input.only !== undefined ? { tenant: input.only } : {}),
    nodes,
    tenants,
    total: {
      allocatable: sum(ready.map((n) => n.allocatable)),
      requested: sum(ready.map((n) => n.requested)),
      free: sum(ready.map((n) => n.free)),
      used: sumMeasured(ready.map((n) => n.used)),
    },
  };
}

function nodeCapacity(n: Node, placed: readonly Instance[], input: CapacityInput): NodeCapacity {
  const here = placed.filter((i) => i.node === n.name);
  const requested = sum(here.map((i) => i.run.resources));
  // A node that stopped reporting has no current figures.
  const report = n.state === "ready" ? input.report(n.name) : undefined;
  const out: NodeCapacity = {
    name: n.name,
    state: n.state,
    schedulable: n.state === "ready" && n.schedulable && !n.draining,
    capacity: n.capacity,
    allocatable: n.allocatable,
    cpuOvercommit: n.cpuOvercommit ?? 1,
    requested,
    free: round({
      cpu: cpuCapacity(n) - requested.cpu,
      memory: n.allocatable.memory - requested.memory,
    }),
    used: report ? measured(here, report.usage) : {},
    instances: here.length,
  };
  const machine = report?.stats && machineUse(report.stats);
  if (machine) out.machine = machine;
  return out;
}

function tenantCapacity(name: string, placed: readonly Instance[], input: CapacityInput): TenantCapacity {
  const mine = placed.filter((i) => i.tenant === name);
  const nodes: TenantCapacity["nodes"] = [];
  for (const node of [...new Set(mine.map((i) => i.node as string))].sort()) {
    const here = mine.filter((i) => i.node === node);
    const state = input.nodes.find((n) => n.name === node)?.state;
    const report = state === "ready" ? input.report(node) : undefined;
    nodes.push({
      node,
      instances: here.length,
      requested: sum(here.map((i) => i.run.resources)),
      used: report ? measured(here, report.usage) : {},
    });
  }
  const units = input.services
    .filter((s) => s.tenant === name)
    .reduce((total, s) => total + s.instances * unitsOf(s.spec.resources, input.unit), 0);
  const quota = input.tenants.find((t) => t.name === name)?.quota?.units;
  return {
    name,
    instances: mine.length,
    requested: sum(nodes.map((s) => s.requested)),
    used: sumMeasured(nodes.map((s) => s.used)),
    units: Math.round(units * 100) / 100,
    ...(quota !== undefined ? { quota } : {}),
    nodes,
  };
}

/** The measured use of the running ones among `instances`: a part is absent when none of them reported it. */
function measured(instances: readonly Instance[], usage: ReadonlyMap<string, InstanceUsage>): Measured {
  return sumMeasured(
    instances
      .filter((i) => RUNNING.has(i.state))
      .map((i) => {
        const u = usage.get(i.id);
        return { cpu: u?.cpuCores, memory: u?.memoryBytes };
      }),
  );
}

/** The machine's own use: busy cores, and memory in use (total − available). */
function machineUse(stats: NodeStats): Measured | undefined {
  const out: Measured = {};
  if (stats.cpuBusyCores !== undefined) out.cpu = stats.cpuBusyCores;
  if (stats.memory) out.memory = stats.memory.totalBytes - stats.memory.availableBytes;
  return out.cpu === undefined && out.memory === undefined ? undefined : out;
}

const zero = (): Resources => ({ cpu: 0, memory: 0 });

function sum(list: readonly Resources[]): Resources {
  const out = zero();
  for (const r of list) {
    out.cpu += r.cpu;
    out.memory += r.memory;
  }
  return round(out);
}

function sumMeasured(list: readonly Measured[]): Measured {
  const out: Measured = {};
  for (const m of list) {
    if (m.cpu !== undefined) out.cpu = (out.cpu ?? 0) + m.cpu;
    if (m.memory !== undefined) out.memory = (out.memory ?? 0) + m.memory;
  }
  if (out.cpu !== undefined) out.cpu = Math.round(out.cpu * 1000) / 1000;
  return out;
}

/** CPU to a thousandth of a core (sums of tenths drift), memory in whole bytes. */
function round(r: Resources): Resources {
  return { cpu: Math.round(r.cpu * 1000) / 1000, memory: Math.round(r.memory) };
}
