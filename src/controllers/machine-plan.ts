/**
 * Pure: what the machine controller does next, from the store's objects and
 * the time. When to ask the provider for machines and for what, which
 * requests' machines joined or never will, which idle machines to cordon,
 * hand back and remove.
 *
 *   unschedulable pending instances, for debounceMs ─► ask (one request open at a time, cooldownMs apart,
 *                                                        debounceMs after a machine joined, never more than
 *                                                        maxMachines of the provider's at once)
 *   agent token bought with a request's join token ─► joined          no join by joinBy ─► expired (failed)
 *   provider node without instances for idleMs ─► cordon ─► settleMs later, still empty ─► release ─► agent gone ─► remove
 *                                   an instance landed meanwhile ─► uncordon
 *
 * Nothing but requests' nodes is ever cordoned, released or removed, and
 * never a node with an instance on it.
 */

import type { Token } from "../model/identity.ts";
import type { MachineNeed, MachineRequest } from "../model/machines.ts";
import type { Instance, Node, Service } from "../model/objects.ts";
import { serviceKey } from "../model/objects.ts";

export interface MachineSettings {
  /** A provider's machine without instances this long is handed back. */
  idleMs: number;
  /** Instances must have fit nowhere this long before machines are asked for (a rollout frees room as it goes). */
  debounceMs: number;
  /** At least this long between two requests, and before a failed release is tried again. */
  cooldownMs: number;
  /** A request whose machines have not joined by then failed (its join token expires then). */
  joinTimeoutMs: number;
  /** The provider's machines (joined or asked for) at most at once. */
  maxMachines: number;
  /** Requests waiting for their first machine, at most. */
  maxOutstanding: number;
  /** A cordoned machine is handed back only after this long still empty (a placement in flight lands first). */
  settleMs: number;
}

export const DEFAULT_MACHINE_SETTINGS: MachineSettings = {
  idleMs: 10 * 60_000,
  debounceMs: 10_000,
  cooldownMs: 60_000,
  joinTimeoutMs: 10 * 60_000,
  maxMachines: 10,
  maxOutstanding: 1,
  settleMs: 2_000,
};

/** Everything a plan looks at. */
export interface MachineWorld {
  now: number;
  settings: MachineSettings;
  requests: readonly MachineRequest[];
  nodes: readonly Node[];
  instances: readonly Instance[];
  services: ReadonlyMap<string, Service>;
  /** Agent tokens (the node each was made for, and the join token that bought it: `createdBy` "join <id>"). */
  agentTokens: readonly Token[];
  /** When each unschedulable instance was first seen so (kept by the controller, see `since`). */
  pendingSince: ReadonlyMap<string, number>;
  /** When each provider node was first seen without instances. */
  idleSince: ReadonlyMap<string, number>;
}

/** A node of a request. */
export interface RequestNode {
  request: string;
  node: string;
}

export interface MachinePlan {
  /** Ask the provider for this many machines for these needs. */
  ask?: { machines: number; needs: MachineNeed[] };
  /** Nodes that joined with a request's join token and are not recorded yet. */
  joined: RequestNode[];
  /** Requests no machine joined by their deadline. */
  expired: string[];
  /** Idle provider nodes to cordon before they are handed back. */
  cordon: RequestNode[];
  /** Cordoned nodes an instance landed on meanwhile: keep them. */
  uncordon: RequestNode[];
  /** Cordoned, still-empty nodes to hand back. */
  release: RequestNode[];
  /** Handed-back nodes whose agent is gone: delete the node object. */
  remove: RequestNode[];
  /** Requests with nothing left to do (all machines gone, no more joins, cooldown over). */
  forget: string[];
}

/** The join token id an agent token was bought with, from its `createdBy` ("join <id>"). */
export const joinTokenOf = (t: Token): string | undefined =>
  t.kind === "agent" && t.createdBy?.startsWith("join ") ? t.createdBy.slice(5) : undefined;

/** Keeps the first-seen time of each key still present: `prev`'s when it had one, else now. */
export function since(
  prev: ReadonlyMap<string, number>,
  keys: Iterable<string>,
  now: number,
): Map<string, number> {
  const next = new Map<string, number>();
  for (const k of keys) next.set(k, prev.get(k) ?? now);
  return next;
}

/**
 * Pending instances no node can take, as the scheduler last said
 * (`Unschedulable`), whose service still wants them. Pets bound to their
 * node are left out: a new machine cannot hold their data.
 */
export function unschedulable(
  instances: readonly Instance[],
  services: ReadonlyMap<string, Service>,
): Instance[] {
  return instances.filter((i) => {
    if (i.desired !== "running" || i.state !== "pending" || i.node !== null || i.reason !== "Unschedulable")
      return false;
    if (i.mode === "pet" && i.moving?.to) return false;
    const svc = services.get(serviceKey(i.tenant, i.app, i.service));
    return svc !== undefined && svc.state !== "failed" && svc.state !== "destroying";
  });
}

/** Provider nodes with any instance object on them (running, starting, stopping: all hold the node). */
function occupied(instances: readonly Instance[]): Set<string> {
  const out = new Set<string>();
  for (const i of instances) if (i.node) out.add(i.node);
  return out;
}

/**
 * The nodes of the provider's requests that registered and have no
 * instance: the keys `idleSince` tracks (a machine is idle from when its
 * agent could take instances, not from when it traded its join token).
 */
export function idleNodes(
  requests: readonly MachineRequest[],
  instances: readonly Instance[],
  nodes: readonly Node[],
): string[] {
  const busy = occupied(instances);
  const registered = new Set(nodes.map((n) => n.name));
  return requests.flatMap((r) =>
    r.nodes
      .filter((n) => n.state !== "released" && !busy.has(n.name) && registered.has(n.name))
      .map((n) => n.name),
  );
}

/** Groups unschedulable instances by what a machine must offer them (labels and tolerations). */
export function machineNeeds(
  pending: readonly Instance[],
  services: ReadonlyMap<string, Service>,
): MachineNeed[] {
  const needs = new Map<string, MachineNeed>();
  for (const i of pending) {
    const svc = services.get(serviceKey(i.tenant, i.app, i.service))!;
    const labels = svc.spec.placement?.nodeSelector ?? {};
    const tolerations = svc.spec.placement?.tolerations ?? [];
    const key = JSON.stringify([Object.entries(labels).sort(), tolerations]);
    let need = needs.get(key);
    if (!need) {
      need = {
        instances: 0,
        cpu: 0,
        memory: 0,
        largest: { cpu: 0, memory: 0 },
        labels,
        tolerations,
        services: [],
      };
      needs.set(key, need);
    }
    const r = i.run.resources;
    need.instances++;
    need.cpu += r.cpu;
    need.memory += r.memory;
    need.largest = {
      cpu: Math.max(need.largest.cpu, r.cpu),
      memory: Math.max(need.largest.memory, r.memory),
    };
    const who = need.services.find(
      (s) => s.tenant === i.tenant && s.app === i.app && s.service === i.service,
    );
    if (who) who.instances++;
    else
      need.services.push({
        tenant: i.tenant,
        app: i.app,
        service: i.service,
        instances: 1,
        message: i.message,
      });
  }
  return [...needs.values()];
}

/** The next steps; see the module comment. */
export function planMachines(w: MachineWorld): MachinePlan {
  const s = w.settings;
  const plan: MachinePlan = {
    joined: [],
    expired: [],
    cordon: [],
    uncordon: [],
    release: [],
    remove: [],
    forget: [],
  };
  const nodes = new Map(w.nodes.map((n) => [n.name, n]));
  const busy = occupied(w.instances);

  // Joins: an agent token bought with a request's join token names a machine of that request.
  const byJoinToken = new Map(w.requests.map((r) => [r.joinToken, r]));
  for (const t of w.agentTokens) {
    const r = byJoinToken.get(joinTokenOf(t) ?? "");
    // A revoked credential is a machine handed back (or taken away): never a new join.
    if (r && !t.revokedAt && t.node && !r.nodes.some((n) => n.name === t.node))
      plan.joined.push({ request: r.id, node: t.node });
  }
  const joinedNow = new Set(plan.joined.map((j) => j.request));

  for (const r of w.requests) {
    // No machine by the deadline: the request failed (a provider that is still working on it is too late).
    if (r.state === "requested" && !joinedNow.has(r.id) && w.now >= Date.parse(r.joinBy))
      plan.expired.push(r.id);
    for (const n of r.nodes) {
      const at = { request: r.id, node: n.name };
      if (n.state === "joined") {
        const idle = w.idleSince.get(n.name);
        // A machine whose agent joined but never registered within the join timeout is handed back too.
        const neverCame = !nodes.has(n.name) && w.now - Date.parse(n.joinedAt) >= s.joinTimeoutMs;
        if (!busy.has(n.name) && ((idle !== undefined && w.now - idle >= s.idleMs) || neverCame))
          plan.cordon.push(at);
      } else if (n.state === "releasing") {
        if (busy.has(n.name)) plan.uncordon.push(at);
        else if (
          w.now - Date.parse(n.cordonedAt ?? r.requestedAt) >= s.settleMs &&
          (!n.releaseFailedAt || w.now - Date.parse(n.releaseFailedAt) >= s.cooldownMs)
        )
          plan.release.push(at);
      } else if (n.state === "released") {
        const node = nodes.get(n.name);
        // The agent is gone once the node stops heartbeating (its credential is revoked on release).
        if (!busy.has(n.name) && (!node || node.state === "lost")) plan.remove.push(at);
      }
    }
    // Forgotten once nothing is left of it: no node, no join to come, and (failed) the cooldown over.
    const over =
      r.nodes.length === 0 &&
      !joinedNow.has(r.id) &&
      (r.state === "failed"
        ? w.now - Date.parse(r.failedAt ?? r.requestedAt) >= s.cooldownMs
        : r.state === "joined" && w.now >= Date.parse(r.joinBy));
    if (over) plan.forget.push(r.id);
  }

  // Ask: instances that have fit nowhere for a while, no request open, the cooldown over, room in the budget.
  const pending = unschedulable(w.instances, w.services).filter((i) => {
    const first = w.pendingSince.get(i.id);
    return first !== undefined && w.now - first >= s.debounceMs;
  });
  if (pending.length === 0) return plan;
  const open = w.requests.filter(
    (r) => r.state === "requested" && !joinedNow.has(r.id) && !plan.expired.includes(r.id),
  );
  if (open.length >= s.maxOutstanding) return plan;
  const last = Math.max(0, ...w.requests.map((r) => Date.parse(r.requestedAt)));
  if (w.now - last < s.cooldownMs) return plan;
  // A machine that just joined may take them: give it the debounce before asking for more.
  const lastJoin = Math.max(0, ...w.requests.flatMap((r) => r.nodes.map((n) => Date.parse(n.joinedAt))));
  if (plan.joined.length > 0 || w.now - lastJoin < s.debounceMs) return plan;
  // The budget counts machines that joined and are not handed back, and what open requests may still bring.
  const live = w.requests.reduce((sum, r) => sum + r.nodes.filter((n) => n.state !== "released").length, 0);
  const coming = open.reduce((sum, r) => sum + Math.max(0, r.machines - r.nodes.length), 0);
  const room = s.maxMachines - live - coming - plan.joined.length;
  if (room <= 0) return plan;
  plan.ask = { machines: Math.min(room, pending.length), needs: machineNeeds(pending, w.services) };
  return plan;
}
