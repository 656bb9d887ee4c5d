/**
 * Asks a machine provider for machines when instances fit on no node, and
 * hands idle ones back. Each tick reads the store, asks the pure plan
 * (machine-plan.ts) what to do, and does it, one provider call at a time.
 *
 *   tick ─► planMachines ─► ask: join token (expires at joinBy, one use per machine) ─► MachineRequest stored
 *                                 ─► provider "request" ─► MachineRequested | MachineRequestFailed (token revoked)
 *                         ─► joined: MachineJoined           expired: MachineRequestFailed (token revoked)
 *                         ─► cordon: MachineIdle ─► release: provider "release" ─► node credential revoked, MachineReleased
 *                                                                              └─► MachineReleaseFailed (retried after the cooldown)
 *                         ─► remove: node object deleted once its agent is gone (NodeRemoved)
 *
 * Crash-safe: the request is stored before the provider is called, so a
 * restart never asks twice for the same shortfall (it waits for joins or the
 * deadline); what is kept in memory (when instances started waiting and
 * nodes went idle) only delays a step when lost.
 */

import { newId } from "../common/ids.ts";
import { Rounds } from "../common/rounds.ts";
import type { Token } from "../model/identity.ts";
import type { MachineNode, MachineRequest } from "../model/machines.ts";
import type { Instance, Node, Service } from "../model/objects.ts";
import { updateObject } from "../store/store.ts";
import type { Context } from "./context.ts";
import {
  idleNodes,
  type MachinePlan,
  type MachineSettings,
  planMachines,
  since,
  unschedulable,
} from "./machine-plan.ts";
import type { MachineProvider } from "./machine-provider.ts";
import { revokeTokens } from "./revoke-tokens.ts";

export interface MachineControllerOptions {
  provider: MachineProvider;
  settings: MachineSettings;
  /** The control plane's URL agents join, and its CA (PEM) when it serves HTTPS. */
  server: string;
  ca?: string;
  /** Stores a new join token (api/auth.ts createToken); returns its secret and public id. */
  createJoinToken(fields: {
    name: string;
    uses: number;
    expiresAt: string;
  }): Promise<{ secret: string; id: string }>;
  /** How often the world is looked at (default 1 s). */
  tickMs?: number;
}

export class MachineController {
  readonly #ctx: Context;
  readonly #o: MachineControllerOptions;
  #pendingSince = new Map<string, number>();
  #idleSince = new Map<string, number>();
  readonly #rounds = new Rounds(
    () => this.#tick(),
    (err) => this.#ctx.logger.warn("machine provider tick failed", { err }),
  );

  constructor(ctx: Context, options: MachineControllerOptions) {
    this.#ctx = ctx;
    this.#o = options;
  }

  start(): void {
    this.#rounds.start(this.#o.tickMs ?? 1000);
  }

  /** Stops ticking; waits for a tick in flight (and its provider call) to end. */
  stop(): Promise<void> {
    return this.#rounds.stop();
  }

  /** One look at the world and the steps it calls for; a tick in flight is not started twice. */
  tick(): Promise<void> {
    return this.#rounds.run();
  }

  async #tick(): Promise<void> {
    const { store, clock } = this.#ctx;
    const now = clock.now();
    const requests = (await store.list<MachineRequest>("machine")).items.map((o) => o.value);
    const nodes = (await store.list<Node>("node")).items.map((o) => o.value);
    const instances = (await store.list<Instance>("instance")).items.map((o) => o.value);
    const services = new Map((await store.list<Service>("service")).items.map((o) => [o.key, o.value]));
    const agentTokens = (await store.list<Token>("token")).items
      .map((o) => o.value)
      .filter((t) => t.kind === "agent");
    this.#pendingSince = since(
      this.#pendingSince,
      unschedulable(instances, services).map((i) => i.id),
      now,
    );
    this.#idleSince = since(this.#idleSince, idleNodes(requests, instances, nodes), now);
    const plan = planMachines({
      now,
      settings: this.#o.settings,
      requests,
      nodes,
      instances,
      services,
      agentTokens,
      pendingSince: this.#pendingSince,
      idleSince: this.#idleSince,
    });
    await this.#apply(plan, requests, now);
  }

  async #apply(plan: MachinePlan, requests: MachineRequest[], now: number): Promise<void> {
    const { events } = this.#ctx;
    const iso = new Date(now).toISOString();
    for (const { request, node } of plan.joined) {
      await this.#update(request, (r) => ({
        ...r,
        state: "joined",
        nodes: [...r.nodes, { name: node, joinedAt: iso, state: "joined" }],
      }));
      await events.record({
        node,
        reason: "MachineJoined",
        message: `node ${node} joined: a machine of request ${request} (${this.#o.provider.name})`,
      });
    }
    for (const id of plan.expired) {
      const r = requests.find((x) => x.id === id)!;
      const message = `no machine joined by ${r.joinBy}`;
      await this.#update(id, (x) => ({ ...x, state: "failed", failedAt: iso, message }));
      await this.#revokeJoinToken(r.joinToken);
      await events.record({
        reason: "MachineRequestFailed",
        type: "warning",
        message: `machine request ${id} (${this.#o.provider.name}): ${message}; its join token is revoked`,
      });
    }
    for (const at of plan.cordon) {
      await this.#setSchedulable(at.node, false);
      await this.#updateNode(at, { state: "releasing", cordonedAt: iso });
      await events.record({
        node: at.node,
        reason: "MachineIdle",
        message: `node ${at.node} had no instances for ${Math.round(this.#o.settings.idleMs / 1000)} s: cordoned, to be handed back`,
      });
    }
    for (const at of plan.uncordon) {
      await this.#setSchedulable(at.node, true);
      await this.#updateNode(at, { state: "joined", cordonedAt: undefined });
      await events.record({
        node: at.node,
        reason: "MachineKept",
        message: `node ${at.node} got an instance while it was being handed back: kept`,
      });
    }
    for (const at of plan.release) await this.#release(at, iso);
    for (const at of plan.remove) {
      const o = await this.#ctx.store.get<Node>("node", at.node);
      // Written meanwhile (a last heartbeat, the lost check): looked at again on the next tick.
      if (
        o &&
        !(await this.#ctx.store.delete("node", at.node, { expectRevision: o.revision }).catch(() => false))
      )
        continue;
      await this.#update(at.request, (r) => ({ ...r, nodes: r.nodes.filter((n) => n.name !== at.node) }));
      await events.record({
        node: at.node,
        reason: "NodeRemoved",
        message: `node ${at.node} removed: handed back to ${this.#o.provider.name} and its agent is gone`,
      });
    }
    for (const id of plan.forget) await this.#ctx.store.delete("machine", id).catch(() => {});
    if (plan.ask) await this.#ask(plan.ask, now);
  }

  /** Mints a join token, stores the request, then calls the provider (in that order: crash-safe). */
  async #ask(ask: NonNullable<MachinePlan["ask"]>, now: number): Promise<void> {
    const { store, events } = this.#ctx;
    const id = `m-${newId(8)}`;
    const joinBy = new Date(now + this.#o.settings.joinTimeoutMs).toISOString();
    const token = await this.#o.createJoinToken({
      name: `machine request ${id}`,
      uses: ask.machines,
      expiresAt: joinBy,
    });
    const request: MachineRequest = {
      id,
      state: "requested",
      requestedAt: new Date(now).toISOString(),
      joinToken: token.id,
      joinBy,
      machines: ask.machines,
      needs: ask.needs,
      nodes: [],
      message: "",
    };
    await store.put("machine", id, request, { expectRevision: 0 });
    const short = ask.needs
      .map(
        (n) =>
          `${n.instances} instance${n.instances === 1 ? "" : "s"} of ${n.services.map((s) => `${s.app}/${s.service}`).join(", ")}${
            Object.keys(n.labels).length
              ? ` (${Object.entries(n.labels)
                  .map(([k, v]) => `${k}=${v}`)
                  .join(", ")})`
              : ""
          }`,
      )
      .join("; ");
    try {
      const answer = await this.#o.provider.call({
        version: 1,
        action: "request",
        id,
        server: this.#o.server,
        ...(this.#o.ca ? { ca: this.#o.ca } : {}),
        joinToken: token.secret,
        joinBy,
        machines: ask.machines,
        needs: ask.needs,
      });
      if (answer.message) await this.#update(id, (r) => ({ ...r, message: answer.message! }));
      await events.record({
        reason: "MachineRequested",
        message: `asked ${this.#o.provider.name} for up to ${ask.machines} machine${ask.machines === 1 ? "" : "s"} (request ${id}): ${short} fit on no node${answer.message ? `; it said: ${answer.message}` : ""}`,
      });
    } catch (err) {
      const message = (err as Error).message;
      await this.#update(id, (r) => ({
        ...r,
        state: r.nodes.length > 0 ? r.state : "failed",
        failedAt: new Date(this.#ctx.clock.now()).toISOString(),
        message,
      }));
      await this.#revokeJoinToken(token.id);
      await events.record({
        reason: "MachineRequestFailed",
        type: "warning",
        message: `machine request ${id} for ${short}: ${message}; asked again after ${Math.round(this.#o.settings.cooldownMs / 1000)} s`,
      });
    }
  }

  /** Hands a cordoned, empty node back; on success its credential is revoked, so its agent stops for good. */
  async #release(at: { request: string; node: string }, iso: string): Promise<void> {
    const { events } = this.#ctx;
    try {
      const answer = await this.#o.provider.call({
        version: 1,
        action: "release",
        id: at.request,
        server: this.#o.server,
        node: at.node,
      });
      await this.#updateNode(at, { state: "released" });
      await this.#revokeNodeCredentials(at.node);
      await events.record({
        node: at.node,
        reason: "MachineReleased",
        message: `node ${at.node} handed back to ${this.#o.provider.name}${answer.message ? `: ${answer.message}` : ""}; its credential is revoked`,
      });
    } catch (err) {
      await this.#updateNode(at, { releaseFailedAt: iso });
      await events.record({
        node: at.node,
        reason: "MachineReleaseFailed",
        type: "warning",
        message: `node ${at.node} could not be handed back: ${(err as Error).message}; it stays cordoned and is tried again after ${Math.round(this.#o.settings.cooldownMs / 1000)} s`,
      });
    }
  }

  /** Applies `change` to a stored request, retrying on a concurrent write. */
  async #update(id: string, change: (r: MachineRequest) => MachineRequest): Promise<void> {
    await updateObject<MachineRequest>(this.#ctx.store, "machine", id, (o) => o && change(o.value));
  }

  async #updateNode(at: { request: string; node: string }, change: Partial<MachineNode>): Promise<void> {
    await this.#update(at.request, (r) => ({
      ...r,
      nodes: r.nodes.map((n) => {
        if (n.name !== at.node) return n;
        const next: MachineNode = { ...n, ...change };
        // Fields set to undefined are dropped, not stored as null.
        for (const k of Object.keys(next) as (keyof MachineNode)[]) if (next[k] === undefined) delete next[k];
        return next;
      }),
    }));
  }

  /** Cordons or uncordons a node (heartbeats write nodes too: retried on a conflict). */
  async #setSchedulable(name: string, schedulable: boolean): Promise<void> {
    await updateObject<Node>(this.#ctx.store, "node", name, (o) => o && { ...o.value, schedulable });
  }

  async #revokeJoinToken(id: string): Promise<void> {
    await this.#revokeWhere((t) => t.kind === "join" && t.id === id);
  }

  async #revokeNodeCredentials(node: string): Promise<void> {
    await this.#revokeWhere((t) => t.kind === "agent" && t.node === node);
  }

  async #revokeWhere(match: (t: Token) => boolean): Promise<void> {
    const { store, clock } = this.#ctx;
    await revokeTokens(store, match, "machine provider", new Date(clock.now()).toISOString());
  }
}
