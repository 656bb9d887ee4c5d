/**
 * Nodes and what their agents report.
 *
 *   agent ──heartbeat(status)──► handleHeartbeat ──► Node + Instance states (+ Events)
 *         ◄──reply(desired)────┘
 *   every 250 ms: checkNodes ──► ready → not_ready → lost ──► instances lost (cattle replaced by the service controller)
 *                 (silence counts from the last answer; a tick that comes late
 *                  excuses every node that long; most nodes silent at once holds
 *                  off for a while: a server behind does not call healthy nodes lost)
 *
 * A big cluster's heartbeats are spread out (after Nomad's
 * max_heartbeats_per_second): the interval the reply asks for is the
 * settings' one, stretched so that all nodes together send at most
 * HEARTBEATS_PER_S (1,000 nodes: every 5 s), and the silence that makes a node
 * not ready or lost stretches with it. The agent also keeps a long poll open
 * (GET /nodes/:name/wait) that makes it heartbeat at once when what it should
 * run changes, so a longer interval does not delay new instances.
 *
 * The time of the last heartbeat is kept in memory (a store write per
 * heartbeat would wake every watcher every second); the Node object is
 * written when something changes, and at most every few seconds otherwise.
 */

import type { Instance, InstanceState, Node, Service } from "../model/objects.ts";
import type { DesiredInstance, Heartbeat, HeartbeatReply, InstanceStatus } from "../model/protocol.ts";
import { bytes } from "../scheduler/shortfall.ts";
import type { StoredObject } from "../store/store.ts";
import type { Context } from "./context.ts";
import type { EventInput } from "./events.ts";
import { orphanVolumes } from "./orphan-volumes.ts";

/**
 * How often lastHeartbeat is written to the store when nothing else changed:
 * every 5 s, or less often in a big cluster, so that these writes stay under
 * PERSIST_HEARTBEATS_PER_S in all (1,000 nodes: every 50 s). Liveness is
 * judged from the time kept in memory; the stored time is for display and
 * for a restarted server.
 */
const PERSIST_HEARTBEAT_MS = 5000;
const PERSIST_HEARTBEATS_PER_S = 20;

/** At most this many heartbeats per second from all nodes together (see heartbeatInterval). */
export const HEARTBEATS_PER_S = 200;

/**
 * The heartbeat interval for a cluster of `nodes`: `baseMs` (the settings'),
 * stretched (in steps of 100 ms) so that all nodes together heartbeat at most
 * HEARTBEATS_PER_S times a second.
 */
export function heartbeatInterval(baseMs: number, nodes: number): number {
  return Math.max(baseMs, Math.ceil((nodes * 1000) / HEARTBEATS_PER_S / 100) * 100);
}

/**
 * With at least this many nodes, more than half of them silent at once holds
 * off their not_ready/lost (the server is more likely behind than they dead),
 * for at most this many lost timeouts.
 */
const MASS_SILENCE_MIN_NODES = 3;
const MASS_SILENCE_HOLD_LOST_TIMEOUTS = 2;

export class NodeController {
  readonly #ctx: Context;
  readonly #lastSeen = new Map<string, number>();
  #startedAt: number;
  #checking = false;
  /** Since when most nodes have been silent at once (see checkNodes). */
  #massSilenceSince: number | undefined;
  #massSilenceWarned = 0;
  /** The longest interval replies asked for lately, and until when it counts (see #interval). */
  #told = { ms: 0, until: 0 };
  /** Instance transitions heartbeats reported, waiting to be recorded together (settings.eventBatchMs). */
  #transitions: EventInput[] = [];
  #transitionsTimer: NodeJS.Timeout | undefined;

  constructor(ctx: Context) {
    this.#ctx = ctx;
    this.#startedAt = ctx.clock.now();
  }

  /**
   * Records the instance transitions of heartbeats: at once, or (with
   * settings.eventBatchMs) together with those of the next heartbeats within
   * that window, one event per service and reason (EventRecorder.recordAll).
   * Each heartbeat of a node brings one transition per service, so a scale
   * of 100 services over 1,000 nodes wrote an event per instance; in windows it
   * writes one per service. The instances' states are written before the
   * reply either way: a window's events are what a crash can lose.
   */
  #record(transitions: EventInput[]): Promise<void> {
    const ms = this.#ctx.settings.eventBatchMs ?? 0;
    if (ms <= 0) return this.#ctx.events.recordAll(transitions);
    this.#transitions.push(...transitions);
    this.#transitionsTimer ??= setTimeout(() => void this.flushEvents(), ms);
    return Promise.resolve();
  }

  /** Records the transitions a window holds now (the window's end, or the controllers stopping). */
  async flushEvents(): Promise<void> {
    clearTimeout(this.#transitionsTimer);
    this.#transitionsTimer = undefined;
    const batch = this.#transitions;
    this.#transitions = [];
    if (batch.length > 0) await this.#ctx.events.recordAll(batch);
  }

  /** Forgets heartbeat times seen so far: a server starting to lead gives every node a full timeout. */
  restartClock(): void {
    this.#lastSeen.clear();
    this.#startedAt = this.#ctx.clock.now();
  }

  /**
   * The server itself was `ms` late (its timers fired late: the event loop was
   * busy, e.g. behind on commits), so heartbeats that arrived meanwhile may
   * still wait unread: nobody's silence during that time counts against it.
   */
  excuse(ms: number): void {
    if (!(ms > 0)) return;
    const now = this.#ctx.clock.now();
    for (const [name, seen] of this.#lastSeen) this.#lastSeen.set(name, Math.min(now, seen + ms));
    this.#startedAt = Math.min(now, this.#startedAt + ms);
  }

  /**
   * The heartbeat of `name` was answered: its next one can come only after
   * this, so its silence counts from here (a server slow to answer does not
   * make a node look silent).
   */
  answered(name: string): void {
    if (this.#lastSeen.has(name)) this.#lastSeen.set(name, this.#ctx.clock.now());
  }

  /** Writes the node as this heartbeat tells it (when something changed, or now and then), with its events. */
  async #recordNode(name: string, hb: Heartbeat, now: number): Promise<void> {
    const { store, events } = this.#ctx;
    const nowIso = new Date(now).toISOString();
    // The informer, synced: as fresh as a store read, without a parse (writes still carry the revision read).
    await this.#ctx.informer.sync();
    const existing = this.#ctx.informer.get<Node>("node", name);
    const prev = existing?.value;
    const node: Node = {
      name,
      address: hb.address,
      labels: hb.labels,
      capacity: hb.capacity,
      allocatable: hb.allocatable ?? hb.capacity,
      ...(hb.cpuOvercommit !== undefined ? { cpuOvercommit: hb.cpuOvercommit } : {}),
      ...(hb.taints && hb.taints.length > 0 ? { taints: hb.taints } : {}),
      state: "ready",
      lastHeartbeat: nowIso,
      registeredAt: prev?.registeredAt ?? nowIso,
      agentVersion: hb.agentVersion,
      isolation: hb.isolation,
      // Operator decisions (cordon, drain) outlive the heartbeats that rewrite the rest.
      schedulable: prev?.schedulable ?? true,
      ...(prev?.draining ? { draining: true } : {}),
      ...(hb.metricsUrl ? { metricsUrl: hb.metricsUrl } : {}),
      ...(hb.slugs && hb.slugs.length > 0 ? { slugs: [...hb.slugs].sort() } : {}),
      ...(hb.volumes && hb.volumes.length > 0 ? { volumes: [...hb.volumes].sort() } : {}),
      ...(hb.drivers && hb.drivers.length > 0 ? { drivers: hb.drivers } : {}),
      ...(hb.driverIsolation ? { driverIsolation: hb.driverIsolation } : {}),
      ...(hb.instancePorts
        ? { instancePorts: { min: hb.instancePorts.min, max: hb.instancePorts.max } }
        : {}),
    };
    const changed =
      prev?.state !== "ready" ||
      prev.address !== node.address ||
      JSON.stringify([
        prev.labels,
        prev.capacity,
        prev.allocatable,
        prev.cpuOvercommit,
        prev.taints,
        prev.isolation,
        prev.agentVersion,
        prev.metricsUrl,
        prev.slugs,
        prev.volumes,
        prev.drivers,
        prev.driverIsolation,
        prev.instancePorts,
      ]) !==
        JSON.stringify([
          node.labels,
          node.capacity,
          node.allocatable,
          node.cpuOvercommit,
          node.taints,
          node.isolation,
          node.agentVersion,
          node.metricsUrl,
          node.slugs,
          node.volumes,
          node.drivers,
          node.driverIsolation,
          node.instancePorts,
        ]);
    const persistMs = Math.max(
      PERSIST_HEARTBEAT_MS,
      (this.#ctx.informer.count("node") / PERSIST_HEARTBEATS_PER_S) * 1000,
    );
    if (changed || now - Date.parse(prev.lastHeartbeat) > persistMs) {
      await store.put("node", name, node, { expectRevision: existing?.revision ?? 0 });
      if (!prev) {
        await events.record({
          node: name,
          reason: "NodeRegistered",
          message: `node ${name} joined at ${hb.address}`,
        });
        if (hb.isolation.cgroups === "none") {
          await events.record({
            node: name,
            reason: "NoIsolation",
            type: "warning",
            message: `node ${name}: instances run without resource limits (${hb.isolation.reason ?? "no cgroups"})`,
          });
        }
        if (hb.isolation.missing?.length) {
          await events.record({
            node: name,
            reason: "NoSandbox",
            type: "warning",
            message: `node ${name}: instances are not kept from each other or the platform (${hb.isolation.missing.join("; ")})`,
          });
        }
      } else if (prev.state !== "ready") {
        await events.record({
          node: name,
          reason: "NodeReady",
          message: `node ${name} is back (was ${prev.state})`,
        });
      }
    }
  }

  /** Applies one heartbeat and answers with the node's desired instances. */
  async handleHeartbeat(name: string, hb: Heartbeat): Promise<HeartbeatReply> {
    const now = this.#ctx.clock.now();
    this.#lastSeen.set(name, now);
    // An operator's write (cordon, drain) between the read and the write: read again and retry,
    // rather than answer the agent 409 for something it did not do.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#recordNode(name, hb, now);
        break;
      } catch (err) {
        if ((err as { code?: string }).code !== "conflict" || attempt >= 3) throw err;
      }
    }

    const statuses = new Map(hb.instances.map((s) => [s.id, s]));
    // What this node holds, from the informer's node index: a heartbeat costs what its node runs.
    const mine = this.#ctx.informer.by<Instance>("instance", "node", name);
    // The instances' new states are written together (one store transaction for the lot),
    // then their events (one per service and reason: EventRecorder.recordAll).
    const transitions: EventInput[] = [];
    const current = await Promise.all(
      mine.map(async (o) => {
        let status = statuses.get(o.value.id);
        if (
          !status &&
          (o.value.state === "ready" || o.value.state === "running") &&
          o.value.desired === "running"
        ) {
          // The agent no longer has a process it ran (its data dir was wiped, or it was replaced).
          status = {
            id: o.value.id,
            generation: o.value.generation,
            state: "exited",
            message: "the agent no longer has it",
          };
        }
        return status ? ((await this.#applyStatus(o, status, transitions)) ?? o) : o;
      }),
    ).finally(() => this.#record(transitions));
    const reply: DesiredInstance[] = [];
    for (const o of current) {
      const i = o.value;
      const draining =
        i.desired === "stopped" && i.drainUntil !== undefined && Date.parse(i.drainUntil) > now;
      const action = i.desired === "running" || draining ? "run" : "stop";
      // A pet of an app being destroyed: its data goes with it (a new app of that name starts empty).
      const discard =
        action === "stop" &&
        i.mode === "pet" &&
        this.#ctx.informer.get<Service>("service", `${i.tenant}/${i.app}/${i.service}`)?.value.state ===
          "destroying";
      reply.push({
        id: i.id,
        app: i.app,
        service: i.service,
        tenant: i.tenant,
        release: i.release,
        mode: i.mode,
        generation: i.generation,
        action,
        run: i.run,
        ...(discard ? { discardData: true } : {}),
        ...(action === "run" && i.run.secrets ? await this.#secretEnv(i) : {}),
      });
    }
    const intervalMs = this.#interval();
    const discardVolumes = orphanVolumes(
      hb.volumes ?? [],
      (id) => this.#ctx.informer.get<Instance>("instance", id)?.value.node === name,
      // An app lives while it has services (the informer keeps services, not apps).
      (tenant, app) => this.#ctx.informer.by("service", "app", `${tenant}/${app}`).length > 0,
      (tenant, app) => this.#ctx.informer.get("app_tombstone", `${tenant}/${app}`) !== undefined,
    );
    return {
      instances: reply,
      intervalMs,
      ...(discardVolumes.length > 0 ? { discardVolumes } : {}),
      ...(intervalMs > this.#ctx.settings.heartbeatMs ? { minIntervalMs: intervalMs } : {}),
    };
  }

  /**
   * The interval replies ask for now (heartbeatInterval); remembers it, so that
   * silence is judged by the longest interval an agent may still be waiting out.
   */
  #interval(): number {
    const now = this.#ctx.clock.now();
    const ms = heartbeatInterval(this.#ctx.settings.heartbeatMs, this.#ctx.informer.count("node"));
    if (ms >= this.#told.ms || now > this.#told.until) this.#told = { ms, until: now + 2 * ms };
    return ms;
  }

  /** The silence after which a node is not ready, and lost: the settings', stretched with the interval. */
  #timeouts(): { notReadyMs: number; lostMs: number } {
    const { settings } = this.#ctx;
    const now = this.#ctx.clock.now();
    const ms = Math.max(
      heartbeatInterval(settings.heartbeatMs, this.#ctx.informer.count("node")),
      now <= this.#told.until ? this.#told.ms : 0,
    );
    const stretch = ms / settings.heartbeatMs;
    return { notReadyMs: settings.nodeNotReadyMs * stretch, lostMs: settings.nodeLostMs * stretch };
  }

  /**
   * The values of an instance's secrets, decrypted for its agent (the caller
   * is this node's authenticated agent): they travel in this reply only.
   */
  async #secretEnv(i: Instance): Promise<Pick<DesiredInstance, "secretEnv" | "secretError">> {
    const env: Record<string, string> = {};
    for (const [variable, pin] of Object.entries(i.run.secrets ?? {})) {
      try {
        env[variable] = await this.#ctx.secrets.value(i.tenant, i.app, pin.secret, pin.version);
      } catch (err) {
        return { secretError: `env ${variable}: ${(err as Error).message}` };
      }
    }
    return { secretEnv: env };
  }

  /** Moves an instance's state to what its agent saw; adds the transition's event to `events`. */
  async #applyStatus(
    o: StoredObject<Instance>,
    s: InstanceStatus,
    events: EventInput[],
  ): Promise<StoredObject<Instance> | undefined> {
    const { store } = this.#ctx;
    for (let attempt = 0; attempt < 3; attempt++) {
      const i = o.value;
      // A report about an older generation (a pet being restarted) says nothing about the new one.
      if (s.generation !== i.generation) return o;
      const next = nextState(i, s);
      const facts = { port: s.port ?? i.port, pid: s.pid ?? i.pid, startedAt: s.startedAt ?? i.startedAt };
      if (!next && facts.port === i.port && facts.pid === i.pid) return o;
      const updated: Instance = { ...i, ...facts };
      // Its startup deadline counts from the restart, not from the start before.
      if (next?.reason === "Restarting") updated.startedAt = new Date(this.#ctx.clock.now()).toISOString();
      if (next) {
        updated.state = next.state;
        updated.reason = next.reason;
        updated.message = next.message;
        if (s.logTail) updated.logTail = s.logTail;
        if (s.exitCode !== undefined) updated.exitCode = s.exitCode;
      }
      try {
        const saved = await store.put("instance", o.key, updated, { expectRevision: o.revision });
        if (next) {
          events.push({
            at: this.#ctx.clock.now(),
            tenant: i.tenant,
            app: i.app,
            service: i.service,
            instance: i.id,
            node: i.node ?? undefined,
            reason: next.reason,
            type: next.state === "crashed" ? "warning" : "normal",
            message: `${i.id}: ${i.state} → ${next.state}${next.message ? ` (${next.message})` : ""}`,
            details: next.state === "crashed" ? s.logTail : undefined,
          });
        }
        return saved;
      } catch (err) {
        if ((err as { code?: string }).code !== "conflict") throw err;
        const again = await store.get<Instance>("instance", o.key);
        if (!again) return undefined;
        o = again;
      }
    }
    return o;
  }

  /** Marks nodes whose heartbeats stopped as not ready, then lost; their instances as lost. */
  async checkNodes(): Promise<void> {
    // One check at a time: a check slowed by its writes is not run twice over.
    if (this.#checking) return;
    this.#checking = true;
    try {
      await this.#checkNodes();
    } finally {
      this.#checking = false;
    }
  }

  async #checkNodes(): Promise<void> {
    const { store, clock, events } = this.#ctx;
    const now = clock.now();
    await this.#ctx.informer.sync();
    const { notReadyMs, lostMs } = this.#timeouts();
    const changes: { o: StoredObject<Node>; state: "not_ready" | "lost"; silence: number }[] = [];
    let counted = 0;
    let silent = 0;
    for (const o of this.#ctx.informer.list<Node>("node")) {
      const n = o.value;
      // After a server restart, give agents a full timeout to check in again.
      const seen = this.#lastSeen.get(n.name) ?? Math.max(Date.parse(n.lastHeartbeat), this.#startedAt);
      const silence = now - seen;
      const state = silence > lostMs ? "lost" : silence > notReadyMs ? "not_ready" : "ready";
      if (n.state !== "lost") {
        counted++;
        if (state !== "ready") silent++;
      }
      if (state === n.state || (state === "ready" && !this.#lastSeen.has(n.name))) continue;
      if (state === "ready") continue; // only heartbeats make a node ready
      if (n.state === "lost") continue; // lost stays lost until a heartbeat
      changes.push({ o, state, silence });
    }
    // Most nodes silent at once: more likely this server is behind (or cut off) than most
    // machines died together. Hold off, for at most MASS_SILENCE_HOLD_LOST_TIMEOUTS timeouts.
    if (counted >= MASS_SILENCE_MIN_NODES && silent > counted / 2) {
      this.#massSilenceSince ??= now;
      if (now - this.#massSilenceSince < lostMs * MASS_SILENCE_HOLD_LOST_TIMEOUTS) {
        if (now - this.#massSilenceWarned > lostMs) {
          this.#massSilenceWarned = now;
          this.#ctx.logger.warn("most nodes are silent at once: holding off calling them lost", {
            silent,
            nodes: counted,
          });
        }
        return;
      }
    } else {
      this.#massSilenceSince = undefined;
    }
    for (const { o, state, silence } of changes) {
      const n = o.value;
      await store.put("node", n.name, { ...n, state }, { expectRevision: o.revision });
      await events.record({
        node: n.name,
        reason: state === "lost" ? "NodeLost" : "NodeNotReady",
        type: "warning",
        message: `node ${n.name}: no heartbeat for ${Math.round(silence / 100) / 10}s, ${state === "lost" ? "lost" : "not ready"}`,
      });
      if (state === "lost") await this.#loseInstances(n.name);
    }
  }

  async #loseInstances(node: string): Promise<void> {
    const { store, events } = this.#ctx;
    await this.#ctx.informer.sync();
    for (const o of this.#ctx.informer.by<Instance>("instance", "node", node)) {
      const i = o.value;
      if (i.state === "stopped" || i.state === "lost") continue;
      await store.put(
        "instance",
        o.key,
        { ...i, state: "lost", reason: "NodeLost", message: `node ${node} is lost` },
        { expectRevision: o.revision },
      );
      await events.record({
        tenant: i.tenant,
        app: i.app,
        service: i.service,
        instance: i.id,
        node,
        reason: "InstanceLost",
        type: "warning",
        message:
          i.mode === "pet"
            ? `pet ${i.id} is on lost node ${node}; it waits for the node to return (or move it by hand)`
            : `${i.id} was on lost node ${node}; it will be replaced`,
      });
    }
  }
}

/** The instance state an agent report implies, or undefined when nothing changes. */
export function nextState(
  i: Instance,
  s: InstanceStatus,
): { state: InstanceState; reason: string; message: string } | undefined {
  const to = (state: InstanceState, reason: string, message = "") =>
    state === i.state ? undefined : { state, reason, message };
  if (i.desired === "stopped") {
    if (s.state === "stopped" || s.state === "exited" || s.state === "failed")
      return to("stopped", "Stopped", "");
    return undefined;
  }
  // A crashed instance stays crashed until the controller acts (replace or restart).
  if (i.state === "crashed" || i.state === "failed") return undefined;
  switch (s.state) {
    case "starting":
      return i.state === "lost" ? to("provisioning", "NodeBack") : undefined;
    case "up":
      return i.state === "running"
        ? undefined
        : to("ready", "Started", s.pid ? `pid ${s.pid}, port ${s.port}` : "");
    case "healthy":
      return to("running", "Healthy", "passed its health check");
    case "unhealthy":
      return to("crashed", "Unhealthy", s.message ?? "failed its health checks");
    case "exited":
      return s.evicted ? to("crashed", "Evicted", s.evicted) : to("crashed", "Exited", describeExit(s, i));
    case "failed":
      return to("crashed", "StartFailed", s.message ?? "could not be started");
    case "stopped":
      // Stopped by its node's herd, not by a crash (herd up shutting down with its apps): the
      // agent starts a stopped instance again, same generation, once it hears it should run.
      return to("provisioning", "Restarting", "stopped when herd on its node shut down; starting it again");
  }
}

function describeExit(s: InstanceStatus, i: Instance): string {
  // The kernel says so: whatever the main process saw (a shell reports its child's kill as code 137).
  if (s.oomKilled)
    return `killed for memory: over its ${bytes(i.run.resources.memoryLimit ?? i.run.resources.memory)} limit (the kernel's OOM killer)`;
  if (s.signal) return `killed by ${s.signal}`;
  // Unknown (an adopted process is not the agent's child): the agent's message says why.
  if (s.exitCode === null || s.exitCode === undefined) return s.message ?? "exit status unknown";
  return `exited with code ${s.exitCode}`;
}
