/**
 * The config center over the store: versions of every namespace, an app's
 * head (stable and gray), the effective config an instance gets, and the
 * version each instance reported it applied.
 *
 *   change ─► checkEntries ─► put config_version (new key, never overwritten) ─► put config_head (CAS)
 *   heartbeat ─► forInstances(node, desired) ─► {version, onChange, document when the agent is behind}
 *             ─► recordApplied(statuses)      ─► status(app): who is behind
 *
 * Crash safety: a version is one object written with expectRevision 0; the
 * head moves only after it is stored. A crash between the two leaves a
 * version nobody was told about (its request got no reply), and the next
 * change builds on the stable version, not on it.
 */

import type { Clock } from "../common/clock.ts";
import { systemClock } from "../common/clock.ts";
import { conflict, invalid, notFound } from "../common/errors.ts";
import {
  CATALOG_LAYERS,
  type CatalogNamespace,
  type ConfigEntry,
  type ConfigFormat,
  type ConfigHead,
  type ConfigLayer,
  type ConfigOnChange,
  type ConfigVersion,
  configHeadKey,
  configVersionKey,
  type EffectiveConfig,
  type GrayTarget,
  type InstanceConfig,
  type LayerRef,
  type LayerUses,
} from "../model/config.ts";
import type { Instance, Node, Service } from "../model/objects.ts";
import type { DesiredInstance, InstanceStatus } from "../model/protocol.ts";
import type { Informer } from "../store/informer.ts";
import type { Store, StoredObject } from "../store/store.ts";
import { checkEntries } from "./entries.ts";
import { grayMembers, lowerRefs, mergeLayers } from "./merge.ts";

/** One change: what to set, remove or pin, made into the next version. */
export interface ConfigChange {
  layer: ConfigLayer;
  /** A catalog name, or `<tenant>/<app>` for the app layer. */
  namespace: string;
  author: string;
  message?: string;
  set?: Record<string, string>;
  files?: Record<string, { format: ConfigFormat; content: string }>;
  unset?: string[];
  /** App layer: the platform version to merge over (null: none). */
  platform?: LayerRef | null;
  /** App layer: the middleware versions to merge over, in order (replaces the list). */
  middleware?: LayerRef[];
  /** Restore this version's content (then set/unset apply on top). */
  rollbackTo?: number;
  /** App layer: give the new version only to these instances first. */
  gray?: GrayTarget;
}

/** An instance's config as `herd config status` shows it. */
export interface InstanceConfigStatus {
  id: string;
  service: string;
  node: string | null;
  /** The version it should have. */
  target: number;
  /** The version its agent last reported applied (absent: none reported since the server started). */
  applied?: number;
  appliedAt?: string;
  gray: boolean;
  behind: boolean;
}

/** Versions of a namespace kept in memory once merged (they never change). */
const CACHE_MAX = 500;
/** Namespaces whose latest version number is remembered. */
const LATEST_MAX = 10_000;

export class ConfigCenter {
  readonly #store: Store;
  readonly #clock: Clock;
  /** Effective configs by `<tenant>/<app>@<version>`: immutable, so kept until evicted. */
  readonly #effective = new Map<string, EffectiveConfig>();
  /** The highest version number seen per `<layer>/<namespace>` (a floor: see #latest). */
  readonly #latestSeen = new Map<string, number>();
  /** What each instance's agent last reported applied. */
  readonly #applied = new Map<string, { version: number; at: string }>();

  /** Where forInstances reads heads and services (a synced informer keeping both), else the store. */
  readonly #informer: Informer | undefined;

  /**
   * `informer` (keeping config_head and service) serves the heartbeat's reads
   * (forInstances): the caller syncs it first, so they are as fresh as the
   * store's, without a store read and a parse per app on every heartbeat.
   */
  constructor(store: Store, clock: Clock = systemClock, informer?: Informer) {
    this.#store = store;
    this.#clock = clock;
    this.#informer = informer;
  }

  /** Every version of a namespace, oldest first. */
  async versions(layer: ConfigLayer, namespace: string): Promise<ConfigVersion[]> {
    const { items } = await this.#store.list<ConfigVersion>("config_version", {
      prefix: `${layer}/${namespace}/`,
    });
    return items.map((o) => o.value);
  }

  async version(layer: ConfigLayer, namespace: string, version: number): Promise<ConfigVersion | undefined> {
    return (
      await this.#store.get<ConfigVersion>("config_version", configVersionKey(layer, namespace, version))
    )?.value;
  }

  /** A version that must exist (404 naming it otherwise). */
  async mustVersion(layer: ConfigLayer, namespace: string, version: number): Promise<ConfigVersion> {
    const v = await this.version(layer, namespace, version);
    if (!v) throw notFound(`${layer} ${namespace} has no config version ${version}`);
    return v;
  }

  /** The catalog: every platform and middleware namespace with its versions' numbers. */
  async catalog(): Promise<CatalogNamespace[]> {
    const out = new Map<string, CatalogNamespace>();
    for (const layer of CATALOG_LAYERS) {
      const { items } = await this.#store.list<ConfigVersion>("config_version", { prefix: `${layer}/` });
      for (const { value } of items) {
        const key = `${layer}/${value.namespace}`;
        let ns = out.get(key);
        if (!ns) {
          ns = { layer, name: value.namespace, versions: [] };
          out.set(key, ns);
        }
        ns.versions.push(value.version);
      }
    }
    return [...out.values()];
  }

  async head(tenant: string, app: string): Promise<ConfigHead> {
    return headOr(await this.#store.get<ConfigHead>("config_head", configHeadKey(tenant, app)), tenant, app);
  }

  /** Makes the next version of a namespace from a change; for the app layer, makes it stable or gray. */
  async change(c: ConfigChange): Promise<{ version: ConfigVersion; head?: ConfigHead }> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#changeOnce(c);
      } catch (err) {
        // Another writer took the version number or moved the head first: build on what it wrote.
        if (!(err instanceof RaceLost) || attempt >= 8)
          throw err instanceof RaceLost ? conflict(err.message) : err;
      }
    }
  }

  async #changeOnce(c: ConfigChange): Promise<{ version: ConfigVersion; head?: ConfigHead }> {
    const isApp = c.layer === "app";
    const [tenant = "", app = ""] = isApp ? c.namespace.split("/") : [];
    const headObj = isApp
      ? await this.#store.get<ConfigHead>("config_head", configHeadKey(tenant, app))
      : undefined;
    const head = headObj?.value;
    if (head?.gray) {
      throw conflict(
        `v${head.gray.version} of ${app}'s config is in gray release: promote it (herd config promote) or roll it back (herd config abort) first`,
      );
    }
    const latest = await this.#latest(c.layer, c.namespace);
    // The app builds on what runs (its stable version), lower layers on their latest.
    const baseNumber = isApp ? (head?.stable ?? 0) : latest;
    const current = baseNumber === 0 ? undefined : await this.version(c.layer, c.namespace, baseNumber);
    const base =
      c.rollbackTo === undefined || c.rollbackTo === baseNumber
        ? current
        : await this.version(c.layer, c.namespace, c.rollbackTo);
    if (c.rollbackTo !== undefined && !base)
      throw notFound(`${c.layer} ${c.namespace} has no config version ${c.rollbackTo}`);
    const entries: Record<string, ConfigEntry> = { ...(base?.entries ?? {}) };
    const changed: Record<string, ConfigEntry> = {};
    for (const name of c.unset ?? []) {
      if (!(name in entries))
        throw invalid(`unset.${name}: no such entry`, [{ field: `unset.${name}`, message: "no such entry" }]);
      delete entries[name];
    }
    for (const [name, value] of Object.entries(c.set ?? {})) changed[name] = { kind: "key", value };
    for (const [name, f] of Object.entries(c.files ?? {}))
      changed[name] = { kind: "file", format: f.format, content: f.content };
    checkEntries(changed);
    Object.assign(entries, changed);
    let uses: LayerUses | undefined = base?.uses;
    if (isApp && (c.platform !== undefined || c.middleware !== undefined)) {
      uses = { ...(uses ?? {}) };
      if (c.platform === null) delete uses.platform;
      else if (c.platform) uses.platform = c.platform;
      if (c.middleware) uses.middleware = c.middleware;
      if (uses.middleware?.length === 0) delete uses.middleware;
      for (const ref of lowerRefs(uses)) await this.mustVersion(ref.layer, ref.name, ref.version);
    } else if (!isApp && (c.platform !== undefined || c.middleware !== undefined)) {
      throw invalid("only an app's config pins platform and middleware versions", [
        { field: c.platform !== undefined ? "platform" : "middleware", message: "app layer only" },
      ]);
    }
    if (current && sameContent(current, entries, uses)) {
      throw conflict(
        `nothing to change: v${current.version} of ${c.layer} ${c.namespace} already holds this`,
      );
    }
    const next: ConfigVersion = {
      layer: c.layer,
      namespace: c.namespace,
      version: latest + 1,
      entries,
      ...(uses && (uses.platform || uses.middleware) ? { uses } : {}),
      author: c.author,
      message: c.message ?? (c.rollbackTo !== undefined ? `rollback to v${c.rollbackTo}` : ""),
      createdAt: new Date(this.#clock.now()).toISOString(),
      ...(c.rollbackTo !== undefined ? { rollbackOf: c.rollbackTo } : {}),
    };
    try {
      await this.#store.put("config_version", configVersionKey(c.layer, c.namespace, next.version), next, {
        expectRevision: 0,
      });
    } catch (err) {
      if ((err as { code?: string }).code === "conflict")
        throw new RaceLost(`config version ${next.version} was taken by another change`);
      throw err;
    }
    if (!isApp) return { version: next };
    const grayRelease = c.gray
      ? { ...c.gray, version: next.version, startedAt: next.createdAt, by: c.author }
      : undefined;
    const newHead: ConfigHead = grayRelease
      ? { tenant, app, stable: head?.stable ?? 0, gray: grayRelease }
      : { tenant, app, stable: next.version };
    await this.#putHead(newHead, headObj?.revision ?? 0);
    return { version: next, head: newHead };
  }

  /**
   * The highest version number of a namespace. Versions are never deleted, so
   * the last one seen is a floor: read forward from it (usually one get)
   * rather than listing every version on each change.
   */
  async #latest(layer: ConfigLayer, namespace: string): Promise<number> {
    const key = `${layer}/${namespace}`;
    let n = this.#latestSeen.get(key);
    if (n === undefined) n = (await this.versions(layer, namespace)).at(-1)?.version ?? 0;
    while (await this.#store.get("config_version", configVersionKey(layer, namespace, n + 1))) n++;
    if (this.#latestSeen.size >= LATEST_MAX)
      this.#latestSeen.delete(this.#latestSeen.keys().next().value as string);
    this.#latestSeen.set(key, n);
    return n;
  }

  async #putHead(head: ConfigHead, revision: number): Promise<void> {
    try {
      await this.#store.put("config_head", configHeadKey(head.tenant, head.app), head, {
        expectRevision: revision,
      });
    } catch (err) {
      if ((err as { code?: string }).code === "conflict")
        throw new RaceLost(`${head.app}'s config head moved meanwhile`);
      throw err;
    }
  }

  /** Gives the gray version to every instance. */
  async promote(tenant: string, app: string): Promise<ConfigHead> {
    const o = await this.#store.get<ConfigHead>("config_head", configHeadKey(tenant, app));
    const gray = o?.value.gray;
    if (!o || !gray) throw conflict(`${app}'s config has no gray release to promote`);
    const head: ConfigHead = { tenant, app, stable: gray.version };
    await this.#putHead(head, o.revision).catch(raceToConflict);
    return head;
  }

  /** Ends a gray release: its instances go back to the stable version. */
  async abortGray(tenant: string, app: string): Promise<{ head: ConfigHead; aborted: number }> {
    const o = await this.#store.get<ConfigHead>("config_head", configHeadKey(tenant, app));
    const gray = o?.value.gray;
    if (!o || !gray) throw conflict(`${app}'s config has no gray release to roll back`);
    const head: ConfigHead = { tenant, app, stable: o.value.stable };
    await this.#putHead(head, o.revision).catch(raceToConflict);
    return { head, aborted: gray.version };
  }

  /** The effective config of an app at a version (default: stable); undefined before its first version. */
  async effective(tenant: string, app: string, version?: number): Promise<EffectiveConfig | undefined> {
    const v = version ?? (await this.head(tenant, app)).stable;
    if (v === 0) return undefined;
    const key = `${tenant}/${app}@${v}`;
    const cached = this.#effective.get(key);
    if (cached) return cached;
    const appVersion = await this.mustVersion("app", `${tenant}/${app}`, v);
    const lower = await Promise.all(
      lowerRefs(appVersion.uses).map((r) => this.mustVersion(r.layer, r.name, r.version)),
    );
    const merged = mergeLayers(appVersion, lower, tenant, app);
    if (this.#effective.size >= CACHE_MAX)
      this.#effective.delete(this.#effective.keys().next().value as string);
    this.#effective.set(key, merged);
    return merged;
  }

  /**
   * Each instance's target version of its app: the gray version for the
   * instances the gray release reaches, else the stable one.
   */
  async targets(
    tenant: string,
    app: string,
  ): Promise<{ head: ConfigHead; target: Map<string, number>; gray: Set<string>; instances: Instance[] }> {
    const head = await this.head(tenant, app);
    const instances = (await this.#store.list<Instance>("instance")).items
      .map((o) => o.value)
      .filter((i) => i.tenant === tenant && i.app === app && i.desired === "running");
    let gray = new Set<string>();
    if (head.gray) {
      const nodes = new Map(
        (await this.#store.list<Node>("node")).items.map((o) => [o.value.name, o.value.labels ?? {}]),
      );
      gray = grayMembers(
        head.gray,
        head.gray.version,
        instances.map((i) => ({ id: i.id, service: i.service, labels: (i.node && nodes.get(i.node)) || {} })),
      );
    }
    const target = new Map(
      instances.map((i) => [i.id, gray.has(i.id) ? (head.gray?.version ?? head.stable) : head.stable]),
    );
    return { head, target, gray, instances };
  }

  /**
   * The config part of each desired instance of a heartbeat reply: its
   * version and what its service does on a change, and the content when the
   * agent reported another version applied.
   */
  async forInstances(
    desired: DesiredInstance[],
    reported: InstanceStatus[],
  ): Promise<Map<string, InstanceConfig>> {
    const applied = new Map(reported.map((s) => [s.id, s.configVersion]));
    const out = new Map<string, InstanceConfig>();
    const byApp = new Map<string, DesiredInstance[]>();
    for (const d of desired) {
      if (d.action !== "run") continue;
      const key = `${d.tenant}/${d.app}`;
      byApp.set(key, [...(byApp.get(key) ?? []), d]);
    }
    for (const list of byApp.values()) {
      const { tenant, app } = list[0] as DesiredInstance;
      const head = this.#informer
        ? headOr(this.#informer.get<ConfigHead>("config_head", configHeadKey(tenant, app)), tenant, app)
        : await this.head(tenant, app);
      if (head.stable === 0 && !head.gray) continue;
      const target = head.gray ? (await this.targets(tenant, app)).target : undefined;
      const onChange = new Map<string, ConfigOnChange>();
      for (const d of list) {
        const version = target?.get(d.id) ?? head.stable;
        if (version === 0) continue;
        if (!onChange.has(d.service)) {
          const key = `${tenant}/${app}/${d.service}`;
          const svc = this.#informer
            ? this.#informer.get<Service>("service", key)
            : await this.#store.get<Service>("service", key);
          onChange.set(d.service, svc?.value.spec.config?.onChange ?? "file");
        }
        const document =
          applied.get(d.id) === version ? undefined : await this.effective(tenant, app, version);
        out.set(d.id, {
          version,
          onChange: onChange.get(d.service) ?? "file",
          ...(document ? { document } : {}),
        });
      }
    }
    return out;
  }

  /** Keeps the version each instance's agent says it applied. */
  recordApplied(statuses: InstanceStatus[]): void {
    const at = new Date(this.#clock.now()).toISOString();
    for (const s of statuses) {
      if (s.configVersion === undefined) continue;
      const before = this.#applied.get(s.id);
      if (before?.version !== s.configVersion) this.#applied.set(s.id, { version: s.configVersion, at });
    }
    if (this.#applied.size > 100_000) this.#applied.clear();
  }

  /** Every running instance of an app: the version it should have, the one it applied, whether it is behind. */
  async status(
    tenant: string,
    app: string,
  ): Promise<{ head: ConfigHead; instances: InstanceConfigStatus[] }> {
    const { head, target, gray, instances } = await this.targets(tenant, app);
    return {
      head,
      instances: instances.map((i) => {
        const t = target.get(i.id) ?? head.stable;
        const a = this.#applied.get(i.id);
        return {
          id: i.id,
          service: i.service,
          node: i.node,
          target: t,
          ...(a ? { applied: a.version, appliedAt: a.at } : {}),
          gray: gray.has(i.id),
          behind: t !== 0 && a?.version !== t,
        };
      }),
    };
  }
}

/** A lost optimistic-concurrency race: the change is tried again on fresh state. */
class RaceLost extends Error {}

function raceToConflict(err: unknown): never {
  throw err instanceof RaceLost ? conflict(err.message) : err;
}

function sameContent(
  v: ConfigVersion,
  entries: Record<string, ConfigEntry>,
  uses: LayerUses | undefined,
): boolean {
  const norm = (u: LayerUses | undefined) =>
    JSON.stringify({ p: u?.platform ?? null, m: u?.middleware ?? [] });
  return (
    JSON.stringify(sortKeys(v.entries)) === JSON.stringify(sortKeys(entries)) && norm(v.uses) === norm(uses)
  );
}

function sortKeys<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The head as read, or that of an app with no config version yet. */
function headOr(o: StoredObject<ConfigHead> | undefined, tenant: string, app: string): ConfigHead {
  return o?.value ?? { tenant, app, stable: 0 };
}
