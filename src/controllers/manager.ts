/**
 * Runs the controllers: the store's watch and a periodic resync feed keys
 * (names only, never event payloads) into one work queue per controller.
 *
 *   store.watch ─► key of the object it touches ─► queue ─► reconcile(key)
 *   every resyncMs: every service, deploy and destroying app is queued again
 *   every 250 ms:   node heartbeats are checked
 *   version sets applying: looked at again every 300 ms while a deploy of theirs runs
 *   every 500 ms:   the autoscaler decides for each autoscaled service (autoscale.ts)
 *   every second:   preview apps past their deadline are destroyed (environments.ts)
 */

import { WorkQueue } from "../common/work-queue.ts";
import type { App, Deploy, Instance, Service } from "../model/objects.ts";
import type { VersionSet } from "../model/version-set.ts";
import type { Informer } from "../store/informer.ts";
import { AppController } from "./app-controller.ts";
import { Autoscaler, type AutoscaleSources } from "./autoscale.ts";
import type { Context } from "./context.ts";
import { DeployController, deployKey } from "./deploy-controller.ts";
import { PreviewReaper } from "./environments.ts";
import { JobsController, type RunOutput } from "./jobs.ts";
import { NodeController } from "./node-controller.ts";
import { type EndpointSource, RolloutController } from "./rollout-controller.ts";
import { ServiceController } from "./service-controller.ts";
import { SetController } from "./set-controller.ts";

/**
 * Services reconciled at once. A reconcile mostly waits for its writes to
 * commit, and the store commits every write asked for in one turn together:
 * a scale of 100 services placed in one round reaches each node as one change
 * (one wake, one heartbeat), where 4 at a time reached it as 25 (bench:control-plane).
 */
const SERVICE_WORKERS = 128;

/** How often node liveness is checked, and how late a check may come before it excuses the nodes (ms). */
const NODE_CHECK_MS = 250;
const NODE_CHECK_LATE_MS = 50;

export class ControllerManager {
  readonly services: ServiceController;
  readonly deploys: DeployController;
  readonly nodes: NodeController;
  readonly apps: AppController;
  readonly autoscaler: Autoscaler;
  /** Canary steps and blue/green switches (rollout-controller.ts). */
  readonly rollouts: RolloutController;
  /** herd.set.yaml applies (set-controller.ts). */
  readonly sets: SetController;
  /** One-off runs, release phases and scheduled jobs (jobs.ts). */
  readonly jobs: JobsController;
  /** Destroys preview apps after their TTL (environments.ts). */
  readonly previews: PreviewReaper;
  /** The informer the controllers read (for the heartbeat route's lookups). */
  readonly informer: Informer;
  readonly #ctx: Context;
  /** Services with instances waiting for a node: looked at again whenever resources are freed. */
  readonly #waiting = new Set<string>();
  /**
   * Services in a progressive rollout and apps being destroyed, as the watch last said: only
   * their instances' changes concern the rollout and app controllers (every instance write
   * queued both, each reconcile a store read, for the 99 % of services in neither).
   */
  readonly #progressive = new Set<string>();
  readonly #destroying = new Set<string>();
  readonly #serviceQueue: WorkQueue;
  readonly #deployQueue: WorkQueue;
  readonly #appQueue: WorkQueue;
  readonly #rolloutQueue: WorkQueue;
  readonly #setQueue: WorkQueue;
  #abort = new AbortController();
  readonly #timers: NodeJS.Timeout[] = [];

  constructor(
    ctx: Context,
    sources: AutoscaleSources & { endpoints?: EndpointSource; runOutput?: RunOutput } = {},
  ) {
    this.#ctx = ctx;
    this.informer = ctx.informer;
    this.autoscaler = new Autoscaler(ctx, sources);
    this.services = new ServiceController(ctx);
    this.jobs = new JobsController(ctx, sources.runOutput);
    this.deploys = new DeployController(ctx, (d, r, log) => this.jobs.releasePhase(d, r, log));
    this.nodes = new NodeController(ctx);
    this.apps = new AppController(ctx);
    this.rollouts = new RolloutController(ctx, sources.endpoints);
    this.sets = new SetController(ctx, this.deploys);
    this.previews = new PreviewReaper(ctx);
    const logger = ctx.logger.child("controllers");
    this.#serviceQueue = new WorkQueue({
      name: "service",
      logger,
      workers: SERVICE_WORKERS,
      reconcile: async (key) => {
        const r = await this.services.reconcile(key);
        if (r.requeueAfterMs !== undefined) this.#serviceQueue.addAfter(key, r.requeueAfterMs);
      },
    });
    this.#deployQueue = new WorkQueue({
      name: "deploy",
      logger,
      reconcile: (key) => this.deploys.reconcile(key),
    });
    this.#rolloutQueue = new WorkQueue({
      name: "rollout",
      logger,
      reconcile: async (key) => {
        const after = await this.rollouts.reconcile(key);
        if (after !== undefined) this.#rolloutQueue.addAfter(key, after);
      },
    });
    this.#setQueue = new WorkQueue({
      name: "set",
      logger,
      reconcile: async (key) => {
        const after = await this.sets.reconcile(key);
        if (after !== undefined) this.#setQueue.addAfter(key, after);
      },
    });
    this.#appQueue = new WorkQueue({
      name: "app",
      logger,
      reconcile: async (key) => {
        if (await this.apps.reconcile(key)) this.#appQueue.addAfter(key, 1000);
      },
    });
  }

  /**
   * Starts watching and resyncing. May be called again after stop: a server
   * that lost the leadership (store/leadership.ts) and won it back.
   */
  async start(resyncMs = 5000): Promise<void> {
    const { store } = this.#ctx;
    this.#abort = new AbortController();
    for (const q of this.#queues()) q.resume();
    // Heartbeats this server saw in an earlier term are old: give every node a full timeout.
    this.nodes.restartClock();
    const from = await store.revision();
    void this.#follow(from);
    await this.resync();
    this.#timers.push(
      setInterval(
        () => void this.resync().catch((err) => this.#ctx.logger.warn("resync failed", { err })),
        resyncMs,
      ),
    );
    // A tick that fires late means the server was behind (a busy event loop): that long is
    // nobody's silence. Measured on the real clock, whatever clock the controllers use.
    let lastCheck = performance.now();
    this.#timers.push(
      setInterval(() => {
        const t = performance.now();
        const late = t - lastCheck - NODE_CHECK_MS;
        lastCheck = t;
        if (late > NODE_CHECK_LATE_MS) this.nodes.excuse(late);
        void this.nodes.checkNodes().catch((err) => this.#ctx.logger.warn("node check failed", { err }));
      }, NODE_CHECK_MS),
    );
    for (const t of this.#timers) t.unref();
    this.autoscaler.start();
    this.jobs.start();
    this.previews.start();
  }

  /** Queues every service, deploy in flight and destroying app. */
  async resync(): Promise<void> {
    const { store, informer } = this.#ctx;
    await informer.sync();
    for (const o of informer.list<Service>("service")) {
      this.#serviceQueue.add(o.key);
      if (o.value.progressive) {
        this.#progressive.add(o.key);
        this.#rolloutQueue.add(o.key);
      }
    }
    for (const o of (await store.list<Deploy>("deploy")).items) {
      if (o.value.state === "building" || o.value.state === "rolling_out") this.#deployQueue.add(o.key);
    }
    for (const o of (await store.list<App>("app")).items) {
      if (!o.value.destroying) continue;
      this.#destroying.add(o.key);
      this.#appQueue.add(o.key);
    }
    for (const o of (await store.list<VersionSet>("version_set")).items)
      if (o.value.state === "applying" || o.value.state === "rolling_back") this.#setQueue.add(o.key);
    // Instances whose service is gone still need stopping.
    for (const service of informer.values("instance", "service")) this.#serviceQueue.add(service);
    // Also after a restart: services waiting for room are looked at again when a node changes.
    for (const o of informer.list<Instance>("instance"))
      if (o.value.state === "pending" && !o.value.node)
        this.#waiting.add(`${o.value.tenant}/${o.value.app}/${o.value.service}`);
  }

  async #follow(from: number): Promise<void> {
    const { store, logger } = this.#ctx;
    let revision = from;
    while (!this.#abort.signal.aborted) {
      try {
        for await (const ev of store.watch({
          kinds: ["service", "instance", "deploy", "app", "node", "version_set"],
          fromRevision: revision,
          signal: this.#abort.signal,
        })) {
          revision = ev.revision;
          this.#route(ev.kind, ev.key, ev.object.value, ev.type === "delete");
        }
      } catch (err) {
        if (this.#abort.signal.aborted) return;
        logger.warn("controller watch broke; resyncing", { err });
        revision = await store.revision();
        await this.resync().catch(() => {});
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** Which keys an object change concerns. */
  #route(kind: string, key: string, value: unknown, deleted: boolean): void {
    switch (kind) {
      case "service": {
        const s = value as Service;
        this.#serviceQueue.add(key);
        // A progressive rollout that ended (or its service deleted) is looked at once more, to finish.
        if (s.progressive || this.#progressive.has(key)) this.#rolloutQueue.add(key);
        if (s.progressive && !deleted) this.#progressive.add(key);
        else this.#progressive.delete(key);
        if (s.deploy) this.#deployQueue.add(deployKey({ tenant: s.tenant, app: s.app, id: s.deploy }));
        this.#wakeDestroying(`${s.tenant}/${s.app}`);
        break;
      }
      case "instance": {
        const i = value as Instance;
        const service = `${i.tenant}/${i.app}/${i.service}`;
        this.#serviceQueue.add(service);
        if (this.#progressive.has(service)) this.#rolloutQueue.add(service);
        this.#wakeDestroying(`${i.tenant}/${i.app}`);
        if (i.state === "pending" && !i.node) this.#waiting.add(service);
        else if (i.state === "provisioning") this.#waiting.delete(service);
        // Resources freed: instances waiting for room elsewhere may fit now.
        if (deleted || i.state === "stopped" || i.state === "failed") {
          for (const w of this.#waiting) this.#serviceQueue.add(w);
        }
        break;
      }
      case "deploy":
        this.#deployQueue.add(key);
        break;
      case "app":
        if ((value as App).destroying && !deleted) this.#destroying.add(key);
        else this.#destroying.delete(key);
        this.#appQueue.add(key);
        break;
      case "version_set":
        if (!deleted) this.#setQueue.add(key);
        break;
      case "node": {
        // Capacity appeared or a node changed state: pending instances may now fit somewhere, and
        // the services on the node may have to move (drained, lost). Only those: a node is written
        // every few seconds by its heartbeats, and a whole resync per node write grows with the cluster.
        for (const w of this.#waiting) this.#serviceQueue.add(w);
        const services = new Set<string>();
        for (const o of this.#ctx.informer.by<Instance>("instance", "node", key))
          services.add(`${o.value.tenant}/${o.value.app}/${o.value.service}`);
        for (const s of services) this.#serviceQueue.add(s);
        break;
      }
    }
  }

  /** Queues an app being destroyed (a change of its services or instances may let it finish). */
  #wakeDestroying(app: string): void {
    if (this.#destroying.has(app)) this.#appQueue.add(app);
  }

  /** Waits until every queue is idle (tests). */
  async idle(): Promise<void> {
    await Promise.all([
      this.#serviceQueue.idle(),
      this.#deployQueue.idle(),
      this.#appQueue.idle(),
      this.#rolloutQueue.idle(),
      this.#setQueue.idle(),
    ]);
  }

  stop(): void {
    this.#abort.abort();
    void this.nodes.flushEvents();
    this.autoscaler.stop();
    this.jobs.stop();
    this.previews.stop();
    for (const t of this.#timers) clearInterval(t);
    this.#timers.length = 0;
    for (const q of this.#queues()) q.stop();
  }

  #queues(): WorkQueue[] {
    return [this.#serviceQueue, this.#deployQueue, this.#appQueue, this.#rolloutQueue, this.#setQueue];
  }
}
