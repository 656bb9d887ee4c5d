/**
 * The asset catalog: what each app is made of and where it runs, assembled at
 * query time from what is already kept — apps, releases, instances, members
 * and deploys in the store; each slug's packages beside it in the artifact
 * store (recorded by the build); who made each release as it records
 * (`createdBy`), or for releases made before herd recorded it, from the audit trail; calls
 * from the traces' dependency map. Nothing here writes.
 *
 *   store (app, release, instance, member, deploy) ─┐
 *   artifacts: <slug>.packages.json (cached) ───────┼─► apps() · app() · releasePackages() · search()
 *   audit trail (deploys, rollbacks, secrets) ──────┤
 *   traces: dependency map edges of the app ────────┘
 */

import { notFound } from "../common/errors.ts";
import type {
  CatalogApp,
  CatalogAppSummary,
  CatalogRelease,
  ObservedDependencies,
  PackageMatch,
  PackageRef,
  PackageSearch,
  ReleasePackages,
  ReleasePlacement,
  SlugPackages,
} from "../model/catalog.ts";
import type { Member } from "../model/identity.ts";
import { type App, appKey, type Deploy, type Instance, type Release, releaseKey } from "../model/objects.ts";
import type { Store } from "../store/store.ts";
import { PACKAGES_METADATA } from "./lockfile.ts";
import { versionMatches } from "./versions.ts";

/** The audit trail's entries the catalog reads (api/audit.ts). */
export interface AuditSource {
  list(
    q: { tenant?: string; app?: string; limit?: number },
    routes?: readonly string[],
  ): {
    at: string;
    actor: string;
    route: string;
    status: number;
  }[];
}

/** Where the catalog reads from. */
export interface CatalogSources {
  store: Store;
  /** The artifact store (only its metadata is read). */
  artifacts: { getMetadata<T>(digest: string, name: string): Promise<T | undefined> };
  audit: AuditSource;
  /** The dependency map's edges of one tenant over the last `window` (traces); rejects when the trace store cannot answer. */
  observe?: (tenant: string, window: string) => Promise<ObservedDependencies["calls"]>;
}

/** The writes that make a release, as the audit trail names them. */
const RELEASE_ROUTES = [
  "POST /api/v1/apps/:app/deploys",
  "POST /api/v1/apps/:app/rollback",
  "PUT /api/v1/apps/:app/secrets/:name",
  "DELETE /api/v1/apps/:app/secrets/:name",
];
/** A release's audit entry is written when the reply leaves, at most this long after its deploy began. */
const AUDIT_MATCH_MS = 5 * 60_000;
/** Slugs whose package lists are kept parsed (they never change). */
const CACHED_SLUGS = 2000;

/** Reads the catalog. One per server; it keeps parsed package lists by slug digest. */
export class Catalog {
  readonly #sources: CatalogSources;
  /** Parsed package lists by slug digest, with the packages by name for the search. */
  readonly #packages = new Map<string, { record: SlugPackages; byName: Map<string, PackageRef[]> }>();

  constructor(sources: CatalogSources) {
    this.#sources = sources;
  }

  /** One line per app of `tenant` (undefined: every tenant), by tenant and name. */
  async apps(tenant: string | undefined): Promise<CatalogAppSummary[]> {
    const { store } = this.#sources;
    const prefix = tenant === undefined ? undefined : `${tenant}/`;
    const apps = (await store.list<App>("app", { prefix })).items.map((o) => o.value);
    const instances = await this.#instances(tenant);
    const owners = await this.#owners(tenant);
    const out: CatalogAppSummary[] = [];
    for (const a of apps) {
      const mine = instances.filter((i) => i.app === a.name && i.tenant === a.tenant);
      const release =
        a.release === null
          ? undefined
          : (await store.get<Release>("release", releaseKey(a.tenant, a.name, a.release)))?.value;
      const packages = release ? await this.packagesOf(release.slug) : undefined;
      out.push({
        tenant: a.tenant,
        app: a.name,
        release: a.release,
        slug: release?.slug ?? null,
        packages: packages ? packages.packages.length : null,
        instances: mine.length,
        running: mine.filter((i) => i.state === "running").length,
        nodes: uniqueNodes(mine),
        owners: owners.get(a.tenant) ?? [],
      });
    }
    return out.sort((x, y) => compare(x.tenant, y.tenant) || compare(x.app, y.app));
  }

  /** One app's entry; 404 when it does not exist. `window`: how far back the traces are read (e.g. `15m`). */
  async app(tenant: string, name: string, window: string): Promise<CatalogApp> {
    const { store } = this.#sources;
    const a = await this.#app(tenant, name);
    const releases = await this.#releases(tenant, name);
    const instances = (await this.#instances(tenant)).filter((i) => i.app === name);
    const who = releases.every((r) => r.createdBy !== undefined)
      ? new Map<number, string>()
      : await this.#deployedBy(tenant, name);
    const items: CatalogRelease[] = [];
    for (const [n, r] of releases.entries()) {
      const packages = await this.packagesOf(r.slug);
      const before = releases[n + 1];
      const older = before ? await this.packagesOf(before.slug) : undefined;
      const diff = packages && older ? packageChanges(older, packages) : undefined;
      items.push({
        version: r.version,
        createdAt: r.createdAt,
        description: r.description,
        current: r.version === a.release,
        ...(r.rollbackOf !== undefined ? { rollbackOf: r.rollbackOf } : {}),
        source: r.source,
        slug: r.slug,
        services: Object.keys(r.services).sort(),
        deployedBy: r.createdBy ?? who.get(r.version) ?? null,
        packages: packages
          ? { lockfile: packages.lockfile, from: packages.from, count: packages.packages.length }
          : null,
        changes: diff
          ? { against: before.version, added: diff.added.length, removed: diff.removed.length }
          : null,
        runs: placements(instances.filter((i) => i.release === r.version)),
        ...(r.secrets ? { secrets: r.secrets } : {}),
      });
    }
    const deployers: string[] = [];
    for (const r of items)
      if (r.deployedBy && !deployers.includes(r.deployedBy)) deployers.push(r.deployedBy);
    const members = (await store.list<Member>("member", { prefix: `${tenant}/` })).items.map((o) => o.value);
    return {
      tenant,
      app: name,
      createdAt: a.createdAt,
      release: a.release,
      owners: ownersOf(members),
      deployers,
      releases: items,
      dependencies: await this.#observed(tenant, name, window),
    };
  }

  /**
   * The packages of one release, and with `against` how they differ from that
   * release's; 404 when the app or either release does not exist.
   */
  async releasePackages(
    tenant: string,
    name: string,
    version: number,
    against?: number,
  ): Promise<ReleasePackages> {
    await this.#app(tenant, name);
    const r = await this.#release(tenant, name, version);
    const packages = (await this.packagesOf(r.slug)) ?? null;
    const out: ReleasePackages = { tenant, app: name, release: version, slug: r.slug, packages };
    if (against !== undefined) {
      const older = await this.packagesOf((await this.#release(tenant, name, against)).slug);
      out.changes = packages && older ? { against, ...packageChanges(older, packages) } : null;
    }
    return out;
  }

  async #release(tenant: string, name: string, version: number): Promise<Release> {
    const r = await this.#sources.store.get<Release>("release", releaseKey(tenant, name, version));
    if (!r) throw notFound(`app ${name} has no release v${version} (herd releases lists them)`);
    return r.value;
  }

  /**
   * Which releases ship package `name` (at `version`: a version or a semver
   * range; absent: any). Only releases in service (serving, or with
   * instances wanted) unless `all`; `tenant` undefined: every tenant's.
   */
  async search(q: { tenant?: string; name: string; version?: string; all: boolean }): Promise<PackageSearch> {
    const { store } = this.#sources;
    const prefix = q.tenant === undefined ? undefined : `${q.tenant}/`;
    const apps = (await store.list<App>("app", { prefix })).items.map((o) => o.value);
    const releases = (await store.list<Release>("release", { prefix })).items.map((o) => o.value);
    const byRelease = new Map<string, Instance[]>();
    for (const i of await this.#instances(q.tenant)) {
      const key = releaseKey(i.tenant, i.app, i.release);
      byRelease.set(key, [...(byRelease.get(key) ?? []), i]);
    }
    const serving = new Map(apps.map((a) => [appKey(a.tenant, a.name), a.release]));
    const items: PackageMatch[] = [];
    const unknown: PackageSearch["unknown"] = [];
    for (const r of releases) {
      const key = appKey(r.tenant, r.app);
      if (!serving.has(key)) continue;
      const mine = byRelease.get(releaseKey(r.tenant, r.app, r.version)) ?? [];
      const current = serving.get(key) === r.version;
      if (!q.all && !current && mine.length === 0) continue;
      const packages = await this.#cached(r.slug);
      if (!packages) {
        unknown.push({ tenant: r.tenant, app: r.app, release: r.version });
        continue;
      }
      for (const p of packages.byName.get(q.name) ?? []) {
        if (q.version !== undefined && !versionMatches(p.version, q.version)) continue;
        items.push({
          tenant: r.tenant,
          app: r.app,
          release: r.version,
          current,
          instances: mine.length,
          running: mine.filter((i) => i.state === "running").length,
          nodes: uniqueNodes(mine),
          package: p,
        });
      }
    }
    items.sort((x, y) => compare(x.tenant, y.tenant) || compare(x.app, y.app) || y.release - x.release);
    return {
      name: q.name,
      ...(q.version !== undefined ? { version: q.version } : {}),
      all: q.all,
      items,
      unknown,
    };
  }

  /** The packages recorded for a slug; undefined: none were (built before herd recorded them). */
  async packagesOf(slug: string): Promise<SlugPackages | undefined> {
    return (await this.#cached(slug))?.record;
  }

  async #cached(slug: string) {
    const cached = this.#packages.get(slug);
    if (cached) return cached;
    const record = await this.#sources.artifacts
      .getMetadata<SlugPackages>(slug, PACKAGES_METADATA)
      .catch(() => undefined);
    // A miss is not kept: a build of the same content may record them later.
    if (!record || !Array.isArray(record.packages)) return undefined;
    const byName = new Map<string, PackageRef[]>();
    for (const p of record.packages) byName.set(p.name, [...(byName.get(p.name) ?? []), p]);
    if (this.#packages.size >= CACHED_SLUGS) this.#packages.delete(this.#packages.keys().next().value!);
    const entry = { record, byName };
    this.#packages.set(slug, entry);
    return entry;
  }

  async #app(tenant: string, name: string): Promise<App> {
    const o = await this.#sources.store.get<App>("app", appKey(tenant, name));
    if (!o) throw notFound(`app ${name} does not exist (herd apps lists the apps)`);
    return o.value;
  }

  /** Newest first. */
  async #releases(tenant: string, name: string): Promise<Release[]> {
    const list = await this.#sources.store.list<Release>("release", { prefix: `${appKey(tenant, name)}/` });
    return list.items.map((o) => o.value).sort((x, y) => y.version - x.version);
  }

  /** Instances wanted running (instance keys are ids, so every tenant's are read and filtered). */
  async #instances(tenant: string | undefined): Promise<Instance[]> {
    const all = (await this.#sources.store.list<Instance>("instance")).items.map((o) => o.value);
    return all.filter((i) => i.desired === "running" && (tenant === undefined || i.tenant === tenant));
  }

  /** Each tenant's owners. */
  async #owners(tenant: string | undefined): Promise<Map<string, string[]>> {
    const prefix = tenant === undefined ? undefined : `${tenant}/`;
    const members = (await this.#sources.store.list<Member>("member", { prefix })).items.map((o) => o.value);
    const by = new Map<string, Member[]>();
    for (const m of members) by.set(m.tenant, [...(by.get(m.tenant) ?? []), m]);
    return new Map([...by].map(([t, ms]) => [t, ownersOf(ms)]));
  }

  /**
   * Who made each release made before releases recorded it (`createdBy`): its
   * deploy (the store keeps which release a deploy made, and when it began)
   * matched to the first successful release-making write in the audit trail
   * for the app at or after that time. Deploys that record who made them
   * still take their entry, so that older ones are not matched to it.
   */
  async #deployedBy(tenant: string, app: string): Promise<Map<number, string>> {
    const deploys = (
      await this.#sources.store.list<Deploy>("deploy", { prefix: `${appKey(tenant, app)}/` })
    ).items
      .map((o) => o.value)
      .filter((d) => d.release !== undefined)
      .sort((x, y) => compare(x.createdAt, y.createdAt));
    const entries = this.#sources.audit
      .list({ tenant, app, limit: 10_000 }, RELEASE_ROUTES)
      .filter((e) => e.status < 300);
    const out = new Map<number, string>();
    let next = 0;
    for (const d of deploys) {
      const began = Date.parse(d.createdAt);
      while (next < entries.length && Date.parse(entries[next].at) < began) next++;
      const e = entries[next];
      if (!e || Date.parse(e.at) - began > AUDIT_MATCH_MS) continue;
      if (d.createdBy === undefined) out.set(d.release!, e.actor);
      next++;
    }
    return out;
  }

  async #observed(tenant: string, app: string, window: string): Promise<CatalogApp["dependencies"]> {
    if (!this.#sources.observe) return { observed: null, observedError: "this server keeps no traces" };
    try {
      const calls = await this.#sources.observe(tenant, window);
      const own = (service: string) => service.startsWith(`${app}/`);
      return { observed: { window, calls: calls.filter((c) => own(c.from) || own(c.to)) } };
    } catch (err) {
      return { observed: null, observedError: (err as Error).message };
    }
  }
}

/** Instances grouped by service and node, by service then node (unplaced last). */
function placements(instances: readonly Instance[]): ReleasePlacement[] {
  const by = new Map<string, ReleasePlacement>();
  for (const i of instances) {
    const key = `${i.service}\0${i.node ?? ""}`;
    const p = by.get(key) ?? { service: i.service, node: i.node, instances: 0, running: 0 };
    p.instances++;
    if (i.state === "running") p.running++;
    by.set(key, p);
  }
  return [...by.values()].sort(
    (x, y) =>
      compare(x.service, y.service) || (x.node === null ? 1 : y.node === null ? -1 : compare(x.node, y.node)),
  );
}

/** Package versions in `now` and not in `before` (added), and the other way round (removed). */
export function packageChanges(
  before: SlugPackages,
  now: SlugPackages,
): { added: PackageRef[]; removed: PackageRef[] } {
  const key = (p: PackageRef) => `${p.name}@${p.version}`;
  const had = new Set(before.packages.map(key));
  const has = new Set(now.packages.map(key));
  return {
    added: now.packages.filter((p) => !had.has(key(p))),
    removed: before.packages.filter((p) => !has.has(key(p))),
  };
}

function uniqueNodes(instances: readonly Instance[]): string[] {
  return [...new Set(instances.flatMap((i) => (i.node ? [i.node] : [])))].sort();
}

function ownersOf(members: readonly Member[]): string[] {
  return members
    .filter((m) => m.role === "owner")
    .map((m) => m.user)
    .sort();
}

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
