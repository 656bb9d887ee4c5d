/**
 * DockerDriver: runs each instance as a container of a Docker engine: its own
 * root filesystem and cgroup (limits), its own network namespace on herd's
 * bridge (docker-network.ts) with $PORT published on the host at the same
 * number, and its own pid namespace; docker-init is its pid 1, starts the
 * command and passes signals, and when it ends the kernel ends every other
 * process of the namespace.
 *
 * A StartSpec without `image` runs its command in the local base image
 * (docker-daemon.ts ensureBaseImage) with the release dir bound at the same
 * path and the agent's Node binary bound read-only; with `image` it runs that
 * image, `command` (when given) replacing the image's own. A release dir with
 * a `Dockerfile` (and no `image`) is built with the engine first, once per
 * content (`herd-build:<hash of the dir's files>`), and that image runs.
 *
 * Logs: a static busybox bound at /run/herd/busybox starts the instance with
 * stdout and stderr appended to the two files in its state dir (bound at
 * /run/herd/state), so the files grow while no agent runs, like the process
 * driver's. The engine keeps no log of its own (log driver none).
 *
 * Bookkeeping: the container carries its id, generation, port and state dir
 * as labels under `herd.state-root=<stateRoot>`; `<stateRoot>/<id>.json`
 * holds the container id and whether stop() ended it.
 */

import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { HerdError, notFound } from "../common/errors.ts";
import { type Logger, silentLogger } from "../common/log.ts";
import { SAFE_INSTANCE_ID } from "../model/protocol.ts";
import { cpuShares, processTree, startWeight, weightedCores } from "./cgroups.ts";
import { DockerApi } from "./docker-api.ts";
import { buildReleaseImage } from "./docker-build.ts";
import { ensureBaseImage } from "./docker-daemon.ts";
import { ContainerFirewall } from "./docker-firewall.ts";
import { collectImages, ensureImage } from "./docker-images.ts";
import { forwardedPorts, LoopbackForwarder, rewriteLoopback } from "./docker-loopback.ts";
import { ensureNetwork, HERD_NETWORK, type HerdNetwork } from "./docker-network.ts";
import type {
  DriverUsage,
  InstanceProcess,
  Isolation,
  NetworkPolicy,
  RuntimeDriver,
  StartSpec,
} from "./driver.ts";
import { findNft } from "./firewall.ts";
import { prepareLogs, rotateInstanceLogs, tailInstanceLogs, writeMarker } from "./instance-log-files.ts";
import { DEFAULT_PORT_RANGE } from "./ports.ts";
import { type Sample, waitShareSince } from "./realtime-guard.ts";
import type { RegistryAccess } from "./registry.ts";
import { ownInstanceDirs } from "./sandbox.ts";
import { UidMap, uidRangeFor } from "./uids.ts";

export interface DockerDriverOptions {
  /** Directory for the per-instance records; also what tells this driver's containers from others'. */
  stateRoot: string;
  api: DockerApi;
  /** The image commands run in when a StartSpec names none (ensureBaseImage). */
  baseImage: string;
  /** A statically linked busybox on the host: the log wrapper inside every container. */
  busybox: string;
  /** The Node binary bound into containers at its own path (default: the agent's). */
  node?: string;
  logger?: Logger;
  /** Rotate an instance's log when it passes this size; default 10 MiB. */
  logMaxBytes?: number;
  /** The local registry (registry.ts): builds are pushed there and pulled by digest. */
  registry?: RegistryAccess;
  /** Built images kept on the engine besides those containers use (collectImages); default 3. */
  keepImages?: number;
}

interface DriverRecord {
  id: string;
  container: string;
  /** Set by stop(): the end was asked for. */
  stopped?: boolean;
  /** A critical container's weight (cores) from its first passed health check; it starts at its request's. */
  weight?: number;
}

interface Tracked {
  record: DriverRecord;
  process: InstanceProcess;
  stateDir: string;
  stopping: boolean;
  /** Aborts the engine's wait call (close()). */
  watch?: AbortController;
  gone: Promise<void>;
  markGone: () => void;
  /** The last stats the daemon gave (usage repeats them for STATS_MS). */
  stats?: DriverUsage & { readAt: number };
  /** Its threads' last schedstat reading (waitShareSince). */
  lastSchedstat?: Sample;
}

interface ContainerInspect {
  Id: string;
  State: {
    Status: string;
    Running: boolean;
    Pid: number;
    ExitCode: number;
    OOMKilled: boolean;
    StartedAt: string;
  };
  Config: { Labels: Record<string, string>; Env: string[] | null };
  NetworkSettings?: { Networks?: Record<string, { IPAddress?: string }> | null };
}

/** What an image says of itself (`/images/NAME/json` → Config). */
interface ImageConfig {
  Entrypoint: string[] | null;
  Cmd: string[] | null;
  Env: string[] | null;
}

const LABEL_ROOT = "herd.state-root";
/** On a build's sandbox container (#buildNetwork): the instance whose start built. */
const LABEL_BUILD = "herd.build";
/** How long a build's sandbox container lives at most (it is removed when the build ends). */
const BUILD_SANDBOX_S = 24 * 3600;
const IN_STATE = "/run/herd/state";
const IN_BUSYBOX = "/run/herd/busybox";
/** Written into the state dir once the container's firewall rules are in place: its command starts then. */
const NETWORK_READY = ".network-ready";
const ROTATE_CHECK_MS = 1000;
/**
 * A container's stats are asked of the daemon at most this often (ms): each
 * call costs dockerd a read of the container's cgroup and a JSON answer, and
 * the agent reads usage every second; between calls the last stats repeat
 * (their `readAt` tells the agent they are not new).
 */
const STATS_MS = 5000;
/** How long recover() waits for the engine to see the end of a container whose process is gone. */
const RECOVER_WAIT_MS = 5000;
const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
const DEFAULT_KEEP_IMAGES = 3;
// The wrapper's own arguments end at "herd"; "$@" is the instance's command.
const WRAPPER = [
  IN_BUSYBOX,
  "sh",
  "-c",
  `while [ ! -e ${IN_STATE}/${NETWORK_READY} ]; do sleep 0.05; done; exec >>${IN_STATE}/output.log 2>>${IN_STATE}/stderr.log; exec "$@"`,
  "herd",
];

/** Runs instances as containers of one Docker engine. */
export class DockerDriver implements RuntimeDriver {
  readonly name = "docker";
  readonly #api: DockerApi;
  readonly #stateRoot: string;
  readonly #options: DockerDriverOptions;
  readonly #log: Logger;
  readonly #tracked = new Map<string, Tracked>();
  readonly #listeners: ((p: InstanceProcess) => void)[] = [];
  #rotateTimer: NodeJS.Timeout | undefined;
  #network: Promise<HerdNetwork> | undefined;
  #forwarder: LoopbackForwarder | undefined;
  /** The rules between containers (docker-firewall.ts), made with the network; a string: why there are none. */
  #firewall: ContainerFirewall | string | undefined;
  #policy: NetworkPolicy = { ports: DEFAULT_PORT_RANGE, protect: [] };
  #collecting = false;
  #closed = false;
  /** The tenants' uids containers run as (but those of `imageUser`); none when the agent is not root. */
  readonly #uids: UidMap | undefined;
  /** What isolation() says until the network (and its firewall) is made: read once, not every heartbeat. */
  readonly #cgroups: "v1" | "v2";
  readonly #nft: ReturnType<typeof findNft>;

  constructor(options: DockerDriverOptions) {
    this.#options = options;
    this.#api = options.api;
    this.#stateRoot = resolve(options.stateRoot);
    this.#log = (options.logger ?? silentLogger).child("docker-driver");
    mkdirSync(this.#stateRoot, { recursive: true, mode: 0o700 });
    this.#uids =
      process.getuid?.() === 0
        ? new UidMap(join(this.#stateRoot, "uids.json"), uidRangeFor(this.#stateRoot))
        : undefined;
    this.#cgroups = existsSync("/sys/fs/cgroup/cgroup.controllers") ? "v2" : "v1";
    this.#nft = findNft();
  }

  isolation(): Isolation {
    // Before the network is made (and the firewall with it), what open() would find.
    const firewall = this.#firewall ?? this.#nft;
    const noFirewall =
      typeof firewall === "string" ? firewall : "missing" in firewall ? firewall.missing : undefined;
    return {
      // The engine puts each container in its own cgroup with its limits, and in its own pid, mount and network namespace.
      cgroups: this.#cgroups,
      sandbox: this.#uids ? "uid" : "none",
      network: noFirewall ? "none" : "nftables",
      missing: [
        // With uids, a container runs as its image's user only where a platform admin allowed its tenant that.
        ...(this.#uids
          ? []
          : [
              "sandbox: containers run as the image's user (root for the base image): the agent is not root, so it cannot give them a uid",
            ]),
        ...(noFirewall ? [`network: no firewall between containers of different apps: ${noFirewall}`] : []),
      ],
    };
  }

  setNetworkPolicy(policy: NetworkPolicy): void {
    this.#policy = policy;
    if (!(this.#firewall instanceof ContainerFirewall)) return;
    this.#firewall.setPolicy(policy);
    // New peers (another node's instances) change the rules of the containers running now.
    if (this.#firewall.size > 0) {
      try {
        this.#firewall.apply();
      } catch (err) {
        this.#log.warn("cannot apply the other nodes' ports to the container rules", { err });
      }
    }
  }

  async start(spec: StartSpec): Promise<InstanceProcess> {
    if (!SAFE_INSTANCE_ID.test(spec.id))
      throw new HerdError("invalid", `instance id ${JSON.stringify(spec.id)} is not safe as a name`);
    const existing = this.#tracked.get(spec.id);
    if (existing && existing.process.state === "running")
      throw new HerdError("conflict", `instance ${spec.id} is already running; stop it first`);
    try {
      if (!statSync(spec.dir).isDirectory()) throw new Error("not a directory");
    } catch (err) {
      throw new HerdError(
        "invalid",
        `cannot start ${spec.id}: working directory ${spec.dir}: ${(err as Error).message}`,
      );
    }
    if (existing) await this.remove(spec.id);
    mkdirSync(spec.stateDir, { recursive: true });
    const stateDir = resolve(spec.stateDir);
    // Its command waits for this until the rules that name it are in place.
    rmSync(join(stateDir, NETWORK_READY), { force: true });
    const dir = resolve(spec.dir);
    const built = !spec.image && existsSync(join(dir, "Dockerfile"));
    const image = built
      ? await buildReleaseImage(
          this.#api,
          this.#log,
          spec.id,
          dir,
          this.#buildNetwork(spec),
          this.#options.registry,
        )
      : spec.image;
    if (spec.image) await ensureImage(this.#api, this.#log, spec.image, this.#options.registry);
    const config = image ? await this.#imageConfig(image) : undefined;
    const command = spec.command.trim()
      ? [IN_BUSYBOX, "sh", "-c", spec.command]
      : imageCommand(image, config);
    const node = this.#options.node ?? process.execPath;
    const binds = [`${stateDir}:${IN_STATE}`, `${this.#options.busybox}:${IN_BUSYBOX}:ro`];
    if (!image) binds.push(`${dir}:${dir}`, `${node}:${node}:ro`);
    if (spec.node && !image) binds.push(`${spec.node}:${spec.node}:ro`);
    if (spec.dataDir) binds.push(`${spec.dataDir}:${spec.dataDir}`);
    // Root's, read-only: HERD_CONFIG_FILE names it by its host path.
    if (spec.configDir) binds.push(`${resolve(spec.configDir)}:${resolve(spec.configDir)}:ro`);
    // Every container runs as its tenant's uid (as a process instance's sandbox), in a state dir it
    // cannot write but for its two logs, unless it asked for its image's own user and was let.
    const uid =
      (image && spec.imageUser) || !this.#uids
        ? undefined
        : await ownInstanceDirs(this.#uids, { ...spec, dir });
    if (uid !== undefined) prepareLogs(stateDir, uid);
    // That uid has no home in an image's passwd: without one of its own the engine would say "/".
    const home: Record<string, string> =
      uid !== undefined && image && !hasHome(spec.env, config) ? { HOME: "/tmp" } : {};
    const r = spec.resources;
    const memory = r.memoryLimit ?? r.memory;
    const cpuLimit = r.cpuLimit !== undefined ? Math.max(r.cpuLimit, spec.startCpu ?? 0) : undefined;
    // CpuShares as a process instance's cgroup: the request scaled by criticality (a critical one from started()).
    const weight = weightedCores({ cpuCores: r.cpu, criticality: spec.criticality });
    const start = startWeight({ cpuCores: r.cpu, criticality: spec.criticality });
    const network = await this.#ensureNetwork();
    // The host's loopback endpoints in its env reach it through the bridge (docker-loopback.ts).
    const { env, ports } = rewriteLoopback({ ...home, ...spec.env }, network.gateway);
    await this.#forwarder?.forward(ports);
    const port = `${spec.port}/tcp`;
    const created = await this.#api.call<{ Id: string }>({
      method: "POST",
      path: "/containers/create",
      query: { name: this.#containerName(spec.id) },
      body: {
        Image: image ?? this.#options.baseImage,
        Entrypoint: WRAPPER,
        ...(uid !== undefined ? { User: `${uid}:${uid}` } : {}),
        Cmd: command,
        ...(image ? {} : { WorkingDir: dir }),
        Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        ExposedPorts: { [port]: {} },
        Labels: {
          [LABEL_ROOT]: this.#stateRoot,
          "herd.id": spec.id,
          "herd.generation": String(spec.generation),
          "herd.port": String(spec.port),
          "herd.state-dir": stateDir,
          "herd.group": `${spec.tenant ?? "default"}/${spec.env.HERD_APP ?? ""}`,
        },
        HostConfig: {
          Init: true,
          ...(uid !== undefined ? { SecurityOpt: ["no-new-privileges"] } : {}),
          // The root group besides its own, as OpenShift gives an arbitrary uid: an image made to run as
          // any uid gives its writable paths to group 0 (which reaches no more than the image's own files).
          ...(uid !== undefined && image ? { GroupAdd: ["0"] } : {}),
          // No raw sockets, even as an image's root: one could forge its source address on the bridge.
          CapDrop: ["NET_RAW"],
          // Its own network namespace on the bridge; the port is published on every host address, as a
          // process instance listens on them (its userland proxy or DNAT forwards to the container).
          NetworkMode: network.name,
          PortBindings: { [port]: [{ HostIp: "", HostPort: String(spec.port) }] },
          Binds: binds,
          LogConfig: { Type: "none", Config: {} },
          // No IPv6 in its namespace (the engine gives none on a network without it; this keeps it so):
          // the firewall between containers (docker-firewall.ts) matches IPv4, a link-local address would go around it.
          ...(existsSync("/proc/sys/net/ipv6") ? { Sysctls: { "net.ipv6.conf.all.disable_ipv6": "1" } } : {}),
          Memory: memory,
          MemorySwap: memory,
          CpuShares: cpuShares(start),
          ...(cpuLimit !== undefined ? { NanoCpus: Math.round(cpuLimit * 1e9) } : {}),
        },
      },
    });
    const record: DriverRecord = {
      id: spec.id,
      container: created.Id,
      ...(weight !== start ? { weight } : {}),
    };
    this.#writeRecord(record);
    let info: ContainerInspect;
    try {
      await this.#api.call({ method: "POST", path: `/containers/${created.Id}/start` });
      info = await this.#inspectContainer(created.Id);
      this.#admit(spec.id, info, network.gateway);
      this.#applyFirewall();
      writeMarker(join(stateDir, NETWORK_READY));
    } catch (err) {
      this.#forget(spec.id);
      // Nothing is left behind: the container and its record go.
      await this.#api
        .call({ method: "DELETE", path: `/containers/${created.Id}`, query: { force: "true" } })
        .catch(() => {});
      rmSync(this.#recordFile(spec.id), { force: true });
      throw new HerdError("internal", `cannot start ${spec.id} in Docker: ${(err as Error).message}`);
    }
    const t = this.#track(record, info);
    if (built) this.#collectImages();
    this.#log.info("started", { id: spec.id, container: created.Id.slice(0, 12), pid: t.process.pid });
    if (t.process.state === "running") this.#watch(t);
    else this.#exited(t, info);
    return { ...t.process, ...(image?.includes("@sha256:") ? { image } : {}) };
  }

  async stop(id: string, graceMs: number): Promise<void> {
    const t = this.#tracked.get(id);
    if (t?.process.state !== "running") return;
    t.stopping = true;
    t.record.stopped = true;
    this.#writeRecord(t.record);
    try {
      await this.#api.call({
        method: "POST",
        path: `/containers/${t.record.container}/stop`,
        query: { t: String(Math.ceil(graceMs / 1000)) },
      });
    } catch (err) {
      if (!(err instanceof HerdError && err.code === "not_found")) throw err;
    }
    if (!t.watch) this.#exited(t, await this.#inspectContainer(t.record.container).catch(() => undefined));
    await t.gone;
  }

  async inspect(id: string): Promise<InstanceProcess | undefined> {
    const t = this.#tracked.get(id);
    return t ? { ...t.process } : undefined;
  }

  async list(): Promise<InstanceProcess[]> {
    return [...this.#tracked.values()].map((t) => ({ ...t.process }));
  }

  async recover(): Promise<InstanceProcess[]> {
    const containers = await this.#api.call<{ Id: string; Labels: Record<string, string> }[]>({
      path: "/containers/json",
      query: { all: "true", filters: JSON.stringify({ label: [`${LABEL_ROOT}=${this.#stateRoot}`] }) },
    });
    const adopted: string[] = [];
    for (const c of containers) {
      // A build's sandbox left by an agent that died during the build: its build went with it.
      if (c.Labels[LABEL_BUILD] !== undefined) {
        await this.#api
          .call({ method: "DELETE", path: `/containers/${c.Id}`, query: { force: "true" } })
          .catch(() => {});
        continue;
      }
      const id = c.Labels["herd.id"];
      if (!id || this.#tracked.has(id)) continue;
      const record = this.#readRecord(id);
      // A container whose record is gone was being removed: finish the job.
      if (!record || record.container !== c.Id) {
        await this.#api
          .call({ method: "DELETE", path: `/containers/${c.Id}`, query: { force: "true" } })
          .catch(() => {});
        continue;
      }
      let info = await this.#inspectContainer(c.Id);
      if (info.State.Running && !processAlive(info.State.Pid)) {
        // Its process is gone and the engine has not noticed yet: wait until it has, and read again.
        await this.#api
          .call({
            method: "POST",
            path: `/containers/${c.Id}/wait`,
            query: { condition: "not-running" },
            signal: AbortSignal.timeout(RECOVER_WAIT_MS),
          })
          .catch(() => {});
        info = await this.#inspectContainer(c.Id);
      }
      const t = this.#track(record, info);
      if (info.State.Running) {
        this.#watch(t);
        const network = await this.#ensureNetwork();
        await this.#forwarder?.forward(forwardedPorts(info.Config.Env ?? [], network.gateway));
        this.#admit(id, info, network.gateway);
        adopted.push(t.stateDir);
      } else this.#exited(t, info, false);
      this.#log.info("recovered", { id, state: t.process.state });
    }
    // One write for all, then the ones an agent stopped before their rules were written may begin.
    this.#applyFirewall();
    for (const stateDir of adopted) writeMarker(join(stateDir, NETWORK_READY));
    return this.list();
  }

  onExit(listener: (p: InstanceProcess) => void): void {
    this.#listeners.push(listener);
  }

  async tail(id: string, lines: number): Promise<string[]> {
    const t = this.#tracked.get(id);
    if (!t) throw notFound(`instance ${id} is not known to the docker driver`);
    return tailInstanceLogs(t.stateDir, lines);
  }

  /** The start boost ends (the container's own CPU ceiling), and a critical container gets its criticality's weight. */
  started(id: string, cpuLimitCores: number | undefined): void {
    const t = this.#tracked.get(id);
    if (t?.process.state !== "running") return;
    const body = {
      ...(cpuLimitCores !== undefined ? { NanoCpus: Math.round(cpuLimitCores * 1e9) } : {}),
      ...(t.record.weight !== undefined ? { CpuShares: cpuShares(t.record.weight) } : {}),
    };
    if (Object.keys(body).length === 0) return;
    this.#api
      .call({ method: "POST", path: `/containers/${t.record.container}/update`, body })
      .catch((err) => this.#log.warn("cannot set the CPU limit and weight", { id, err }));
  }

  async remove(id: string): Promise<void> {
    const t = this.#tracked.get(id);
    if (!t) return;
    if (t.process.state === "running")
      throw new HerdError("conflict", `instance ${id} is still running; stop it before removing it`);
    t.watch?.abort();
    await this.#api
      .call({ method: "DELETE", path: `/containers/${t.record.container}`, query: { force: "true" } })
      .catch((err) => {
        if (!(err instanceof HerdError && err.code === "not_found")) throw err;
      });
    rmSync(this.#recordFile(id), { force: true });
    this.#tracked.delete(id);
  }

  async usage(id: string): Promise<DriverUsage | undefined> {
    const t = this.#tracked.get(id);
    if (t?.process.state !== "running") return undefined;
    // Read from /proc every time (the container's processes are the host's): how starved of CPU it is now.
    const waits = waitShareSince(t, t.process.pid ? processTree(t.process.pid) : []);
    const wait = waits === undefined ? {} : { cpuWaitShare: waits };
    const readAt = performance.now();
    if (t.stats && readAt - t.stats.readAt < STATS_MS) return { ...t.stats, ...wait };
    const stats = await this.#api.call<{
      cpu_stats?: { cpu_usage?: { total_usage?: number } };
      memory_stats?: { usage?: number };
    }>({ path: `/containers/${t.record.container}/stats`, query: { stream: "false", "one-shot": "true" } });
    const ns = stats.cpu_stats?.cpu_usage?.total_usage;
    t.stats = {
      readAt,
      ...(ns !== undefined ? { cpuSeconds: ns / 1e9 } : {}),
      ...(stats.memory_stats?.usage !== undefined ? { memoryBytes: stats.memory_stats.usage } : {}),
    };
    return { ...t.stats, ...wait };
  }

  close(): void {
    this.#closed = true;
    this.#forwarder?.close();
    clearInterval(this.#rotateTimer);
    for (const t of this.#tracked.values()) t.watch?.abort();
  }

  /** The herd network (made once), and the forwarder of loopback ports to its bridge address. */
  async #ensureNetwork(): Promise<HerdNetwork> {
    this.#network ??= ensureNetwork(this.#api).catch((err) => {
      this.#network = undefined;
      throw err;
    });
    const network = await this.#network;
    if (!this.#closed) this.#forwarder ??= new LoopbackForwarder(network.gateway, this.#log);
    if (this.#firewall === undefined) {
      const opened = ContainerFirewall.open({
        stateRoot: this.#stateRoot,
        bridge: network.bridge,
        gateway: network.gateway,
        ...this.#policy,
      });
      this.#firewall = opened instanceof ContainerFirewall ? opened : opened.missing;
      if (typeof this.#firewall === "string")
        this.#log.warn("no firewall between containers", { reason: this.#firewall });
    }
    return network;
  }

  /**
   * Lends the build of a start's Dockerfile a network for its RUN steps: a
   * container of the base image on herd's bridge, a group of its own in the
   * firewall between containers (so, as an instance's container, it reaches
   * neither other containers, nor the instance ports, nor the platform's),
   * whose network namespace the steps join (`container:<id>`); removed when
   * the build ends. Never the host's network: there a step reached every
   * port of this machine, as root.
   */
  #buildNetwork(spec: StartSpec) {
    return async <T>(build: (networkMode: string) => Promise<T>): Promise<T> => {
      const network = await this.#ensureNetwork();
      const key = `build:${spec.id}:${randomUUID().slice(0, 8)}`;
      const created = await this.#api.call<{ Id: string }>({
        method: "POST",
        path: "/containers/create",
        query: { name: this.#containerName(key.replaceAll(":", "-")) },
        body: {
          Image: this.#options.baseImage,
          Entrypoint: ["/bin/sleep"],
          Cmd: [String(BUILD_SANDBOX_S)],
          Labels: { [LABEL_ROOT]: this.#stateRoot, [LABEL_BUILD]: spec.id },
          HostConfig: {
            NetworkMode: network.name,
            CapDrop: ["NET_RAW"],
            LogConfig: { Type: "none", Config: {} },
            ...(existsSync("/proc/sys/net/ipv6")
              ? { Sysctls: { "net.ipv6.conf.all.disable_ipv6": "1" } }
              : {}),
          },
        },
      });
      try {
        await this.#api.call({ method: "POST", path: `/containers/${created.Id}/start` });
        if (this.#firewall instanceof ContainerFirewall) {
          const info = await this.#inspectContainer(created.Id);
          const ip = info.NetworkSettings?.Networks?.[HERD_NETWORK]?.IPAddress;
          if (!ip)
            throw new HerdError(
              "unavailable",
              `the build sandbox of ${spec.id} has no address on the herd network`,
            );
          this.#firewall.set(key, { ip, group: key, port: 0, forwarded: [] });
          this.#applyFirewall();
        }
        return await build(`container:${created.Id}`);
      } finally {
        this.#forget(key);
        await this.#api
          .call({ method: "DELETE", path: `/containers/${created.Id}`, query: { force: "true" } })
          .catch((err) => this.#log.warn("cannot remove a build's sandbox container", { id: spec.id, err }));
      }
    };
  }

  /** Names a running container in the firewall's rules (applied by #applyFirewall). */
  #admit(id: string, info: ContainerInspect, gateway: string): void {
    if (!(this.#firewall instanceof ContainerFirewall)) return;
    const ip = info.NetworkSettings?.Networks?.[HERD_NETWORK]?.IPAddress;
    if (!ip) throw new HerdError("unavailable", `container of ${id} has no address on the herd network`);
    const labels = info.Config.Labels;
    this.#firewall.set(id, {
      ip,
      group: labels["herd.group"] ?? "",
      port: Number(labels["herd.port"]),
      forwarded: forwardedPorts(info.Config.Env ?? [], gateway),
    });
  }

  /** Takes a container that is gone out of the rules (the tables go with the last one). */
  #forget(id: string): void {
    if (!(this.#firewall instanceof ContainerFirewall)) return;
    this.#firewall.delete(id);
    try {
      this.#applyFirewall();
    } catch (err) {
      this.#log.warn("cannot update the container firewall", { id, err });
    }
  }

  #applyFirewall(): void {
    if (this.#firewall instanceof ContainerFirewall) this.#firewall.apply();
  }

  /** Removes old built images nothing uses (one collection at a time; a failure is logged only). */
  #collectImages(): void {
    if (this.#collecting) return;
    this.#collecting = true;
    collectImages(this.#api, this.#log, this.#options.keepImages ?? DEFAULT_KEEP_IMAGES)
      .catch((err) => this.#log.warn("cannot collect old images", { err }))
      .finally(() => {
        this.#collecting = false;
      });
  }

  /** What the image says of itself: its command and env. */
  async #imageConfig(image: string): Promise<ImageConfig> {
    const info = await this.#api.call<{ Config: ImageConfig | null }>({ path: `/images/${image}/json` });
    return info.Config ?? { Entrypoint: null, Cmd: null, Env: null };
  }

  #track(record: DriverRecord, info: ContainerInspect): Tracked {
    let markGone = () => {};
    const gone = new Promise<void>((resolve) => {
      markGone = resolve;
    });
    const labels = info.Config.Labels;
    const t: Tracked = {
      record,
      stateDir: labels["herd.state-dir"],
      stopping: false,
      gone,
      markGone,
      process: {
        id: record.id,
        generation: Number(labels["herd.generation"]),
        pid: info.State.Pid,
        port: Number(labels["herd.port"]),
        startedAt: info.State.StartedAt,
        ...probeHostOf(info),
        state: "running",
      },
    };
    this.#tracked.set(record.id, t);
    if (!this.#rotateTimer && !this.#closed) {
      this.#rotateTimer = setInterval(() => this.#rotateLogs(), ROTATE_CHECK_MS);
      this.#rotateTimer.unref();
    }
    return t;
  }

  /** Waits on the engine for the container to stop running, then records how it ended. */
  #watch(t: Tracked): void {
    const watch = new AbortController();
    t.watch = watch;
    this.#api
      .call({
        method: "POST",
        path: `/containers/${t.record.container}/wait`,
        query: { condition: "not-running" },
        signal: watch.signal,
      })
      .then(() => this.#inspectContainer(t.record.container))
      .then(
        (info) => this.#exited(t, info),
        (err) => {
          if (watch.signal.aborted || this.#closed) return;
          this.#log.warn("lost the container", { id: t.record.id, err });
          this.#exited(t, undefined);
        },
      );
  }

  /** Records the end of an instance; reports it to listeners unless stop() asked for it or `report` is false. */
  #exited(t: Tracked, info: ContainerInspect | undefined, report = true): void {
    if (t.process.state !== "running" || this.#closed) return;
    const stopped = t.stopping || t.record.stopped === true;
    t.process.state = stopped ? "stopped" : "exited";
    this.#forget(t.record.id);
    t.process.exitCode = info ? info.State.ExitCode : null;
    t.process.signal = null;
    if (info?.State.OOMKilled && !stopped) t.process.oomKilled = true;
    t.markGone();
    if (stopped || !report) return;
    this.#log.info("exited", { id: t.record.id, code: t.process.exitCode });
    const p = { ...t.process };
    for (const listener of this.#listeners) listener(p);
  }

  async #inspectContainer(container: string): Promise<ContainerInspect> {
    return this.#api.call<ContainerInspect>({ path: `/containers/${container}/json` });
  }

  /** One engine may serve several agents (tests): the name carries a hash of the state root. */
  #containerName(id: string): string {
    let h = 0;
    for (const c of this.#stateRoot) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return `herd-${h.toString(16)}-${id}`;
  }

  #recordFile(id: string): string {
    return join(this.#stateRoot, `${id}.json`);
  }

  #readRecord(id: string): DriverRecord | undefined {
    try {
      return JSON.parse(readFileSync(this.#recordFile(id), "utf8")) as DriverRecord;
    } catch {
      return undefined;
    }
  }

  #writeRecord(record: DriverRecord): void {
    const file = this.#recordFile(record.id);
    writeFileSync(`${file}.tmp`, JSON.stringify(record));
    renameSync(`${file}.tmp`, file);
  }

  #rotateLogs(): void {
    const max = this.#options.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES;
    for (const t of this.#tracked.values()) {
      if (t.process.state !== "running") continue;
      rotateInstanceLogs(t.stateDir, max, (file, err) =>
        this.#log.warn("cannot rotate the log", { id: t.record.id, file, err }),
      );
    }
  }
}

/** The image's own entrypoint and command, run by the wrapper when the spec gives no command. */
function imageCommand(image: string | undefined, config: ImageConfig | undefined): string[] {
  if (!image) throw new HerdError("invalid", "an instance without an image needs a command");
  const command = [...(config?.Entrypoint ?? []), ...(config?.Cmd ?? [])];
  if (command.length === 0)
    throw new HerdError("invalid", `image ${image} names no command and none was given`);
  return command;
}

/** Whether the spec's env or the image's own sets HOME. */
function hasHome(env: Record<string, string>, config: ImageConfig | undefined): boolean {
  return "HOME" in env || (config?.Env ?? []).some((e) => e.startsWith("HOME="));
}

/** Whether pid is a live process (a zombie not yet reaped is gone). */
function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/**
 * Connects to the engine on `socket`, makes sure it has the base image and
 * returns a driver (the agent's `--docker-socket`). The static busybox is
 * Debian's busybox-static (/bin/busybox) unless `busybox` names another.
 */
export async function connectDocker(options: {
  socket: string;
  stateRoot: string;
  busybox?: string;
  registry?: RegistryAccess;
  logger?: Logger;
}): Promise<DockerDriver> {
  const busybox = options.busybox ?? "/bin/busybox";
  // ldd fails on a static binary: a dynamic busybox would not run inside an image without its libraries.
  if (!existsSync(busybox) || spawnSync("ldd", [busybox], { stdio: "ignore" }).status === 0) {
    throw new HerdError("unavailable", `${busybox} is not a static busybox: install busybox-static`);
  }
  const api = new DockerApi(options.socket);
  const baseImage = await ensureBaseImage(api, busybox);
  return new DockerDriver({ ...options, api, baseImage, busybox });
}

/** A running container's address on herd's bridge, where its health probes go (InstanceProcess.probeHost). */
function probeHostOf(info: ContainerInspect): { probeHost?: string } {
  const ip = info.State.Running ? info.NetworkSettings?.Networks?.[HERD_NETWORK]?.IPAddress : undefined;
  return ip ? { probeHost: ip } : {};
}
