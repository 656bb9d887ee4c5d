/**
 * Add-ons: create, list, attach, detach, destroy, and keeping bindings'
 * URLs pointed at the server. An add-on's server is an ordinary herd app of
 * its tenant (named like the add-on, one pet service `db`), deployed from
 * a source herd writes (postgres.ts), so the scheduler, agents, health
 * checks, restarts and `herd logs` treat it like any other pet.
 */

import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ArtifactStore } from "../build/artifact-store.ts";
import { packAll } from "../build/pack.ts";
import { systemClock } from "../common/clock.ts";
import { conflict, HerdError, invalid, notFound } from "../common/errors.ts";
import { newId } from "../common/ids.ts";
import type { DeployController } from "../controllers/deploy-controller.ts";
import type { EventRecorder } from "../controllers/events.ts";
import { updatePolicy } from "../controllers/remediation/policy.ts";
import {
  ADDON_KINDS,
  ADDON_PLANS,
  type Addon,
  type AddonBackup,
  type AddonBinding,
  type AddonKind,
  addonKey,
} from "../model/addon.ts";
import { type App, appKey, type Instance, type Node, type Service } from "../model/objects.ts";
import type { RemediationRule } from "../model/remediation.ts";
import type { ServiceSpec } from "../model/service-spec.ts";
import type { SecretStore } from "../secrets/secret-store.ts";
import type { Store } from "../store/store.ts";
import { KIND_DRIVERS, type KindDriver } from "./kinds.ts";
import { dumpDatabases, ensurePostgres, restoreDump } from "./postgres.ts";

export interface AddonDeps {
  store: Store;
  secrets: SecretStore;
  deploys: DeployController;
  events: Pick<EventRecorder, "record">;
  artifacts: ArtifactStore;
  build(o: { source: string; tenant: string; app: string; log: (line: string) => void }): Promise<{
    slug: string;
    services: Record<string, ServiceSpec>;
  }>;
}

const ADMIN = "ADDON_PASSWORD";
const ONLY_RESTART: RemediationRule = {
  name: "restart",
  symptom: "error-rate",
  threshold: 0.1,
  windowS: 10,
  actions: ["restart"],
};
const NAME = /^[a-z][a-z0-9-]{0,39}$/;
/** How long attach waits for the add-on's server to run and answer. */
const READY_MS = 120_000;

const sqlName = (prefix: string, app: string) => `${prefix}_${app.replace(/-/g, "_")}`;

export class Addons {
  readonly #d: AddonDeps;

  constructor(deps: AddonDeps) {
    this.#d = deps;
  }

  #driver(a: Pick<Addon, "kind">): KindDriver {
    const d = KIND_DRIVERS[a.kind];
    if (!d) throw new HerdError("internal", `no driver for add-on kind ${a.kind}`);
    return d;
  }

  async list(tenant: string): Promise<Addon[]> {
    return (await this.#d.store.list<Addon>("addon", { prefix: addonKey(tenant, "") })).items.map(
      (o) => o.value,
    );
  }

  async get(tenant: string, name: string): Promise<Addon> {
    const o = await this.#d.store.get<Addon>("addon", addonKey(tenant, name));
    if (!o) throw notFound(`add-on ${name} does not exist (herd addons lists them)`);
    return o.value;
  }

  /** The add-on with its server's instance state, for `info`. */
  async info(
    tenant: string,
    name: string,
  ): Promise<Addon & { state: string; instance?: string; node?: string | null }> {
    const a = await this.get(tenant, name);
    const inst = await this.#instance(tenant, name);
    return { ...a, state: inst?.state ?? "pending", ...(inst ? { instance: inst.id, node: inst.node } : {}) };
  }

  /** Creates the add-on and deploys its server; with `app`, binds it once the server runs. */
  async create(
    tenant: string,
    o: { kind: string; plan?: string; name?: string; app?: string; var?: string },
    actor: string,
  ): Promise<{ addon: Addon; deploy: string; binding?: AddonBinding }> {
    if (!(ADDON_KINDS as readonly string[]).includes(o.kind))
      throw invalid(`unknown add-on kind ${o.kind}`, [
        { field: "kind", message: `must be one of ${ADDON_KINDS.join(", ")}` },
      ]);
    const plan = o.plan ?? "small";
    const p = ADDON_PLANS[plan];
    if (!p)
      throw invalid(`unknown plan ${plan}`, [
        { field: "plan", message: `must be one of ${Object.keys(ADDON_PLANS).join(", ")}` },
      ]);
    const name = o.name ?? (o.app ? `${o.app}-${o.kind}`.slice(0, 40) : undefined);
    if (!name || !NAME.test(name))
      throw invalid(`add-on name ${name ?? "(none)"} is not valid`, [
        {
          field: "name",
          message: "lowercase letters, digits and dashes, starting with a letter, at most 40; or give app",
        },
      ]);
    const { store } = this.#d;
    if (o.app) await this.#app(tenant, o.app);
    if (await store.get("app", appKey(tenant, name)))
      throw conflict(`an app named ${name} exists; choose another --name`);
    const driver = this.#driver({ kind: o.kind as AddonKind });
    await driver.install();
    const addon: Addon = {
      tenant,
      name,
      kind: o.kind as AddonKind,
      plan,
      createdAt: new Date().toISOString(),
      bindings: [],
    };
    try {
      await store.put("addon", addonKey(tenant, name), addon, { expectRevision: 0 });
    } catch (err) {
      if ((err as { code?: string }).code === "conflict") throw conflict(`add-on ${name} already exists`);
      throw err;
    }
    const app: App = { tenant, name, createdAt: addon.createdAt, release: null, latestVersion: 0 };
    await store.put("app", appKey(tenant, name), app, { expectRevision: 0 });
    await this.#d.secrets.set(tenant, name, ADMIN, randomBytes(24).toString("hex"), actor);
    // One server with one data dir: the remediation engine may restart it in place, never add instances.
    await updatePolicy(this.#d.store, systemClock, tenant, name, { rules: [ONLY_RESTART] });
    const dir = await mkdtemp(join(tmpdir(), "herd-addon-"));
    let digest: string;
    try {
      await driver.source(dir, { name, units: p.units, maxConnections: p.maxConnections });
      const packed = await packAll(dir);
      try {
        digest = (await this.#d.artifacts.putFile(packed.file)).digest;
      } finally {
        await rm(packed.file, { force: true });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const deploy = await this.#d.deploys.startDeploy(tenant, name, async (log) => {
      const built = await this.#d.build({ source: digest, tenant, app: name, log });
      return { ...built, source: digest, description: `${o.kind} add-on (plan ${plan})` };
    });
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonCreated",
      message: `${o.kind} add-on ${name} (plan ${plan}) created by ${actor}`,
    });
    if (!o.app) return { addon, deploy: deploy.id };
    const { binding } = await this.attach(tenant, name, o.app, o.var, actor);
    return { addon: await this.get(tenant, name), deploy: deploy.id, binding };
  }

  /** Makes a role and database for `app` on the add-on's server and gives the app its URL (a new release). */
  async attach(
    tenant: string,
    name: string,
    app: string,
    variable: string | undefined,
    actor: string,
  ): Promise<{ binding: AddonBinding; deploy?: string }> {
    const a = await this.get(tenant, name);
    await this.#app(tenant, app);
    if (app === name)
      throw invalid("an add-on cannot be bound to itself", [{ field: "app", message: "is the add-on" }]);
    const driver = this.#driver(a);
    const v = variable ?? driver.defaultVar;
    if (a.bindings.some((b) => b.app === app)) throw conflict(`add-on ${name} is already bound to ${app}`);
    const endpoint = await this.waitEndpoint(tenant, name, READY_MS);
    const admin = await this.#d.secrets.value(tenant, name, ADMIN);
    await driver.ready(endpoint, admin, READY_MS);
    const creds = {
      user: sqlName("u", app),
      database: sqlName("db", app),
      password: randomBytes(18).toString("hex"),
    };
    await driver.provision(endpoint, admin, creds);
    await this.#d.secrets.set(tenant, app, v, driver.url(creds, endpoint), actor);
    const binding: AddonBinding = {
      app,
      var: v,
      user: creds.user,
      database: creds.database,
      createdAt: new Date().toISOString(),
    };
    await this.#update(tenant, name, (x) => {
      if (x.bindings.some((b) => b.app === app)) throw conflict(`add-on ${name} is already bound to ${app}`);
      return { ...x, endpoint, bindings: [...x.bindings, binding] };
    });
    await this.#d.events.record({
      tenant,
      app,
      reason: "AddonAttached",
      message: `add-on ${name} bound to ${app} as ${v} by ${actor}`,
    });
    const deploy = await this.#d.deploys.secretChanged(tenant, app, v, actor);
    return { binding, ...(deploy ? { deploy: deploy.id } : {}) };
  }

  /** Takes the URL from the app (a new release), then drops its database and role. */
  async detach(tenant: string, name: string, app: string, actor: string): Promise<{ deploy?: string }> {
    const a = await this.get(tenant, name);
    const b = a.bindings.find((x) => x.app === app);
    if (!b) throw notFound(`add-on ${name} is not bound to ${app}`);
    await this.#update(tenant, name, (x) => ({ ...x, bindings: x.bindings.filter((y) => y.app !== app) }));
    const deploy = await this.#d.deploys.secretChanged(tenant, app, b.var, actor).catch(() => undefined);
    await this.#d.secrets.unset(tenant, app, b.var, actor).catch(() => undefined);
    const endpoint = await this.endpoint(tenant, name);
    if (endpoint) {
      const admin = await this.#d.secrets.value(tenant, name, ADMIN);
      await this.#driver(a).drop(endpoint, admin, b);
    }
    await this.#d.events.record({
      tenant,
      app,
      reason: "AddonDetached",
      message: `add-on ${name} detached from ${app} by ${actor}`,
    });
    return deploy ? { deploy: deploy.id } : {};
  }

  /** Detaches every app, destroys the server's app (its instance stops) and forgets the add-on. */
  async destroy(tenant: string, name: string, confirm: string | undefined, actor: string): Promise<void> {
    const a = await this.get(tenant, name);
    if (confirm !== name)
      throw invalid(`destroying add-on ${name} deletes its data: confirm with its name`, [
        { field: "confirm", message: `must be ${name}` },
      ]);
    for (const b of a.bindings) await this.detach(tenant, name, b.app, actor);
    const o = await this.#d.store.get<App>("app", appKey(tenant, name));
    if (o && !o.value.destroying)
      await this.#d.store.put("app", o.key, { ...o.value, destroying: true }, { expectRevision: o.revision });
    await this.#d.secrets.removeScope(tenant, name);
    await this.#d.store.delete("addon", addonKey(tenant, name));
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonDestroyed",
      message: `add-on ${name} destroyed by ${actor}`,
    });
  }

  /** Dumps every bound database into the artifact store (postgres add-ons). */
  async backup(tenant: string, name: string, actor: string): Promise<AddonBackup> {
    const a = await this.#postgresAddon(tenant, name);
    const endpoint = await this.waitEndpoint(tenant, name, 10_000);
    const admin = await this.#d.secrets.value(tenant, name, ADMIN);
    const databases = a.bindings.map((b) => b.database);
    const dir = await mkdtemp(join(tmpdir(), "herd-addon-backup-"));
    let backup: AddonBackup;
    try {
      const file = join(dir, "dump.sql");
      await dumpDatabases((await ensurePostgres()).bin, endpoint, admin, databases, file);
      const stored = await this.#d.artifacts.putFile(file);
      backup = {
        id: newId(8),
        createdAt: new Date().toISOString(),
        digest: stored.digest,
        size: stored.size,
        databases,
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await this.#update(tenant, name, (x) => ({ ...x, backups: [...(x.backups ?? []), backup].slice(-10) }));
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonBackup",
      message: `backup ${backup.id} of ${name} (${databases.join(", ") || "no databases"}) by ${actor}`,
    });
    return backup;
  }

  /** Puts the bound databases back as backup `id` has them (their connections are ended). */
  async restore(tenant: string, name: string, id: string, actor: string): Promise<AddonBackup> {
    const a = await this.#postgresAddon(tenant, name);
    const backup = a.backups?.find((b) => b.id === id);
    if (!backup) throw notFound(`add-on ${name} has no backup ${id} (herd addons backups ${name})`);
    const endpoint = await this.waitEndpoint(tenant, name, 10_000);
    const admin = await this.#d.secrets.value(tenant, name, ADMIN);
    const file = await this.#d.artifacts.path(backup.digest);
    await restoreDump((await ensurePostgres()).bin, endpoint, admin, backup.databases, file);
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonRestored",
      message: `${name} restored from backup ${id} by ${actor}`,
    });
    return backup;
  }

  async #postgresAddon(tenant: string, name: string): Promise<Addon> {
    const a = await this.get(tenant, name);
    if (a.kind !== "postgres")
      throw invalid(`backups are for postgres add-ons; ${name} is ${a.kind}`, [
        { field: "addon", message: "not postgres" },
      ]);
    return a;
  }

  /** host:port of the add-on's running server, or undefined. */
  async endpoint(tenant: string, name: string): Promise<string | undefined> {
    const inst = await this.#instance(tenant, name);
    if (inst?.state !== "running" || !inst.node || inst.port === undefined) return undefined;
    const node = await this.#d.store.get<Node>("node", inst.node);
    return node ? `${node.value.address}:${inst.port}` : undefined;
  }

  async waitEndpoint(tenant: string, name: string, timeoutMs: number): Promise<string> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const e = await this.endpoint(tenant, name);
      if (e) return e;
      const svc = await this.#d.store.get<Service>("service", `${appKey(tenant, name)}/db`);
      if (svc?.value.state === "failed")
        throw new HerdError(
          "unavailable",
          `add-on ${name}'s server failed: ${svc.value.message} (herd logs --app ${name})`,
        );
      if (Date.now() > until)
        throw new HerdError(
          "unavailable",
          `add-on ${name} is not running yet (herd ps --app ${name}); try again`,
        );
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /**
   * When an add-on's server came back at another address (a restart on a new
   * port, a move), its bindings' URLs are re-set: each bound app gets a new
   * release with the new URL. Run periodically by the server.
   */
  async sync(): Promise<void> {
    for (const o of (await this.#d.store.list<Addon>("addon")).items) {
      const a = o.value;
      const endpoint = await this.endpoint(a.tenant, a.name);
      if (!endpoint || endpoint === a.endpoint) continue;
      await this.#update(a.tenant, a.name, (x) => ({ ...x, endpoint }));
      for (const b of a.bindings) {
        const old = await this.#d.secrets.value(a.tenant, b.app, b.var).catch(() => undefined);
        if (!old) continue;
        const url = new URL(old);
        url.host = endpoint;
        await this.#d.secrets.set(a.tenant, b.app, b.var, url.toString(), "herd");
        await this.#d.events.record({
          tenant: a.tenant,
          app: b.app,
          reason: "AddonMoved",
          message: `add-on ${a.name} now answers at ${endpoint}`,
        });
        await this.#d.deploys.secretChanged(a.tenant, b.app, b.var, "herd");
      }
    }
  }

  async #instance(tenant: string, name: string): Promise<Instance | undefined> {
    const all = (await this.#d.store.list<Instance>("instance")).items.map((o) => o.value);
    const mine = all.filter((i) => i.tenant === tenant && i.app === name && i.desired === "running");
    return mine.find((i) => i.state === "running") ?? mine[0];
  }

  async #app(tenant: string, app: string): Promise<void> {
    const o = await this.#d.store.get<App>("app", appKey(tenant, app));
    if (!o || o.value.destroying) throw notFound(`app ${app} does not exist (herd apps lists the apps)`);
  }

  async #update(tenant: string, name: string, f: (a: Addon) => Addon): Promise<void> {
    for (;;) {
      const o = await this.#d.store.get<Addon>("addon", addonKey(tenant, name));
      if (!o) throw notFound(`add-on ${name} does not exist`);
      const next = f(o.value);
      try {
        await this.#d.store.put("addon", o.key, next, { expectRevision: o.revision });
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== "conflict") throw err;
      }
    }
  }
}
