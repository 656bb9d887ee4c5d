/**
 * The app controller: takes a destroyed app apart. `herd apps destroy` marks
 * the app `destroying`; this scales its services to zero, waits until every
 * instance is gone, then writes its tombstone (copies of its pets' data on
 * other nodes go on that proof) and deletes services, releases, deploys,
 * secrets and the app (its route objects at once).
 */

import type { App, AppTombstone, Deploy, Instance, Release, Service } from "../model/objects.ts";
import type { Context } from "./context.ts";

export class AppController {
  readonly #ctx: Context;

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  /** Returns true when the app still has work pending (look again later). */
  async reconcile(key: string): Promise<boolean> {
    const { store, events } = this.#ctx;
    const o = await store.get<App>("app", key);
    if (!o?.value.destroying) return false;
    const { tenant, name } = o.value;
    const prefix = `${key}/`;
    // Route objects go first, so no gateway keeps a route to a service on its way out.
    for (const r of (await store.list("route", { prefix })).items) await store.delete("route", r.key);
    const services = (await store.list<Service>("service", { prefix })).items;
    for (const s of services) {
      if (s.value.instances !== 0 || s.value.state !== "destroying") {
        await store.put(
          "service",
          s.key,
          { ...s.value, instances: 0, state: "destroying", message: "app destroyed" },
          { expectRevision: s.revision },
        );
      }
    }
    const left = (await store.list<Instance>("instance")).items.filter(
      (i) => i.value.tenant === tenant && i.value.app === name,
    );
    if (left.length > 0) return true;
    // Before its services go (an app lives while it has one): copies of its pets' data left on
    // other nodes are removed on the proof of this (controllers/orphan-volumes.ts).
    await this.#tombstone(tenant, name);
    for (const s of services) await store.delete("service", s.key);
    for (const r of (await store.list<Release>("release", { prefix })).items)
      await store.delete("release", r.key);
    for (const d of (await store.list<Deploy>("deploy", { prefix })).items)
      await store.delete("deploy", d.key);
    // Its secrets go with it (tombstones too: a new app of that name starts at version 1).
    await this.#ctx.secrets.removeScope(tenant, name);
    // Its remediation policy and decisions (controllers/remediation/).
    await store.delete("remediation", key);
    await store.delete("app", key);
    await events.record({ tenant, app: name, reason: "AppDestroyed", message: `app ${name} destroyed` });
    return false;
  }

  /** Records the destroy; tombstones past TOMBSTONE_DAYS go (a node away that long keeps its copies). */
  async #tombstone(tenant: string, app: string): Promise<void> {
    const { store, clock } = this.#ctx;
    const now = clock.now();
    const stone: AppTombstone = { tenant, app, destroyedAt: new Date(now).toISOString() };
    await store.put("app_tombstone", `${tenant}/${app}`, stone);
    for (const t of (await store.list<AppTombstone>("app_tombstone")).items)
      if (now - Date.parse(t.value.destroyedAt) > TOMBSTONE_DAYS * 86_400_000)
        await store.delete("app_tombstone", t.key, { expectRevision: t.revision }).catch(() => {});
  }
}

/** How long a destroyed app's tombstone is kept. */
export const TOMBSTONE_DAYS = 30;
