/**
 * Service discovery's registry (docs/service-discovery.md): each service's
 * healthy endpoints with weights and metadata, and a version cursor to watch
 * them by, for clients that balance themselves.
 *
 *   store list + watch (service, instance, node) ─► in memory: services, instances, nodes
 *     each change ─► the endpoint lists of the services it touches, made again
 *                    ─► differ from the last? changedAt[service] = revision ─► open waits return
 *
 * An endpoint is an instance that is `running` on a `ready` node (what the
 * gateway routes to; its per-gateway health probes are not in the store).
 * Weight: each release's share of the traffic (100, or during a canary or
 * blue/green rollout the new release's `weight` and the old one's rest),
 * split evenly over that release's endpoints, as the gateway splits it.
 * `version` is the store revision of the service's last endpoint change (at
 * least the revision the registry started from), so it only grows.
 */

import { HerdError } from "../common/errors.ts";
import type { Instance, Node, Service } from "../model/objects.ts";
import { serviceKey } from "../model/objects.ts";
import type { Store, WatchEvent } from "../store/store.ts";

export interface ServiceEndpoint {
  instance: string;
  address: string;
  port: number;
  weight: number;
  metadata: { node: string; release: number; labels: Record<string, string> };
}

export interface EndpointList {
  app: string;
  service: string;
  version: number;
  endpoints: ServiceEndpoint[];
}

export class ServiceEndpoints {
  readonly #store: Store;
  readonly #signal: AbortSignal;
  readonly #warn: (message: string, err: unknown) => void;
  readonly #services = new Map<string, Service>();
  readonly #instances = new Map<string, Instance>();
  readonly #nodes = new Map<string, Node>();
  /** Per service key: its last endpoint list as JSON, and the revision it became so. */
  readonly #last = new Map<string, { json: string; at: number }>();
  readonly #waiters = new Map<string, Set<() => void>>();
  #floor = 0;
  #started: Promise<void> | undefined;

  constructor(store: Store, signal: AbortSignal, warn: (message: string, err: unknown) => void) {
    this.#store = store;
    this.#signal = signal;
    this.#warn = warn;
  }

  /**
   * The service's endpoints; with `since`, once its version is above it (at
   * once when it already is), or after `timeoutMs` with the same version.
   * Undefined when the service does not exist.
   */
  async get(
    tenant: string,
    app: string,
    service: string,
    since: number | undefined,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<EndpointList | undefined> {
    this.#started ??= this.#follow();
    await this.#started;
    const key = serviceKey(tenant, app, service);
    if (!this.#services.has(key)) return undefined;
    if (since !== undefined && this.#version(key) <= since && !signal.aborted && !this.#signal.aborted) {
      await new Promise<void>((resolve) => {
        let set = this.#waiters.get(key);
        if (set === undefined) {
          set = new Set();
          this.#waiters.set(key, set);
        }
        const waiters = set;
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          this.#signal.removeEventListener("abort", done);
          waiters.delete(done);
          if (waiters.size === 0 && this.#waiters.get(key) === waiters) this.#waiters.delete(key);
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        signal.addEventListener("abort", done, { once: true });
        this.#signal.addEventListener("abort", done, { once: true });
        waiters.add(done);
      });
    }
    if (!this.#services.has(key)) return undefined;
    return { app, service, version: this.#version(key), endpoints: this.#endpoints(key) };
  }

  #version(key: string): number {
    return Math.max(this.#floor, this.#last.get(key)?.at ?? 0);
  }

  /** The endpoints of a service from what is in memory now. */
  #endpoints(key: string): ServiceEndpoint[] {
    const service = this.#services.get(key);
    if (service === undefined) return [];
    const running: { instance: Instance; node: Node }[] = [];
    for (const instance of this.#instances.values()) {
      if (serviceKey(instance.tenant, instance.app, instance.service) !== key) continue;
      if (instance.state !== "running" || instance.node === null || instance.port === undefined) continue;
      const node = this.#nodes.get(instance.node);
      if (node === undefined || node.state !== "ready") continue;
      running.push({ instance, node });
    }
    running.sort((a, b) => (a.instance.id < b.instance.id ? -1 : a.instance.id > b.instance.id ? 1 : 0));
    const progressive = service.progressive;
    const fresh = progressive ? running.filter((r) => r.instance.release === progressive.release).length : 0;
    const split = progressive !== undefined && fresh > 0 && fresh < running.length;
    return running.map(({ instance, node }) => {
      let share = 100 / running.length;
      if (split) {
        const isFresh = instance.release === progressive.release;
        share = isFresh ? progressive.weight / fresh : (100 - progressive.weight) / (running.length - fresh);
      }
      return {
        instance: instance.id,
        address: node.address,
        port: instance.port as number,
        weight: Math.round(share * 1000) / 1000,
        metadata: { node: node.name, release: instance.release, labels: node.labels },
      };
    });
  }

  /** Lists, then follows changes until the server closes (relisting when the watch is gone). */
  async #follow(): Promise<void> {
    const listed = await this.#list();
    void (async () => {
      let from = listed;
      while (!this.#signal.aborted) {
        try {
          for await (const event of this.#store.watch({
            kinds: ["service", "instance", "node"],
            fromRevision: from,
            signal: this.#signal,
          })) {
            this.#apply(event);
            from = event.revision;
          }
          return;
        } catch (err) {
          if (this.#signal.aborted) return;
          if (err instanceof HerdError && err.code === "gone") {
            from = await this.#list();
            for (const key of this.#services.keys()) this.#check(key, from);
            continue;
          }
          this.#warn("service endpoints: the watch failed; following again in 1 s", err);
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
    })();
  }

  async #list(): Promise<number> {
    const [services, instances, nodes] = await Promise.all([
      this.#store.list<Service>("service"),
      this.#store.list<Instance>("instance"),
      this.#store.list<Node>("node"),
    ]);
    this.#services.clear();
    this.#instances.clear();
    this.#nodes.clear();
    for (const o of services.items) this.#services.set(o.key, o.value);
    for (const o of instances.items) this.#instances.set(o.value.id, o.value);
    for (const o of nodes.items) this.#nodes.set(o.value.name, o.value);
    const revision = Math.min(services.revision, instances.revision, nodes.revision);
    this.#floor = revision;
    for (const key of this.#services.keys())
      this.#last.set(key, { json: JSON.stringify(this.#endpoints(key)), at: 0 });
    return revision;
  }

  #apply(event: WatchEvent): void {
    const touched = new Set<string>();
    if (event.kind === "service") {
      const s = event.object.value as Service;
      if (event.type === "delete") this.#services.delete(event.key);
      else this.#services.set(event.key, s);
      touched.add(event.key);
    } else if (event.kind === "instance") {
      const i = event.object.value as Instance;
      if (event.type === "delete") this.#instances.delete(i.id);
      else this.#instances.set(i.id, i);
      touched.add(serviceKey(i.tenant, i.app, i.service));
    } else if (event.kind === "node") {
      const n = event.object.value as Node;
      if (event.type === "delete") this.#nodes.delete(n.name);
      else this.#nodes.set(n.name, n);
      for (const i of this.#instances.values())
        if (i.node === n.name) touched.add(serviceKey(i.tenant, i.app, i.service));
    }
    for (const key of touched) this.#check(key, event.revision);
  }

  /** Wakes the service's waits when its endpoint list changed. */
  #check(key: string, revision: number): void {
    const exists = this.#services.has(key);
    const json = exists ? JSON.stringify(this.#endpoints(key)) : "gone";
    const last = this.#last.get(key);
    if (last !== undefined && last.json === json) return;
    this.#last.set(key, { json, at: revision });
    for (const wake of [...(this.#waiters.get(key) ?? [])]) wake();
  }
}
