/**
 * The node agent: one heartbeat round trip carries this node's instance
 * statuses up and its desired instances down; the agent makes the node match
 * (through a RuntimeDriver), probes health, and ships logs. Stopping or
 * crashing the agent leaves the instances running; the next agent adopts them.
 *
 * The layout of its data dir: agent-layout.ts.
 */

import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { HEDGE } from "../common/hedge.ts";
import { type Logger, silentLogger } from "../common/log.ts";
import { type MetricsServer, startMetricsServer } from "../common/metrics-server.ts";
import { type ServerList, serversOf } from "../common/server-list.ts";
import { InstanceConfigFeed, sighupGroup } from "../config-center/agent-feed.ts";
import { emptyConfig } from "../config-center/instance-files.ts";
import type { DesiredInstance, Heartbeat, HeartbeatReply, InstanceStatus } from "../model/protocol.ts";
import { AgentLayout, readAgentVersion } from "./agent-layout.ts";
import { AgentMetrics } from "./agent-metrics.ts";
import { type AgentOptions, allocatableOf, capacityOf, DEFAULT_CPU_OVERCOMMIT } from "./agent-options.ts";
import { followChanges } from "./change-wait.ts";
import type { Containers } from "./containers.ts";
import { ControlPlaneCalls } from "./control-plane-calls.ts";
import { type InstanceProcess, stopRunning } from "./driver.ts";
import { DriverSet } from "./driver-set.ts";
import { DEFAULT_EVICTION_MEMORY, Evictor } from "./eviction.ts";
import { protectedEndpoints } from "./firewall.ts";
import { HeartbeatPacer } from "./heartbeat-pacer.ts";
import { parseHeartbeatReply } from "./heartbeat-reply.ts";
import { instanceEnv, internalServiceEnv } from "./instance-env.ts";
import { refusedCredential, revokedAnswer } from "./join.ts";
import { LogShipper } from "./log-shipper.ts";
import { type Managed, newManaged, RUNNING, toStatus } from "./managed-instance.ts";
import { InstanceNetworkPolicy } from "./network-policy.ts";
import { STATS_MS, StatsReader, type StatsReading } from "./node-stats.ts";
import { DEFAULT_PORT_RANGE, PortAllocator } from "./ports.ts";
import { startProbeLoop, stopProbeLoop } from "./probe-loop.ts";
import { ProcessDriver } from "./process-driver.ts";
import { recordedExitCode } from "./run-exit.ts";
import { removeTree } from "./sandbox.ts";
import { isolateModuleScope, SlugCache } from "./slugs.ts";
import { startTelemetryRelay, type TelemetryRelay } from "./telemetry-relay.ts";
import { traceDefaults } from "./trace-defaults.ts";

const STOP_GRACE_MS = 10_000;
// How long Agent.stop waits for starts and stops in progress (a stop may take STOP_GRACE_MS).
const STOP_WAIT_MS = STOP_GRACE_MS + 5000;
const TAIL_LINES = 20;
const STATUS_DEBOUNCE_MS = 20;
/**
 * The CPU ceiling (cores) of an instance with a lower `cpuLimit` until its
 * first passed health check (a start boost, as Cloud Run's): a Node app's
 * start is CPU-bound, and a quarter core makes it several times slower;
 * memory is never boosted. Instances without a ceiling need none.
 */
const START_CPU = 1;
/**
 * After a heartbeat that reported a change, the next one comes this soon: the
 * control plane usually answers the change (a replacement, the next rollout
 * step) within milliseconds, and waiting a whole interval would add that to
 * every recovery.
 */
const FOLLOW_UP_MS = 150;
const LOG_SHIP_MS = 250;

/** Runs this node's share of the desired instances and reports on them. */
export { type AgentOptions, DEFAULT_CPU_OVERCOMMIT, DEFAULT_RESERVE } from "./agent-options.ts";

export class Agent {
  readonly #options: AgentOptions;
  readonly #log: Logger;
  readonly #driver: DriverSet;
  readonly #ownsDriver: boolean;
  readonly #slugs: SlugCache;
  #warnedNodeModules = false;
  readonly #ports: PortAllocator;
  readonly #heartbeatMs: number;
  /** The control plane's floor on the interval (a big cluster spreads its heartbeats): 0 until it sets one. */
  #minIntervalMs = 0;
  readonly #instances = new Map<string, Managed>();
  /** From the last heartbeat reply; undefined until one arrived. */
  #desired: Map<string, DesiredInstance> | undefined;
  /** Per instance: the running reconcile, and whether it must run again when done. */
  readonly #workers = new Map<string, { again: boolean; done: Promise<void> }>();
  #agentVersion = "unknown";
  #running = false;
  #loop: Promise<void> | undefined;
  readonly #pacer = new HeartbeatPacer(STATUS_DEBOUNCE_MS);
  /** The long poll that hears of new desired instances between heartbeats (change-wait.ts). */
  #waitLoop: Promise<void> | undefined;
  readonly #waitAbort = new AbortController();
  #serverAway = false;
  /** Pet volumes the control plane named for discarding (their app is gone), each removed by its instance's worker. */
  readonly #discards = new Set<string>();
  /** Set once a heartbeat was refused as revoked (#forgetAll). */
  #revoked = false;
  readonly #answered = Promise.withResolvers<void>();
  /** Resolves once the control plane first answers a heartbeat (it may refuse the credential for good). */
  readonly answered = this.#answered.promise;
  /** This agent's own counters (agent-metrics.ts). */
  readonly metrics: AgentMetrics;
  #metricsServer: MetricsServer | undefined;
  /** The statuses the last heartbeat carried (without usage), to notice changes. */
  #lastSent = "";
  /** Instances' output on its way to the control plane (log-shipper.ts). */
  readonly #logs: LogShipper;
  #shipTimer: NodeJS.Timeout | undefined;
  /** Stops a burstable instance over its request under memory pressure (eviction.ts). */
  readonly #evictor: Evictor;
  /** Node stats and instance usage, read at most every `statsMs` (node-stats.ts). */
  readonly #stats: StatsReader;
  /** Each tenant's ingest token (from the heartbeat reply), for its instances' OTEL_* defaults. */
  #ingestTokens: Record<string, string> = {};
  /** Each tenant's services (`app/service`), from the last heartbeat reply. */
  #services: Record<string, string[]> = {};
  /** What the drivers close to instances; `peers` from the heartbeat replies, kept in peers.json across restarts. */
  #networkPolicy: InstanceNetworkPolicy | undefined;
  /** The CA that signed the control plane's certificate (https), when not a public one. */
  readonly #ca: string | undefined;
  /** The control plane's servers and the one in use. */
  readonly #servers: ServerList;
  readonly #calls: ControlPlaneCalls;
  /** Where instances send spans and points (the API's port is closed to them). */
  #relay: TelemetryRelay | undefined;
  #containers: Containers | undefined;
  /** Instances' config: files in their dirs and the 127.0.0.1 feed they follow (config-center/agent-feed.ts). */
  #config: InstanceConfigFeed | undefined;
  readonly #layout: AgentLayout;

  constructor(options: AgentOptions) {
    this.#options = options;
    this.#layout = new AgentLayout(options.dataDir);
    this.#log = (options.logger ?? silentLogger).child("agent");
    this.metrics = new AgentMetrics(options.name, () => this.statuses(), options.metricsPort !== undefined);
    this.#heartbeatMs = options.heartbeatMs ?? 1000;
    this.#ports = new PortAllocator(options.ports);
    this.#ownsDriver = options.driver === undefined;
    this.#driver = new DriverSet(
      options.driver ??
        new ProcessDriver({ stateRoot: join(options.dataDir, "driver"), logger: options.logger }),
    );
    this.#ca = options.ca;
    this.#servers = serversOf(options.server);
    this.#calls = new ControlPlaneCalls(this.#servers, this.#ca, options.token, this.#log);
    this.#logs = new LogShipper({
      node: options.name,
      post: (path, body) => this.#calls.post(path, body),
      metrics: this.metrics,
      log: this.#log,
    });
    this.#stats = new StatsReader(options.dataDir, options.statsMs ?? STATS_MS, (id) =>
      this.#driver.usage(id),
    );
    this.#evictor = new Evictor(options.evictionMemory ?? DEFAULT_EVICTION_MEMORY, (id, why) =>
      this.#evict(id, why),
    );
    this.#slugs = new SlugCache({
      server: options.server,
      token: options.token,
      dataDir: options.dataDir,
      ca: this.#ca,
    });
  }

  /** Adopts what an earlier agent left running, then starts the heartbeat loop and log shipping. */
  async start(): Promise<void> {
    if (this.#running) return;
    if (this.#options.metricsPort !== undefined) {
      this.#metricsServer = await startMetricsServer({
        port: this.#options.metricsPort,
        host: this.#options.metricsHost ?? "127.0.0.1",
        orFreePort: this.#options.metricsPortOrFree,
        render: () => this.metrics.render(),
        logger: this.#log,
        component: "agent",
      });
    }
    this.#running = true;
    // Root only: instances (sandboxed) see their own app and data dirs through bind mounts, never this tree.
    await mkdir(this.#options.dataDir, { recursive: true, mode: 0o700 });
    await chmod(this.#options.dataDir, 0o700);
    await mkdir(join(this.#options.dataDir, "instances"), { recursive: true });
    this.#relay = await startTelemetryRelay({
      server: this.#options.server,
      ca: this.#ca,
      dataDir: this.#options.dataDir,
      logger: this.#log,
    });
    this.#config = await InstanceConfigFeed.start(this.#options.dataDir);
    // A server given by host name: closed at the addresses this machine resolves it to, too.
    const named: { host: string; port: number }[] = [];
    this.#networkPolicy = new InstanceNetworkPolicy({
      dataDir: this.#options.dataDir,
      ports: this.#options.ports ?? DEFAULT_PORT_RANGE,
      protect: protectedEndpoints(this.#servers.all, this.#metricsServer?.url, (host, port) =>
        named.push({ host, port }),
      ),
      named,
      driver: this.#driver,
      log: this.#log,
    });
    this.#agentVersion = await readAgentVersion();
    try {
      this.#driver.shareCpu?.(allocatableOf(this.#options).cpu);
    } catch (err) {
      this.#log.warn("cannot weigh the instances' CPU against the machine's other work", { err });
    }
    // Loaded only when asked for: an agent without Docker never holds the driver's modules.
    if (this.#options.dockerSocket || this.#options.dockerd || this.#options.serveRegistry) {
      this.#containers = await (await import("./containers.ts")).startContainers({
        ...this.#options,
        kept: () => this.#calls.keptImages(),
        credentials: (serve) => this.#calls.registryCredentials(serve),
      });
      if (this.#containers?.driver) this.#driver.add(this.#containers.driver);
    }
    this.#driver.onExit((p) => {
      this.#onExit(p).catch((err) => this.#log.error("cannot record an exit", { id: p.id, err }));
    });
    for (const p of await this.#driver.recover()) await this.#adopt(p);
    this.#shipTimer = setInterval(() => this.#logs.ship(this.#instances.values()), LOG_SHIP_MS);
    this.#loop = this.#heartbeatLoop();
    this.#waitLoop = followChanges({
      calls: this.#calls,
      node: this.#options.name,
      log: this.#log,
      signal: this.#waitAbort.signal,
      running: () => this.#running,
      serverAway: () => this.#serverAway,
      changed: () => this.#pacer.now(),
    });
    this.#log.info("started", {
      node: this.#options.name,
      server: this.#servers.url,
      adopted: this.#instances.size,
    });
  }

  /** Ends the agent and leaves every instance running as it is. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#pacer.now();
    this.#waitAbort.abort();
    await Promise.all([this.#loop, this.#waitLoop]);
    this.#pacer.close();
    clearInterval(this.#shipTimer);
    this.#networkPolicy?.stop();
    // Let a start or stop in progress finish, but a hung download must not hold the agent forever.
    const settled = Promise.all([...this.#workers.values()].map((w) => w.done));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(resolve, STOP_WAIT_MS, "timeout");
    });
    const outcome = await Promise.race([settled, timeout]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      this.#log.warn("stopping with instance work still in progress", { ids: [...this.#workers.keys()] });
    }
    for (const inst of this.#instances.values()) this.#stopProbing(inst);
    await this.#logs.flush(this.#instances.values());
    if (this.#ownsDriver) this.#driver.close?.();
    await this.#metricsServer?.close();
    await this.#relay?.close();
    this.#relay = undefined;
    this.#containers?.close();
    this.#containers = undefined;
    await this.#config?.close();
    this.#config = undefined;
    this.#metricsServer = undefined;
    // Whether its instances keep running is the caller's to say: herd agent leaves them, herd up stops them next.
    this.#log.info("stopped", { node: this.#options.name, instances: this.#instances.size });
  }

  /**
   * Stops every instance its drivers run (processes and containers), after
   * stop(): herd up's own stop, which takes the apps down with it. Returns
   * how many it stopped.
   */
  async stopInstances(graceMs: number): Promise<number> {
    return stopRunning(this.#driver, await this.#driver.list(), graceMs, this.#log);
  }

  /** Where this agent serves its metrics, while it does. */
  get metricsUrl(): string | undefined {
    return this.#metricsServer?.url;
  }

  /** What this agent reports for each instance it has (the body of the next heartbeat, without usage). */
  statuses(): InstanceStatus[] {
    return [...this.#instances.values()].map((inst) => toStatus(inst));
  }

  async #adopt(p: InstanceProcess): Promise<void> {
    const desired = await this.#layout.readRecord(p.id);
    // Stopped on purpose (herd up shut down with its apps): it starts again at the same
    // generation as soon as the control plane says it should run; no crash.
    const inst = newManaged(
      p.id,
      p.generation,
      p.state === "running" ? "up" : p.state,
      this.#layout.stateDir(p.id),
      {
        desired,
        port: p.port,
        ...(p.probeHost ? { probeHost: p.probeHost } : {}),
        pid: p.pid,
        startedAt: p.startedAt,
      },
    );
    await inst.log.skipToEnd();
    if (desired)
      inst.configVersion = await this.#config?.adopt(p.id, this.#layout.configDir(p.id), desired.tenant);
    this.#instances.set(p.id, inst);
    if (p.state === "running") {
      this.#ports.reserve(p.port);
      this.#startProbing(inst);
      this.#log.info("adopted", { id: p.id, pid: p.pid, port: p.port, generation: p.generation });
    } else if (p.state === "exited") {
      inst.exitCode = p.exitCode ?? null;
      inst.signal = p.signal ?? null;
      // A run (controllers/jobs.ts) wrote its own code to its data dir.
      if (inst.exitCode === null && inst.signal === null)
        inst.exitCode = await recordedExitCode(this.#layout.cattleDataDir(p.id));
      if (inst.exitCode === null && inst.signal === null)
        inst.message = "exit status unknown: it ended while no agent was running";
      inst.logTail = await this.#tail(p.id);
    }
  }

  async #heartbeatLoop(): Promise<void> {
    while (this.#running) {
      const changed = await this.#heartbeat();
      const every = Math.max(this.#heartbeatMs, this.#minIntervalMs);
      await this.#pacer.pause(changed ? Math.min(FOLLOW_UP_MS, every) : every, this.#running);
    }
  }

  /** Sends one heartbeat; returns whether the statuses it carried differ from the last ones sent. */
  async #heartbeat(): Promise<boolean> {
    const stats = await this.#readStats();
    this.#evictUnderPressure(stats);
    const instances: InstanceStatus[] = [];
    for (const inst of this.#instances.values()) {
      const status = toStatus(inst);
      const usage = RUNNING.has(inst.state) ? stats.usage.get(inst.id) : undefined;
      if (usage) status.usage = usage;
      instances.push(status);
    }
    const body: Heartbeat = {
      address: this.#options.address ?? "127.0.0.1",
      labels: this.#options.labels ?? {},
      capacity: capacityOf(this.#options),
      allocatable: allocatableOf(this.#options),
      cpuOvercommit: this.#options.cpuOvercommit ?? DEFAULT_CPU_OVERCOMMIT,
      ...(this.#options.taints?.length ? { taints: this.#options.taints } : {}),
      agentVersion: this.#agentVersion,
      isolation: this.#driver.isolation(),
      instances,
      stats: stats.node,
      slugs: await this.#slugs.held(),
      volumes: await this.#layout.volumes(),
      ...(this.#driver.extraNames().length > 0
        ? { drivers: this.#driver.extraNames(), driverIsolation: this.#driver.extraIsolation() }
        : {}),
      ...(this.#metricsServer ? { metricsUrl: this.#metricsServer.url } : {}),
      instancePorts: this.#options.ports ?? DEFAULT_PORT_RANGE,
      ...(this.#networkPolicy?.peersVersion ? { peersVersion: this.#networkPolicy.peersVersion } : {}),
    };
    // Usage and probe counts change all the time; a new probe outcome asks for a heartbeat itself.
    const fingerprint = JSON.stringify(instances.map(({ usage: _, probes: __, ...rest }) => rest));
    const changed = fingerprint !== this.#lastSent;
    this.#lastSent = fingerprint;
    let reply: HeartbeatReply;
    const took = this.metrics.heartbeatSeconds.startTimer();
    try {
      // Hedged: a heartbeat held by a frozen leader is sent to the others too after 1 s; a follower names the leader.
      const res = await this.#calls.post(
        `/api/v1/nodes/${encodeURIComponent(this.#options.name)}/heartbeat`,
        body,
        HEDGE,
      );
      if (res.status === 401) {
        const answer = await res.text();
        const revoked = revokedAnswer(answer);
        if (revoked) this.#forgetAll();
        throw new Error(refusedCredential(this.#options.dataDir, answer, revoked));
      }
      if (!res.ok) throw new Error(`answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
      reply = parseHeartbeatReply(await res.json());
      took();
      this.metrics.heartbeats.inc({ result: "ok" });
    } catch (err) {
      this.metrics.heartbeats.inc({ result: "error" });
      // Everything keeps running as it is (unless the credential was revoked); the next heartbeat tries again.
      const what = this.#revoked
        ? "heartbeat refused; retrying"
        : "heartbeat failed; instances keep running, retrying";
      if (!this.#serverAway) this.#log.warn(what, { err });
      this.#serverAway = true;
      return false;
    }
    if (this.#serverAway) this.#log.info("heartbeat answered again");
    this.#serverAway = false;
    this.#answered.resolve();
    this.#ingestTokens = reply.ingestTokens ?? {};
    this.#services = reply.services ?? {};
    if (reply.peers) this.#networkPolicy?.apply(reply.peers);
    this.#minIntervalMs = reply.minIntervalMs ?? 0;
    this.#reconcile(reply);
    return changed;
  }

  /** Under memory pressure, has the evictor stop one burstable instance over its request. */
  #evictUnderPressure(stats: StatsReading): void {
    const candidates = [...this.#instances.values()].flatMap((inst) =>
      inst.desired && RUNNING.has(inst.state)
        ? [
            {
              id: inst.id,
              mode: inst.desired.mode,
              criticality: inst.desired.run.criticality,
              resources: inst.desired.run.resources,
              usedBytes: stats.usage.get(inst.id)?.memoryBytes,
            },
          ]
        : [],
    );
    this.#evictor.check(stats, stats.node.memory?.availableBytes, candidates);
  }

  async #evict(id: string, why: string): Promise<void> {
    const inst = this.#instances.get(id);
    if (!inst) return;
    this.#log.warn("evicting", { id, why });
    this.metrics.instanceEvictions.inc();
    inst.evicted = why;
    try {
      await this.#halt(inst);
      // #onExit may have marked it exited already; either way it ends exited, with the reason.
      Object.assign(inst, { state: "exited", exitCode: null, signal: "SIGTERM", message: why });
      this.#pacer.changed();
    } catch (err) {
      this.#log.error("cannot evict", { id, err });
    }
  }

  #readStats(): Promise<StatsReading> {
    const running = [...this.#instances.values()].filter((i) => RUNNING.has(i.state)).map((i) => i.id);
    return this.#stats.read(running);
  }

  /**
   * This node's credential was revoked (herd nodes remove, or the token taken
   * back): herd accounts for nothing here any more and has replaced its cattle
   * elsewhere, so every instance is stopped and removed, as a heartbeat that
   * names none would have it. Pet volumes stay (outside the instance dirs).
   */
  #forgetAll(): void {
    if (!this.#revoked)
      this.#log.warn("this node's credential was revoked: stopping and removing every instance", {
        instances: this.#instances.size,
      });
    this.#revoked = true;
    this.#desired = new Map();
    for (const id of this.#instances.keys()) this.#kick(id);
  }

  #reconcile(reply: HeartbeatReply): void {
    this.#desired = new Map(reply.instances.map((d) => [d.id, d]));
    for (const id of reply.discardVolumes ?? []) this.#discards.add(id);
    for (const id of new Set([...this.#desired.keys(), ...this.#instances.keys(), ...this.#discards]))
      this.#kick(id);
    this.#pruneSlugs();
  }

  /** Every 10 minutes (slugs.ts): the slugs nothing here runs or is to run go, but the last used. */
  #pruneSlugs(): void {
    this.#slugs
      .pruneWhenDue(() => {
        const inUse = new Set([...(this.#desired?.values() ?? [])].map((d) => d.run.slug));
        for (const inst of this.#instances.values()) if (inst.desired) inUse.add(inst.desired.run.slug);
        return inUse;
      })
      ?.then((removed) => {
        if (removed.length > 0) this.#log.info("removed slugs no instance uses", { count: removed.length });
      })
      .catch((err) => this.#log.warn("cannot remove old slugs", { err }));
  }

  // One reconcile per instance at a time; a kick while one runs makes it run once more with the latest reply.
  #kick(id: string): void {
    const worker = this.#workers.get(id);
    if (worker) {
      worker.again = true;
      return;
    }
    const w = { again: true, done: Promise.resolve() };
    w.done = (async () => {
      while (w.again && this.#running) {
        w.again = false;
        try {
          await this.#reconcileInstance(id);
        } catch (err) {
          this.#log.error("reconcile failed", { id, err });
        }
      }
      this.#workers.delete(id);
    })();
    this.#workers.set(id, w);
  }

  async #reconcileInstance(id: string): Promise<void> {
    const desired = this.#desired?.get(id);
    const inst = this.#instances.get(id);
    // Run by this worker, a volume's removal never overlaps a start of its pet; one in use stays.
    if (this.#discards.delete(id) && !desired && !inst)
      await this.#discardVolume(id, "its app was destroyed");
    if (!desired) {
      if (inst) await this.#remove(inst);
      return;
    }
    if (desired.action === "stop") {
      await this.#stopInstance(id, desired);
      return;
    }
    // At the generation it last started, an instance stays as it is: running, exited or failed.
    if (inst && inst.generation >= desired.generation && inst.state !== "stopped") {
      if (RUNNING.has(inst.state)) await this.#applyConfig(inst, desired);
      return;
    }
    await this.#startInstance(desired, inst);
  }

  /** A new config version for a running instance: its files, its feed, then a SIGHUP or a restart if its service asks. */
  async #applyConfig(inst: Managed, d: DesiredInstance): Promise<void> {
    const config = d.config;
    if (!config?.document || config.version === inst.configVersion || !this.#config) return;
    if (config.onChange === "restart") {
      this.#log.info("restarting for its config", { id: inst.id, version: config.version });
      await this.#startInstance(d, inst);
      return;
    }
    await this.#config.apply(inst.id, this.#layout.configDir(inst.id), config.document);
    inst.configVersion = config.version;
    if (config.onChange === "signal" && inst.pid !== undefined) {
      try {
        if (sighupGroup(inst.pid) === 0) this.#log.warn("no process took the config SIGHUP", { id: inst.id });
      } catch (err) {
        this.#log.warn("cannot send SIGHUP for a config change", { id: inst.id, err });
      }
    }
    this.#log.info("config applied", { id: inst.id, version: config.version, onChange: config.onChange });
    this.#pacer.changed();
  }

  async #startInstance(d: DesiredInstance, previous: Managed | undefined): Promise<void> {
    if (previous && (RUNNING.has(previous.state) || previous.state === "starting")) {
      await this.#halt(previous);
    }
    const inst = previous ?? newManaged(d.id, d.generation, "starting", this.#layout.stateDir(d.id));
    Object.assign(inst, {
      desired: d,
      generation: d.generation,
      state: "starting",
      port: undefined,
      pid: undefined,
      startedAt: undefined,
      exitCode: undefined,
      signal: undefined,
      oomKilled: undefined,
      evicted: undefined,
      message: undefined,
      logTail: undefined,
      failures: 0,
    });
    inst.probes.clear();
    this.#instances.set(d.id, inst);
    this.#pacer.changed();
    let port: number | undefined;
    try {
      const appDir = this.#layout.appDir(d.id);
      await this.#slugs.unpack(d.run.slug, appDir);
      await this.#isolateModuleScope(this.#layout.instanceDir(d.id));
      // The Node the app chose (engines.node), else the one that runs herd.
      const node = await this.#slugs.node(appDir);
      // Secret values go to the process only: instance.json keeps their names (run.secrets), and a
      // restart takes them from the current heartbeat reply. It holds the rest of the env: root only.
      await writeFile(
        this.#layout.recordFile(d.id),
        JSON.stringify({ ...d, secretEnv: undefined, config: undefined }),
        { mode: 0o600 },
      );
      const missing = Object.keys(d.run.secrets ?? {}).filter((v) => d.secretEnv?.[v] === undefined);
      if (missing.length > 0)
        throw new Error(d.secretError ?? `no value for the secret env ${missing.join(", ")}`);
      // Its config before it starts, so it reads the current version at boot (version 0 until its app has one).
      // A restart whose reply carried no content (the agent had it): the version its feed holds.
      const known = this.#config?.feed.current(d.id);
      const config =
        d.config?.document ??
        (known && known.version === d.config?.version ? known : emptyConfig(d.tenant, d.app));
      const configDir = this.#layout.configDir(d.id);
      await this.#config?.apply(d.id, configDir, config);
      inst.configVersion = config.version === 0 ? undefined : config.version;
      const dataDir = this.#layout.dataDir(d);
      await mkdir(dataDir, { recursive: true });
      port = await this.#ports.allocate();
      // The defaults carry the ingest token: they go to the process only, never into a log line or file.
      const env = instanceEnv(d, {
        port,
        appDir,
        dataDir,
        ...(node ? { node } : {}),
        telemetry: traceDefaults(
          d,
          this.#relay?.url ?? this.#servers.url,
          this.#ingestTokens[d.tenant],
          this.#relay?.grpcUrl,
        ),
        services: internalServiceEnv(this.#options.internalGateway, d, this.#services[d.tenant] ?? []),
        config: this.#config?.envFor(d.id, configDir),
        configValues: config.values,
      });
      await inst.log.skipToEnd();
      const p = await this.#driver.start({
        id: d.id,
        generation: d.generation,
        dir: appDir,
        stateDir: this.#layout.stateDir(d.id),
        command: d.run.command,
        ...(d.run.image ? { image: d.run.image } : {}),
        ...(d.run.runtime ? { runtime: d.run.runtime } : {}),
        ...(d.run.imageUser ? { imageUser: true } : {}),
        env,
        port,
        resources: d.run.resources,
        ...(d.run.criticality ? { criticality: d.run.criticality } : {}),
        tenant: d.tenant,
        dataDir,
        ...(this.#config ? { configDir } : {}),
        ...(node ? { node } : {}),
        startCpu: START_CPU,
      });
      Object.assign(inst, {
        state: "up",
        port: p.port,
        probeHost: p.probeHost,
        pid: p.pid,
        startedAt: p.startedAt,
      });
      if (p.image) this.#calls.reportImage(d, p.image);
      this.#startProbing(inst);
      this.#log.info("started", { id: d.id, generation: d.generation, pid: p.pid, port: p.port });
      this.metrics.instanceStarts.inc({ result: "ok" });
    } catch (err) {
      this.metrics.instanceStarts.inc({ result: "failed" });
      if (port !== undefined) this.#ports.release(port);
      inst.state = "failed";
      inst.message = `cannot start: ${(err as Error).message}`;
      inst.logTail = await this.#tail(d.id);
      this.#log.warn("start failed", { id: d.id, generation: d.generation, err });
    }
    this.#pacer.changed();
  }

  async #stopInstance(id: string, d: DesiredInstance): Promise<void> {
    const inst = this.#instances.get(id);
    if (inst && inst.state !== "stopped") await this.#halt(inst);
    // Its app is being destroyed: a pet's data goes before the stop is reported, so nothing of it is
    // left for a new app of that name. Also when this agent does not know the pet (it did not run
    // since the agent restarted): its volume may still be here.
    if (d.discardData && d.mode === "pet") await this.#discardVolume(id, "its app is being destroyed");
    if (!inst) {
      // Never ran here (or not since this node's data was lost): nothing to stop, say so.
      this.#instances.set(
        id,
        newManaged(id, d.generation, "stopped", this.#layout.stateDir(id), { desired: d }),
      );
      this.#pacer.changed();
      return;
    }
    if (inst.state === "stopped") return;
    inst.state = "stopped";
    inst.message = undefined;
    this.#pacer.changed();
  }

  /** Removes a pet's volume (its data). */
  async #discardVolume(id: string, why: string): Promise<void> {
    await removeTree(this.#layout.volumeDir(id));
    this.#log.info("data removed", { id, why });
  }

  /** Stops probing and the process (if running); keeps the instance's files. */
  async #halt(inst: Managed): Promise<void> {
    this.#stopProbing(inst);
    if (RUNNING.has(inst.state) || inst.state === "starting") {
      await this.#driver.stop(inst.id, STOP_GRACE_MS);
      this.#log.info("stopped", { id: inst.id, pid: inst.pid });
    }
    if (inst.port !== undefined) this.#ports.release(inst.port);
  }

  async #remove(inst: Managed): Promise<void> {
    await this.#halt(inst);
    await this.#driver.remove(inst.id);
    await this.#logs.collect(inst, true);
    this.#config?.remove(inst.id);
    // Pet volumes live outside the instance dir and survive this. The instance leaves the list (and
    // the heartbeat) only once its files are gone, so "not reported" means "nothing left".
    await removeTree(this.#layout.instanceDir(inst.id));
    this.#instances.delete(inst.id);
    this.#log.info("removed", { id: inst.id });
    this.#pacer.changed();
  }

  async #onExit(p: InstanceProcess): Promise<void> {
    const inst = this.#instances.get(p.id);
    if (!this.#running || !inst || inst.pid !== p.pid || inst.generation !== p.generation) return;
    this.#stopProbing(inst);
    if (inst.port !== undefined) this.#ports.release(inst.port);
    // The last lines first, so that no heartbeat says exited without them.
    const tail = await this.#tail(p.id);
    if (inst.pid !== p.pid || inst.generation !== p.generation || !RUNNING.has(inst.state)) return;
    inst.state = "exited";
    this.metrics.instanceExits.inc();
    inst.exitCode = p.exitCode ?? null;
    inst.signal = p.signal ?? null;
    inst.oomKilled = p.oomKilled === true;
    // A run (controllers/jobs.ts) wrote its own code to its data dir.
    if (inst.exitCode === null && inst.signal === null)
      inst.exitCode = await recordedExitCode(this.#layout.cattleDataDir(p.id));
    // Only a parent learns how its child ended: an adopted process (started by an earlier agent) is
    // watched by its pid, so its code or signal cannot be known. Say so rather than guess.
    if (inst.exitCode === null && inst.signal === null)
      inst.message = "exit status unknown (adopted: started by an earlier agent, so not this agent's child)";
    inst.logTail = tail;
    this.#log.info("exited", { id: p.id, code: inst.exitCode, signal: inst.signal });
    this.#pacer.changed();
  }

  #startProbing(inst: Managed): void {
    startProbeLoop(inst, {
      tail: (id) => this.#tail(id),
      changed: () => this.#pacer.changed(),
      started: (id, cpuLimit) => this.#started(id, cpuLimit),
    });
  }

  #started(id: string, cpuLimit: number | undefined): void {
    try {
      this.#driver.started?.(id, cpuLimit);
    } catch (err) {
      const what = "cannot end the start boost: the instance keeps the CPU ceiling or weight it started with";
      this.#log.warn(what, { id, err });
    }
  }

  #stopProbing(inst: Managed): void {
    stopProbeLoop(inst);
  }

  async #tail(id: string): Promise<string[]> {
    return this.#driver.tail(id, TAIL_LINES).catch(() => []);
  }

  /** See isolateModuleScope; says once when apps here can resolve packages from above the data dir. */
  async #isolateModuleScope(dir: string): Promise<void> {
    const { nodeModulesAbove } = await isolateModuleScope(dir);
    if (
      nodeModulesAbove.length === 0 ||
      this.#warnedNodeModules ||
      this.#driver.isolation().sandbox === "uid"
    )
      return;
    this.#warnedNodeModules = true;
    this.#log.warn(
      "apps on this node can require() packages they do not ship from node_modules above the data dir (no sandbox: not root); keep the data dir outside Node projects",
      { nodeModules: nodeModulesAbove },
    );
  }
}
