/**
 * `herd gateway --workers N`: one primary process and N worker processes
 * (node:cluster) that share the listening port.
 *
 * The primary serves no request. It follows the control plane once
 * (ConfigSource: snapshot, watch, disk cache) and sends each new set of
 * objects to every worker over IPC; each worker builds its own RouteTable
 * from them and proxies (cluster-worker.ts). So the control plane sees one
 * watch per machine, not one per core, only the primary writes the cache,
 * and all workers switch to the same table version together.
 *
 * Each worker answers every configuration with an ACK (built and serving it)
 * or a NACK (refused, with the reason); the primary reports the gateway as a
 * whole to the control plane (status-reporter.ts): a version counts as applied
 * once every live worker serves it.
 * The primary also serves GET /metrics on its own port: at each scrape it
 * asks every worker for its counters over IPC and adds them up.
 *
 * Rate limits hold for the gateway as a whole: the primary keeps the buckets
 * (in its table's limits) and leases tokens to the workers (rate-lease.ts).
 *
 * Service discovery's internal listener (`internalPort`): the primary picks
 * its port and key (internal-listener.ts) and hands them to every worker in
 * its settings (the environment, never the command line); each worker
 * listens on that port with SO_REUSEPORT, and once all do the primary
 * publishes `internal.json` for the node's agent.
 *
 * A worker that dies is forked again (backoff after quick repeated deaths).
 * Workers exit when their IPC channel to the primary closes, so a primary
 * killed with SIGKILL leaves no worker holding the port.
 */

import cluster, { type Worker } from "node:cluster";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { HerdError } from "../common/errors.ts";
import { freePort } from "../common/free-port.ts";
import { createLogger } from "../common/log.ts";
import { type MetricsServer, startMetricsServer } from "../common/metrics-server.ts";
import { inheritedExecArgv } from "../common/node-runtime.ts";
import type { GatewayReport } from "../model/live-config.ts";
import { ConfigSource } from "./config-source.ts";
import {
  type CloseOptions,
  defaultGatewayId,
  type Gateway,
  type GatewayOptions,
  type HoldSettings,
  type HttpsSettings,
  jwksSettings,
  reachableHost,
  reportOf,
} from "./gateway.ts";
import { ActiveProber } from "./health-probe.ts";
import { chooseInternalAddress, publishInternal } from "./internal-listener.ts";
import { cumulativeOnly, type Family, mergeFamilies, renderText, tableFamilies } from "./metrics.ts";
import { type LeaseRequest, LeaseServer } from "./rate-lease.ts";
import { RouteLimit } from "./route-limit.ts";
import { EMPTY_TABLE, type RouteObjects, type RouteTable } from "./route-table.ts";
import { StatusReporter } from "./status-reporter.ts";
import { loadCertificates } from "./tls.ts";

/** The worker's entry module. */
const WORKER_MAIN = fileURLToPath(new URL("./cluster-worker.ts", import.meta.url));

/** Environment variable that carries a worker's settings (JSON of WorkerSettings). */
export const WORKER_ENV = "HERD_GATEWAY_WORKER";

/** What a worker is told at fork time. */
export interface WorkerSettings {
  port: number;
  host: string;
  upstreamTimeoutMs?: number;
  /** How many workers share the traffic (concurrency limits are split among them; rate limits are leased). */
  workers: number;
  /** HTTPS beside HTTP (a fixed port here); each worker loads and watches the certificates itself. */
  https?: HttpsSettings;
  /** Where each worker ships its spans (the control plane), and the share of new traces recorded. */
  traces?: { server: string; token: string; sample: number };
  /** The control plane, for ACME challenges and routed hosts' certificates. */
  control: { server: string; token: string };
  /** Where and how often each worker reports its live load (its own reporter id, `<gateway id>.w<n>`). */
  load?: { server: string; token: string; id: string; loadIntervalMs?: number };
  /** Each worker binds its own socket with SO_REUSEPORT (a successor gateway can bind beside them). */
  reusePort?: boolean;
  /** Route JWKS: internal ranges URLs may reach (`--allow-fetch`), the JWKS directory (`--jwks-dir`). */
  allowFetch?: readonly string[];
  jwksDir?: string;
  /** Requests held for services scaled to zero (hold.ts), per worker. */
  hold?: HoldSettings;
  /** Service discovery's internal listener: every worker listens on this loopback port (SO_REUSEPORT) and checks caller tokens with this key (base64url). */
  internal?: { port: number; key: string };
  /** The control plane's CA (PEM), trusted beside the system's (and NODE_EXTRA_CA_CERTS, left as it was). */
  ca?: string;
}

/** Primary → worker: the objects to build a table from. */
export interface ConfigMessage {
  type: "config";
  revision: number;
  objects: RouteObjects;
}

/** Primary → worker: the instances the active probes found down (all of them, each time). */
export interface HealthMessage {
  type: "health";
  down: string[];
}

/** Primary → worker: close and exit, draining first for `drainMs` when set (drain.ts). */
export interface StopMessage {
  type: "stop";
  drainMs?: number;
}

/** Worker → primary: one of its servers (HTTP, HTTPS) listens. */
export interface ListeningMessage {
  type: "listening";
}

/** Primary → worker: send your metrics (a MetricsReply with the same id). */
export interface MetricsRequest {
  type: "metrics";
  id: number;
}

/** Worker → primary: its request counters and gauges since it started. */
export interface MetricsReply {
  type: "metrics";
  id: number;
  families: Family[];
}

/** Worker → primary: it could not listen (or start); it exits after sending this. */
export interface FailedMessage {
  type: "failed";
  message: string;
}

/** Worker → primary, after each config: serving it (ACK), or refused with the reason (NACK). */
export interface AppliedMessage {
  type: "applied";
  revision: number;
  /** Set when refused; the worker keeps its last good table. */
  error?: string;
}

/** Worker → primary. */
type WorkerMessage = FailedMessage | AppliedMessage | MetricsReply | LeaseRequest | ListeningMessage;

/** How a gateway cluster is started. */
export interface GatewayClusterOptions extends GatewayOptions {
  /** Worker processes; at least 1. */
  workers: number;
  /** Delay before forking a replacement of a worker that died soon after it started; doubles up to `max`. Default 100 ms and 5 s. */
  restartBackoffMs?: { first: number; max: number };
  /** The CA (PEM) that signed the control plane's certificate (`--ca`): every worker trusts it beside the system's. */
  ca?: string;
}

/** A running gateway cluster. `table()` is the primary's copy of the table the workers serve. */
export interface GatewayCluster extends Gateway {
  /** Process ids of the workers alive now. */
  workerPids(): number[];
}

/** A worker that lived this long before dying is replaced at once and its slot's backoff is reset. */
const HEALTHY_UPTIME_MS = 10_000;

/** How long a scrape waits for a worker's counters before using its previous answer. */
const METRICS_TIMEOUT_MS = 2_000;

/** How long workers get to close before they are killed. */
const STOP_GRACE_MS = 5_000;

/** One worker position: the process filling it now and its recent deaths. */
interface Slot {
  index: number;
  worker: Worker | undefined;
  startedAt: number;
  quickDeaths: number;
  restartTimer: NodeJS.Timeout | undefined;
  /** The version the worker serves (its last ACK); -1 before its first. */
  applied: number;
  /** Its last NACK, while no later version has been applied. */
  refused: { revision: number; error: string } | undefined;
  /** The worker's last answer to a scrape (its counters up to then). */
  metrics: Family[] | undefined;
}

/**
 * Starts the primary: loads the cache, takes the first snapshot (or gives up
 * on it for now), then forks the workers and resolves once every one listens.
 * Must run in the cluster's primary process, once.
 */
export async function startGatewayCluster(options: GatewayClusterOptions): Promise<GatewayCluster> {
  if (!cluster.isPrimary) throw new Error("startGatewayCluster must run in the primary process");
  if (!(Number.isInteger(options.workers) && options.workers >= 1)) {
    throw new HerdError("invalid", `--workers must be a whole number of at least 1, got ${options.workers}`);
  }
  const logger = (options.logger ?? createLogger("herd")).child("gateway");
  const backoff = options.restartBackoffMs ?? { first: 100, max: 5_000 };
  const host = options.host ?? "0.0.0.0";
  let table: RouteTable = EMPTY_TABLE;
  let latest: ConfigMessage = {
    type: "config",
    revision: 0,
    objects: { services: [], instances: [], nodes: [] },
  };
  const slots: Slot[] = [];
  let stopping = false;
  let reporter: StatusReporter | undefined;
  let metrics: MetricsServer | undefined;
  /** Counters of workers that died, as of their last answer, so the sums never go backwards. */
  const retired = new Map<string, Family>();
  /** Scrapes waiting for a worker's answer, by request id. */
  const pendingScrapes = new Map<number, (families: Family[]) => void>();
  let nextScrapeId = 0;

  // The buckets of every rate limit, for the whole gateway; workers lease tokens from them.
  const leases = new LeaseServer((spec, route) => new RouteLimit(JSON.parse(spec), 1, route));
  let health: HealthMessage = { type: "health", down: [] };
  const broadcast = (message: ConfigMessage | HealthMessage | StopMessage): void => {
    for (const slot of slots) {
      if (slot.worker?.isConnected()) slot.worker.send(message);
    }
  };
  const source = new ConfigSource({
    server: options.server.replace(/\/+$/, ""),
    token: options.token,
    dataDir: options.dataDir,
    logger,
    build: jwksSettings(options),
    onTable: (next) => {
      table = next;
      prober.update(next);
      leases.update([...next.entries()].flatMap((entry) => (entry.limit !== null ? [entry.limit] : [])));
    },
    onObjects: (objects, revision) => {
      latest = { type: "config", revision, objects };
      broadcast(latest);
    },
    // A NACK of the primary's own build (the workers never get that config); ACKs wait for the workers.
    onResult: () => reporter?.changed(),
  });

  /** The gateway as a whole: a version is applied once every live worker serves it. */
  const report = (url: string): GatewayReport | undefined => {
    const result = source.lastResult;
    if (result === undefined) return undefined;
    const base = {
      url,
      workers: options.workers,
      routes: table.routeCount,
      ...(metrics ? { metricsUrl: metrics.url } : {}),
    };
    const live = slots.filter((slot) => slot.worker !== undefined && slot.applied >= 0);
    const serving = live.length > 0 ? Math.min(...live.map((slot) => slot.applied)) : 0;
    if (!result.applied) return { ...reportOf(result), ...base, serving };
    const refused = live.find((slot) => slot.refused !== undefined);
    if (refused?.refused !== undefined) {
      const pid = refused.worker?.process.pid;
      return {
        ...base,
        version: refused.refused.revision,
        applied: false,
        error: `worker ${pid}: ${refused.refused.error}`,
        serving,
      };
    }
    if (live.length === 0) {
      return { ...base, version: result.version, applied: false, error: "no worker is serving", serving: 0 };
    }
    return { ...base, version: serving, applied: true, serving };
  };
  // The primary probes, once for the machine; workers only apply its verdicts.
  const prober = new ActiveProber({
    logger,
    onChange: (down) => {
      health = { type: "health", down: [...down] };
      broadcast(health);
    },
  });

  // A fixed port for every worker, also for the ones forked later: with port 0
  // each fork could otherwise get another random port once all workers are gone.
  const port = options.port === 0 ? await freePort(host) : (options.port ?? 8080);
  // Bad certificate files fail here, with the flag named, rather than in every worker.
  if (options.https) loadCertificates(options.https.certificates);
  const https: HttpsSettings | undefined = options.https && {
    ...options.https,
    port: options.https.port === 0 ? await freePort(host) : options.https.port,
  };
  const internal =
    options.internalPort === undefined
      ? undefined
      : await chooseInternalAddress(options.dataDir, options.internalPort, logger);
  const settings: WorkerSettings = {
    port,
    host,
    upstreamTimeoutMs: options.upstreamTimeoutMs,
    workers: options.workers,
    https,
    allowFetch: options.allowFetch,
    jwksDir: jwksSettings(options).jwksDir,
    control: { server: options.server.replace(/\/+$/, ""), token: options.token },
    ...((options.traceSample ?? 1) > 0
      ? { traces: { server: options.server, token: options.token, sample: options.traceSample ?? 1 } }
      : {}),
    reusePort: options.reusePort ?? false,
    ...(options.hold ? { hold: options.hold } : {}),
    ...(internal ? { internal: { port: internal.port, key: internal.key.toString("base64url") } } : {}),
    ...(options.ca ? { ca: options.ca } : {}),
  };
  const gatewayId = options.id ?? defaultGatewayId(port);
  // Workers accept from the shared socket themselves. With round-robin the primary accepts and
  // hands each connection over IPC: a cost per connection on one core, and a connection handed to
  // a worker that just died hangs until the client gives up.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // Workers proxy: V8's default young generation, not the primary's smaller one; the hooks that load herd's TypeScript.
  cluster.setupPrimary({ exec: WORKER_MAIN, args: [], execArgv: inheritedExecArgv() });

  /** Forks the worker for a slot; resolves when it listens, rejects when it fails first. */
  const fork = (slot: Slot): Promise<void> => {
    slot.restartTimer = undefined;
    slot.startedAt = performance.now();
    // Each worker reports its own load, under an id that outlives its restarts; the control plane sums them.
    const load = {
      server: options.server,
      token: options.token,
      id: `${gatewayId}.w${slot.index}`,
      loadIntervalMs: options.loadIntervalMs,
    };
    const worker = cluster.fork({
      [WORKER_ENV]: JSON.stringify({ ...settings, load } satisfies WorkerSettings),
    });
    slot.worker = worker;
    let failure: string | undefined;
    slot.applied = -1;
    slot.refused = undefined;
    let servers = 1 + (https ? 1 : 0) + (internal ? 1 : 0);
    let listened: () => void = () => {};
    worker.on("message", (message: WorkerMessage) => {
      if (message?.type === "listening") {
        // One per server: HTTP, and HTTPS and the internal listener when on. (A worker that binds with SO_REUSEPORT listens
        // on its own socket, so node:cluster emits no "listening" for it: the worker says so itself.)
        if (--servers === 0) listened();
      } else if (message?.type === "lease") {
        if (worker.isConnected()) worker.send(leases.grant(message, Date.now()));
      } else if (message?.type === "failed") failure = message.message;
      else if (message?.type === "metrics") pendingScrapes.get(message.id)?.(message.families);
      else if (message?.type === "applied" && slot.worker === worker) {
        if (message.error === undefined) {
          slot.applied = message.revision;
          slot.refused = undefined;
        } else {
          slot.refused = { revision: message.revision, error: message.error };
        }
        reporter?.changed();
      }
    });
    // Queued on the IPC channel until the worker reads it; it listens after its first config.
    worker.send(latest);
    if (health.down.length > 0) worker.send(health);
    const listening = new Promise<void>((resolve, reject) => {
      listened = resolve;
      worker.once("exit", (code, signal) =>
        reject(
          new HerdError(
            "unavailable",
            failure ??
              `gateway worker ${worker.process.pid} exited (${signal ?? `code ${code}`}) while starting`,
          ),
        ),
      );
    });
    worker.once("exit", (code, signal) => onExit(slot, worker, code, signal));
    return listening;
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null): void => {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    // What it counted since its last answer is lost; what it counted before that stays in the sums.
    if (slot.metrics !== undefined) mergeFamilies(retired, cumulativeOnly(slot.metrics));
    slot.metrics = undefined;
    if (stopping) return;
    reporter?.changed();
    const uptime = performance.now() - slot.startedAt;
    slot.quickDeaths = uptime >= HEALTHY_UPTIME_MS ? 0 : slot.quickDeaths + 1;
    const delay =
      slot.quickDeaths <= 1 ? 0 : Math.min(backoff.first * 2 ** (slot.quickDeaths - 2), backoff.max);
    logger.warn("gateway worker died; starting another", {
      pid: worker.process.pid,
      exit: signal ?? code,
      restartInMs: delay,
    });
    slot.restartTimer = setTimeout(() => {
      fork(slot).catch((err: Error) => {
        logger.error("replacement gateway worker failed to start", { error: err });
      });
    }, delay);
  };

  /** One worker's counters now; its previous answer (counters only) when it does not answer in time. */
  const askWorker = (slot: Slot): Promise<{ families: Family[]; fresh: boolean }> => {
    const worker = slot.worker;
    const stale = { families: cumulativeOnly(slot.metrics ?? []), fresh: false };
    if (worker === undefined || !worker.isConnected()) return Promise.resolve(stale);
    const id = nextScrapeId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        pendingScrapes.delete(id);
        resolve(stale);
      }, METRICS_TIMEOUT_MS);
      pendingScrapes.set(id, (families) => {
        clearTimeout(timer);
        pendingScrapes.delete(id);
        // An answer from a worker that has been replaced since is not this slot's.
        if (slot.worker === worker) slot.metrics = families;
        resolve({ families, fresh: true });
      });
      worker.send({ type: "metrics", id } satisfies MetricsRequest);
    });
  };

  /** The whole gateway's metrics: every worker's, those of dead ones, and the table's. */
  const renderMetrics = async (): Promise<string> => {
    const answers = await Promise.all(slots.map(askWorker));
    const merged = new Map<string, Family>();
    mergeFamilies(merged, retired.values());
    for (const answer of answers) mergeFamilies(merged, answer.families);
    const alive = slots.filter((slot) => slot.worker !== undefined && !slot.worker.isDead()).length;
    const missing: Family = {
      name: "herd_gateway_metrics_stale_workers",
      help: "Workers that did not answer this scrape in time: their counters are from their previous answer.",
      type: "gauge",
      merge: "max",
      samples: [{ labels: "", value: answers.filter((a) => !a.fresh).length }],
    };
    return renderText([...merged.values(), ...tableFamilies(table, alive), missing]);
  };

  const stop = async ({ drainMs = 0, goodbye = true }: CloseOptions = {}): Promise<void> => {
    stopping = true;
    await reporter?.close(goodbye);
    prober.close();
    const exits: Promise<unknown>[] = [];
    for (const slot of slots) {
      clearTimeout(slot.restartTimer);
      const worker = slot.worker;
      if (worker === undefined || worker.isDead()) continue;
      exits.push(once(worker, "exit"));
      if (worker.isConnected()) worker.send({ type: "stop", drainMs } satisfies StopMessage);
      else worker.process.kill("SIGTERM");
    }
    const grace = setTimeout(() => {
      for (const slot of slots) if (slot.worker && !slot.worker.isDead()) slot.worker.process.kill("SIGKILL");
    }, STOP_GRACE_MS + drainMs);
    await Promise.all([Promise.all(exits), source.close(), metrics?.close()]);
    clearTimeout(grace);
  };

  await source.loadCache();
  await source.start();
  for (let index = 0; index < options.workers; index++) {
    slots.push({
      index,
      worker: undefined,
      startedAt: 0,
      quickDeaths: 0,
      restartTimer: undefined,
      applied: -1,
      refused: undefined,
      metrics: undefined,
    });
  }
  try {
    await Promise.all(slots.map(fork));
    if (internal) publishInternal(internal, logger);
    if (options.metricsPort !== undefined) {
      metrics = await startMetricsServer({
        port: options.metricsPort,
        host: options.metricsHost ?? "127.0.0.1",
        orFreePort: options.metricsPortOrFree,
        logger,
        component: "gateway",
        render: renderMetrics,
      });
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const reachable = reachableHost(host);
  const url = `http://${reachable}:${port}`;
  const httpsUrl = https ? `https://${reachable}:${https.port}` : undefined;
  reporter = new StatusReporter({
    server: options.server,
    token: options.token,
    id: gatewayId,
    logger,
    intervalMs: options.statusIntervalMs,
    current: () => report(url),
  });
  reporter.start();
  logger.info("gateway listening", {
    url,
    httpsUrl,
    metrics: metrics?.url,
    workers: options.workers,
    version: table.version,
    routes: table.routeCount,
  });
  return {
    port,
    url,
    metricsUrl: metrics?.url,
    httpsPort: https?.port,
    httpsUrl,
    table: () => table,
    reconnect: () => source.reconnect(),
    workerPids: () =>
      slots.flatMap((slot) => (slot.worker?.process.pid !== undefined ? [slot.worker.process.pid] : [])),
    close: stop,
  };
}
