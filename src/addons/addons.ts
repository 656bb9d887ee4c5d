/**
 * Add-ons: create, list, attach, detach, destroy, and keeping bindings'
 * URLs pointed at the server. An add-on's server is an ordinary herd app of
 * its tenant (named like the add-on, one pet service `db`), deployed from
 * a source herd writes (postgres.ts), so the scheduler, agents, health
 * checks, restarts and `herd logs` treat it like any other pet.
 */

import { randomBytes } from "node:crypto";
import type { ArtifactStore } from "../builder/artifact-store.ts";
import { systemClock } from "../common/clock.ts";
import { conflict, HerdError, invalid, notFound } from "../common/errors.ts";
import { RepeatGate } from "../common/repeat-gate.ts";
import type { DeployController } from "../controllers/deploy-controller.ts";
import type { EventRecorder } from "../controllers/events.ts";
import { updatePolicy } from "../controllers/remediation/policy.ts";
import {
  ADDON_KINDS,
  ADDON_PLANS,
  type Addon,
  type AddonBackup,
  type AddonBackupPolicy,
  type AddonBinding,
  type AddonInfo,
  type AddonKind,
  addonKey,
  type FinalAddonBackup,
} from "../model/addon.ts";
import { type App, appKey, type Instance, type Node, type Service } from "../model/objects.ts";
import type { RemediationRule } from "../model/remediation.ts";
import type { ServiceSpec } from "../model/service-spec.ts";
import type { SecretStore } from "../secrets/secret-store.ts";
import { type Store, updateObject } from "../store/store.ts";
import {
  backupDue,
  checkBackupPolicy,
  dumpAddon,
  finalBindings,
  newBackup,
  restoreAddon,
  withBackup,
} from "./backups.ts";
import { BrokerAddons } from "./broker-addons.ts";
import { BrokerRotation } from "./broker-rotation.ts";
import type { Brokers } from "./brokers.ts";
import { Detach, type Detached, refuseWhileDropping } from "./detach.ts";
import { finalFor, recordFinal } from "./final-backups.ts";
import { ADMIN_SECRET as ADMIN, driverOf } from "./kinds.ts";
import { deployServer, PlanChange } from "./plan-change.ts";
import { Rotation } from "./rotation.ts";

export interface AddonDeps {
  store: Store;
  secrets: SecretStore;
  deploys: DeployController;
  events: Pick<EventRecorder, "record">;
  artifacts: ArtifactStore;
  /** External Open Service Brokers: their services are more kinds (broker-addons.ts runs those). */
  brokers: Brokers;
  build(o: { source: string; tenant: string; app: string; log: (line: string) => void }): Promise<{
    slug: string;
    services: Record<string, ServiceSpec>;
  }>;
}

const ONLY_RESTART: RemediationRule = {
  name: "restart",
  symptom: "error-rate",
  threshold: 0.1,
  windowS: 10,
  actions: ["restart"],
};
const NAME = /^[a-z][a-z0-9-]{0,39}$/;
/** How often a sync step's failure that stays the same is recorded again. */
export const FAILURE_REPEAT_MS = 5 * 60_000;
/** How long attach waits for the add-on's server to run and answer. */
const READY_MS = 120_000;
/** How long create waits for an app of its name that is being destroyed to go. */
const DESTROYING_WAIT_MS = 30_000;

const sqlName = (prefix: string, app: string) => `${prefix}_${app.replace(/-/g, "_")}`;

/** What `herd addons create` asks for. */
export interface CreateAddon {
  kind: string;
  plan?: string;
  name?: string;
  app?: string;
  var?: string;
  backup?: AddonBackupPolicy;
  parameters?: Record<string, unknown>;
  /** A destroyed add-on's final backup (of this kind and tenant) to restore into the new one before it is bound. */
  fromBackup?: string;
}

export class Addons {
  readonly #d: AddonDeps;
  readonly #brokered: BrokerAddons;
  readonly #rotation: Rotation;
  readonly #detach: Detach;
  readonly #brokerRotation: BrokerRotation;
  readonly #planChange: PlanChange;
  /** Each add-on's sync step's failures (`tenant/name/reason`): one that lasts is not recorded every pass. */
  readonly #failures = new RepeatGate(FAILURE_REPEAT_MS);

  constructor(deps: AddonDeps) {
    this.#d = deps;
    const own = {
      get: (tenant: string, name: string) => this.get(tenant, name),
      update: (tenant: string, name: string, f: (a: Addon) => Addon) => this.#update(tenant, name, f),
      failed: (a: Addon, reason: string, message: string) => this.#failed(a, reason, message),
    };
    this.#brokered = new BrokerAddons({ ...deps, ...own });
    this.#brokerRotation = new BrokerRotation({ ...deps, ...own });
    this.#planChange = new PlanChange({ ...deps, ...own });
    this.#rotation = new Rotation({
      ...deps,
      update: (tenant, name, f) => this.#update(tenant, name, f),
      endpoint: (tenant, name) => this.endpoint(tenant, name),
      waitEndpoint: (tenant, name, ms) => this.waitEndpoint(tenant, name, ms),
    });
    this.#detach = new Detach({
      ...deps,
      update: (tenant, name, f) => this.#update(tenant, name, f),
      endpoint: (tenant, name) => this.endpoint(tenant, name),
    });
  }

  /** Refuses what only herd's own add-ons do (backups) for a broker's. */
  #ownOnly(a: Addon, what: string): void {
    if (a.broker)
      throw invalid(`${a.name} is run by broker ${a.broker.name}: herd does not ${what} it`, [
        { field: "addon", message: "a broker's add-on" },
      ]);
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
  async info(tenant: string, name: string): Promise<AddonInfo> {
    const a = await this.get(tenant, name);
    if (a.broker) return { ...a, state: a.broker.state };
    const inst = await this.#instance(tenant, name);
    return { ...a, state: inst?.state ?? "pending", ...(inst ? { instance: inst.id, node: inst.node } : {}) };
  }

  /** Creates the add-on and deploys its server; with `app`, binds it once the server runs. */
  async create(
    tenant: string,
    o: CreateAddon,
    actor: string,
  ): Promise<{ addon: Addon; deploy?: string; binding?: AddonBinding }> {
    if (!(ADDON_KINDS as readonly string[]).includes(o.kind)) return this.#createBrokered(tenant, o, actor);
    if (o.parameters !== undefined)
      throw invalid(`${o.kind} add-ons take no parameters`, [
        { field: "parameters", message: "only a broker's service takes parameters (herd addons plans)" },
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
    const backupPolicy = o.backup ? checkBackupPolicy(o.backup) : undefined;
    const from = o.fromBackup ? await finalFor(store, tenant, o.fromBackup, o.kind) : undefined;
    if (o.app) await this.#app(tenant, o.app);
    await this.#nameFree(tenant, name);
    const driver = driverOf({ kind: o.kind as AddonKind });
    await driver.install();
    const addon: Addon = {
      tenant,
      name,
      kind: o.kind as AddonKind,
      plan,
      createdAt: new Date().toISOString(),
      bindings: [],
      ...(backupPolicy ? { backupPolicy } : {}),
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
    const deploy = await deployServer(this.#d, tenant, name, o.kind as AddonKind, plan);
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonCreated",
      message: `${o.kind} add-on ${name} (plan ${plan}) created by ${actor}${from ? ` from final backup ${from.id} of ${from.addon}` : ""}`,
    });
    if (from)
      await this.#restoreFinal(addon, from, actor).catch((err) => {
        throw new HerdError(
          "unavailable",
          `add-on ${name} was made but restoring final backup ${from.id} into it failed (${(err as Error).message}); nothing is bound: destroy it (--without-backup) and create it again`,
        );
      });
    if (!o.app) return { addon, deploy: deploy.id };
    const { binding } = await this.attach(tenant, name, o.app, o.var, actor);
    return { addon: await this.get(tenant, name), deploy: deploy.id, binding };
  }

  /**
   * Refuses a name an app holds. An app being destroyed (a destroyed add-on's
   * server, its instance still stopping) is waited for, up to
   * DESTROYING_WAIT_MS: "destroy, then restore its final backup under its
   * name" must not depend on how fast one clicks.
   */
  async #nameFree(tenant: string, name: string): Promise<void> {
    const until = Date.now() + DESTROYING_WAIT_MS;
    for (;;) {
      const app = await this.#d.store.get<App>("app", appKey(tenant, name));
      if (!app) return;
      if (!app.value.destroying)
        throw new HerdError("conflict", `an app named ${name} exists; give the add-on another name`, [
          { field: "name", message: `${name} is taken by an app of the tenant` },
        ]);
      if (Date.now() > until)
        throw new HerdError(
          "conflict",
          `app ${name} is still being destroyed (its instances are stopping); try again once herd apps no longer lists it`,
          [{ field: "name", message: `${name} is taken until its app is gone` }],
        );
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Restores a destroyed add-on's final backup into the new add-on `a` once its server answers. */
  async #restoreFinal(a: Addon, from: FinalAddonBackup, actor: string): Promise<void> {
    const endpoint = await this.waitEndpoint(a.tenant, a.name, READY_MS);
    const admin = await this.#d.secrets.value(a.tenant, a.name, ADMIN);
    await driverOf(a).ready(endpoint, admin, READY_MS);
    await restoreAddon(a, endpoint, admin, from, this.#d.artifacts);
    await this.#d.events.record({
      tenant: a.tenant,
      app: a.name,
      reason: "AddonRestored",
      message: `${a.name} restored from final backup ${from.id} of ${from.addon} by ${actor}`,
    });
  }

  /** An add-on of a broker's service: provisioned there; with `app`, bound once ready. */
  async #createBrokered(
    tenant: string,
    o: CreateAddon,
    actor: string,
  ): Promise<{ addon: Addon; binding?: AddonBinding }> {
    const r = await this.#d.brokers.resolve(o.kind, o.plan, tenant);
    if (!r) {
      const kinds = [
        ...new Set([...ADDON_KINDS, ...(await this.#d.brokers.plans(tenant)).map((p) => p.kind)]),
      ];
      throw invalid(`unknown add-on kind ${o.kind}`, [
        { field: "kind", message: `must be one of ${kinds.join(", ")}` },
      ]);
    }
    if (o.backup || o.fromBackup)
      throw invalid(`broker ${r.broker.name} backs up its own add-ons`, [
        {
          field: o.backup ? "backup" : "fromBackup",
          message: "only herd's own add-ons (postgres, redis) have herd's backups",
        },
      ]);
    const name = o.name ?? (o.app ? `${o.app}-${r.service.name}`.slice(0, 40) : undefined);
    if (!name || !NAME.test(name))
      throw invalid(`add-on name ${name ?? "(none)"} is not valid`, [
        {
          field: "name",
          message: "lowercase letters, digits and dashes, starting with a letter, at most 40; or give app",
        },
      ]);
    if (o.app) await this.#app(tenant, o.app);
    const addon = await this.#brokered.create(tenant, name, r, actor, o.parameters);
    if (!o.app) return { addon };
    const { binding } = await this.attach(tenant, name, o.app, o.var, actor);
    return { addon: await this.get(tenant, name), binding };
  }

  /** Makes a role and database for `app` on the add-on's server and gives the app its URL (a new release). */
  async attach(
    tenant: string,
    name: string,
    app: string,
    variable: string | undefined,
    actor: string,
    parameters?: Record<string, unknown>,
  ): Promise<{ binding: AddonBinding; deploy?: string }> {
    const a = await this.get(tenant, name);
    await this.#app(tenant, app);
    if (app === name)
      throw invalid("an add-on cannot be bound to itself", [{ field: "app", message: "is the add-on" }]);
    if (a.broker) return this.#brokered.attach(tenant, name, app, variable, actor, parameters);
    if (parameters !== undefined)
      throw invalid(`${a.kind} bindings take no parameters`, [
        {
          field: "parameters",
          message: "only a broker's service takes binding parameters (herd addons plans)",
        },
      ]);
    const driver = driverOf(a);
    const v = variable ?? driver.defaultVar;
    if (a.bindings.some((b) => b.app === app)) throw conflict(`add-on ${name} is already bound to ${app}`);
    refuseWhileDropping(a, app);
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

  /**
   * New credentials for the bindings (all, or `app`'s): they work beside the
   * old ones, the app's URL secret changes (a new release rolls out), and the
   * old ones are revoked once that deploy has finished (`sync`). See rotation.ts.
   */
  async rotate(
    tenant: string,
    name: string,
    app: string | undefined,
    actor: string,
  ): Promise<{ rotated: { app: string; deploy?: string }[] }> {
    const a = await this.get(tenant, name);
    if (a.broker) return this.#brokerRotation.rotate(a, app, actor);
    return this.#rotation.rotate(a, app, actor);
  }

  /**
   * Moves the add-on to another plan. herd's own: its server is deployed
   * again with the plan's units and connections (a pet: updated in place,
   * its data kept). A broker's: the instance is updated there (PATCH), when
   * the catalog says the plan is `plan_updateable`, with new parameters if given.
   */
  async changePlan(
    tenant: string,
    name: string,
    o: { plan?: string; parameters?: Record<string, unknown> },
    actor: string,
  ): Promise<{ addon: Addon; deploy?: string; pending?: boolean }> {
    const a = await this.get(tenant, name);
    if (a.broker) return this.#brokered.changePlan(tenant, name, o.plan, o.parameters, actor);
    return this.#planChange.change(a, o, actor);
  }

  /**
   * Takes the URL from the app (a new release); its database and role go
   * once that has rolled out, postgres's after a backup unless
   * `withoutBackup` (detach.ts).
   */
  async detach(
    tenant: string,
    name: string,
    app: string,
    actor: string,
    withoutBackup = false,
  ): Promise<Detached> {
    const a = await this.get(tenant, name);
    if (a.broker) {
      if (withoutBackup)
        throw invalid(`${name} is run by broker ${a.broker.name}: herd takes no backup to skip`, [
          { field: "withoutBackup", message: "only for herd's own add-ons" },
        ]);
      return this.#brokered.detach(tenant, name, app, actor);
    }
    return this.#detach.detach(a, app, actor, withoutBackup);
  }

  /**
   * Takes a final backup (kept in the artifact store, named in the reply and
   * the event), detaches every app, destroys the server's app (its instance
   * stops) and forgets the add-on. A server that does not run cannot be
   * backed up: the destroy then goes on only with `withoutBackup`.
   */
  async destroy(
    tenant: string,
    name: string,
    confirm: string | undefined,
    actor: string,
    withoutBackup = false,
    purge = false,
  ): Promise<{ finalBackup?: FinalAddonBackup; pending?: boolean }> {
    const a = await this.get(tenant, name);
    if (confirm !== name)
      throw invalid(`destroying add-on ${name} deletes its data: confirm with its name`, [
        { field: "confirm", message: `must be ${name}` },
      ]);
    if (a.broker) return this.#brokered.destroy(tenant, name, actor, purge);
    if (purge)
      throw invalid(`${name} is herd's own add-on: purge is for a broker's`, [
        { field: "purge", message: "only for an add-on of an external broker" },
      ]);
    let finalBackup: FinalAddonBackup | undefined;
    if (!withoutBackup) {
      try {
        // Recorded on its own before anything goes: the add-on's list of backups goes with it.
        finalBackup = await recordFinal(
          this.#d.store,
          a,
          await this.backup(
            tenant,
            name,
            actor,
            "final",
            finalBindings(a).map((b) => b.database),
          ),
          actor,
        );
      } catch (err) {
        throw new HerdError(
          "unavailable",
          `no final backup of ${name} could be taken (${(err as Error).message}); destroy it without one with --without-backup`,
        );
      }
    }
    // The final backup has the bound databases; the add-on goes before any drop.
    for (const b of a.bindings) await this.detach(tenant, name, b.app, actor, true);
    const o = await this.#d.store.get<App>("app", appKey(tenant, name));
    if (o && !o.value.destroying)
      await this.#d.store.put("app", o.key, { ...o.value, destroying: true }, { expectRevision: o.revision });
    await this.#d.secrets.removeScope(tenant, name);
    await this.#d.store.delete("addon", addonKey(tenant, name));
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonDestroyed",
      message: `add-on ${name} destroyed by ${actor}${
        finalBackup
          ? `; final backup ${finalBackup.id} kept as artifact ${finalBackup.digest} (${finalBackup.format})`
          : " without a final backup"
      }`,
    });
    return finalBackup ? { finalBackup } : {};
  }

  /** Backs the add-on's data up into the artifact store (postgres: the bound databases, or `databases`; redis: an RDB snapshot). */
  async backup(
    tenant: string,
    name: string,
    actor: string,
    reason: NonNullable<AddonBackup["reason"]> = "manual",
    databases?: string[],
  ): Promise<AddonBackup> {
    const a = await this.get(tenant, name);
    this.#ownOnly(a, "back up");
    const endpoint = await this.waitEndpoint(tenant, name, 10_000);
    const admin = await this.#d.secrets.value(tenant, name, ADMIN);
    const dumped = await dumpAddon(a, endpoint, admin, this.#d.artifacts, databases);
    const backup = newBackup(dumped, reason);
    await this.#update(tenant, name, (x) => withBackup(x, backup));
    const what = a.kind === "redis" ? "RDB snapshot" : backup.databases.join(", ") || "no databases";
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonBackup",
      message: `${reason} backup ${backup.id} of ${name} (${what}) by ${actor}`,
    });
    return backup;
  }

  /** Forgets backup `id` of the add-on (its dump goes with the artifact collection, builder/artifact-collect.ts). */
  async deleteBackup(tenant: string, name: string, id: string, actor: string): Promise<AddonBackup> {
    const a = await this.get(tenant, name);
    const backup = a.backups?.find((b) => b.id === id);
    if (!backup) throw notFound(`add-on ${name} has no backup ${id} (herd addons backups ${name})`);
    await this.#update(tenant, name, (x) => ({
      ...x,
      backups: (x.backups ?? []).filter((b) => b.id !== id),
    }));
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonBackupDeleted",
      message: `${backup.reason ?? "manual"} backup ${id} of ${name} deleted by ${actor}`,
    });
    return backup;
  }

  /** Puts the add-on's data back as backup `id` has it (postgres: connections ended; redis: no restart). */
  async restore(tenant: string, name: string, id: string, actor: string): Promise<AddonBackup> {
    const a = await this.get(tenant, name);
    const backup = a.backups?.find((b) => b.id === id);
    if (!backup) throw notFound(`add-on ${name} has no backup ${id} (herd addons backups ${name})`);
    const endpoint = await this.waitEndpoint(tenant, name, 10_000);
    const admin = await this.#d.secrets.value(tenant, name, ADMIN);
    await restoreAddon(a, endpoint, admin, backup, this.#d.artifacts);
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonRestored",
      message: `${name} restored from backup ${id} by ${actor}`,
    });
    return backup;
  }

  /** Sets (or with null, removes) the add-on's backup schedule. */
  async setBackupPolicy(
    tenant: string,
    name: string,
    policy: AddonBackupPolicy | null,
    actor: string,
  ): Promise<Addon> {
    this.#ownOnly(await this.get(tenant, name), "back up");
    const checked = policy ? checkBackupPolicy(policy) : undefined;
    await this.#update(tenant, name, (x) => {
      const { backupPolicy: _, lastScheduledAt: __, ...rest } = x;
      return checked ? { ...rest, backupPolicy: checked, lastScheduledAt: new Date().toISOString() } : rest;
    });
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonBackupPolicy",
      message: checked
        ? `backups of ${name} on "${checked.schedule}" (UTC), ${checked.keep} kept, set by ${actor}`
        : `scheduled backups of ${name} stopped by ${actor}`,
    });
    return this.get(tenant, name);
  }

  /** Takes the scheduled backups that fell due (run by the server's add-on timer). */
  async scheduledBackups(now = Date.now()): Promise<void> {
    for (const { value: a } of (await this.#d.store.list<Addon>("addon")).items) {
      const due = backupDue(a, now);
      if (due === undefined) continue;
      // Marked first: a backup that fails is not tried again every pass, it waits for the next time.
      await this.#update(a.tenant, a.name, (x) => ({ ...x, lastScheduledAt: new Date(due).toISOString() }));
      await this.backup(a.tenant, a.name, "herd", "scheduled").catch((err) =>
        this.#d.events.record({
          tenant: a.tenant,
          app: a.name,
          reason: "AddonBackupFailed",
          message: `scheduled backup of ${a.name} failed: ${(err as Error).message}`,
        }),
      );
    }
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
    const all = (await this.#d.store.list<Addon>("addon")).items.map((o) => o.value);
    await this.#brokered.sync(all);
    for (const a of all) {
      const step = (reason: string, what: string, run: () => Promise<void>) =>
        run().then(
          () => this.#failures.clear(`${a.tenant}/${a.name}/${reason}`),
          (err) => this.#failed(a, reason, `${what} failed (tried again): ${(err as Error).message}`),
        );
      // Apps destroyed while bound (herd apps destroy): their bindings go, as a detach's do.
      for (const b of a.bindings) {
        if (await this.#d.store.get<App>("app", appKey(a.tenant, b.app))) continue;
        await step("AddonDetachFailed", `detaching ${a.name} from destroyed app ${b.app}`, () =>
          a.broker
            ? this.#brokered.detach(a.tenant, a.name, b.app, "herd").then(() => {})
            : this.#detach.appGone(a, b.app),
        );
      }
      if (a.broker) {
        await step("AddonRevokeFailed", `finishing a rotation of ${a.name}'s bindings`, () =>
          this.#brokerRotation.sync(a),
        );
        continue;
      }
      await step("AddonPlanFailed", `following the plan change of ${a.name}`, () =>
        this.#planChange.follow(a),
      );
      await step("AddonDropFailed", `dropping the database of an app detached from ${a.name}`, () =>
        this.#detach.dropDetached(a),
      );
      await step("AddonRevokeFailed", `revoking old credentials of ${a.name}`, () =>
        this.#rotation.revokeRotated(a),
      );
      await step("AddonMoveFailed", `giving ${a.name}'s bound apps its new address`, () =>
        this.#followEndpoint(a),
      );
    }
  }

  /**
   * A sync step's failure as an event: a new one, or the same again after
   * FAILURE_REPEAT_MS. The sync runs every 3 s, and a failure that lasts
   * (a server down, a full disk) would otherwise push every other event of
   * the add-on out of its list.
   */
  async #failed(a: Addon, reason: string, message: string): Promise<void> {
    if (this.#failures.pass(`${a.tenant}/${a.name}/${reason}`, message))
      await this.#d.events.record({ tenant: a.tenant, app: a.name, reason, message });
  }

  /**
   * The add-on's server answers at another address: each binding's URL gets
   * it and its app a new release; only then is the address recorded, so a
   * step that fails (a release refused for a moment) is tried again at the
   * next sync instead of being forgotten.
   */
  async #followEndpoint(a: Addon): Promise<void> {
    const endpoint = await this.endpoint(a.tenant, a.name);
    if (!endpoint || endpoint === a.endpoint) return;
    for (const b of a.bindings) {
      const old = await this.#d.secrets.value(a.tenant, b.app, b.var).catch(() => undefined);
      if (!old) continue;
      const url = new URL(old);
      if (url.host !== endpoint) {
        url.host = endpoint;
        await this.#d.secrets.set(a.tenant, b.app, b.var, url.toString(), "herd");
        await this.#d.events.record({
          tenant: a.tenant,
          app: b.app,
          reason: "AddonMoved",
          message: `add-on ${a.name} now answers at ${endpoint}`,
        });
      }
      await this.#d.deploys.secretChanged(a.tenant, b.app, b.var, "herd");
    }
    await this.#update(a.tenant, a.name, (x) => ({ ...x, endpoint }));
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
    await updateObject<Addon>(this.#d.store, "addon", addonKey(tenant, name), (o) => {
      if (!o) throw notFound(`add-on ${name} does not exist`);
      return f(o.value);
    });
  }
}
