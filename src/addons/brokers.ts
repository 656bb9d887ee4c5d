/**
 * External Open Service Brokers: registering one fetches its catalog (the
 * services and plans that become add-on kinds), the password goes into the
 * secret store, the URL through the URL guard. Store kind `addon_broker`:
 * key `<name>` for a platform broker (every tenant sees its plans), key
 * `<tenant>/<name>` for a tenant's own (only that tenant sees it). A name is
 * one broker's in a tenant's view: a tenant's broker may not take a platform
 * broker's name, nor the platform one a tenant's.
 */

import { conflict, invalid, notFound } from "../common/errors.ts";
import type { UrlGuard } from "../common/url-guard.ts";
import { ADDON_KINDS, ADDON_PLANS, type Addon, type AddonBroker } from "../model/addon.ts";
import type { SecretStore } from "../secrets/secret-store.ts";
import { type Store, updateObject } from "../store/store.ts";
import { OsbClient } from "./osb-client.ts";

/** The secret store's home of platform brokers' passwords (a tenant's broker keeps its own in its tenant). */
const PLATFORM = "_herd";
const scopeOf = (broker: string) => `_broker.${broker}`;
const brokerKey = (name: string, tenant?: string) => (tenant ? `${tenant}/${name}` : name);
const PASSWORD = "password";
const NAME = /^[a-z][a-z0-9-]{0,39}$/;

/** One line of `herd addons plans`. */
export interface PlanView {
  kind: string;
  plan: string;
  description: string;
  /** herd (built in) or the broker's name. */
  source: string;
  /** Its instances may move to another plan (herd's own: always). */
  updateable: boolean;
  /** The broker takes parameters for it, checked against this JSON Schema. */
  parameters?: Record<string, unknown>;
  /** Binding (attach) parameters the broker takes, checked against this JSON Schema. */
  bindParameters?: Record<string, unknown>;
}

/** A broker's service and plan that an add-on kind and plan name. */
export interface Resolved {
  broker: AddonBroker;
  service: AddonBroker["services"][number];
  plan: AddonBroker["services"][number]["plans"][number];
}

export class Brokers {
  readonly #store: Store;
  readonly #secrets: SecretStore;
  readonly #guard: UrlGuard;

  constructor(o: { store: Store; secrets: SecretStore; guard: UrlGuard }) {
    this.#store = o.store;
    this.#secrets = o.secrets;
    this.#guard = o.guard;
  }

  /**
   * Registers a broker: its catalog must answer (through the URL guard)
   * before anything is kept. With `tenant`, only that tenant sees it.
   */
  async add(
    o: { name: string; url: string; user?: string; password?: string },
    actor: string,
    tenant?: string,
  ): Promise<AddonBroker> {
    if (!NAME.test(o.name))
      throw invalid(`broker name ${o.name} is not valid`, [
        {
          field: "name",
          message: "lowercase letters, digits and dashes, starting with a letter, at most 40",
        },
      ]);
    let url: URL;
    try {
      url = new URL(o.url);
    } catch {
      throw invalid(`${o.url} is not a URL`, [{ field: "url", message: "must be an http or https URL" }]);
    }
    if ((url.protocol !== "http:" && url.protocol !== "https:") || url.username || url.password)
      throw invalid(`${o.url} is not a broker URL`, [
        { field: "url", message: "http or https, without credentials (give user and password)" },
      ]);
    if ((o.user === undefined) !== (o.password === undefined))
      throw invalid("a broker's user and password go together", [
        { field: o.user === undefined ? "user" : "password", message: "give both or neither" },
      ]);
    await this.#nameFree(o.name, tenant);
    const services = await new OsbClient(
      { url: o.url, user: o.user, password: o.password },
      this.#guard,
    ).catalog();
    const clash = services.find((s) => (ADDON_KINDS as readonly string[]).includes(s.name));
    if (clash)
      throw invalid(`broker ${o.name} offers a service named ${clash.name}, herd's own add-on kind`, [
        { field: "url", message: `its catalog's service ${clash.name} clashes with herd's` },
      ]);
    const now = new Date().toISOString();
    const broker: AddonBroker = {
      name: o.name,
      ...(tenant ? { tenant } : {}),
      url: o.url,
      ...(o.user !== undefined ? { user: o.user } : {}),
      createdAt: now,
      createdBy: actor,
      services,
      catalogAt: now,
    };
    if (o.password !== undefined)
      await this.#secrets.set(tenant ?? PLATFORM, scopeOf(o.name), PASSWORD, o.password, actor);
    try {
      await this.#store.put("addon_broker", brokerKey(o.name, tenant), broker, { expectRevision: 0 });
    } catch (err) {
      if ((err as { code?: string }).code === "conflict") throw conflict(`broker ${o.name} exists`);
      throw err;
    }
    return broker;
  }

  /**
   * The brokers `tenant` sees: the platform's and its own. Without a tenant
   * (a platform admin's listing): every broker, tenants' own included.
   */
  async list(tenant?: string): Promise<AddonBroker[]> {
    const all = (await this.#store.list<AddonBroker>("addon_broker")).items.map((o) => o.value);
    return tenant === undefined ? all : all.filter((b) => b.tenant === undefined || b.tenant === tenant);
  }

  /** A tenant's own brokers only. */
  async listOwn(tenant: string): Promise<AddonBroker[]> {
    return (await this.#store.list<AddonBroker>("addon_broker", { prefix: `${tenant}/` })).items.map(
      (o) => o.value,
    );
  }

  /** A platform broker, or with `tenant` that tenant's own. */
  async get(name: string, tenant?: string): Promise<AddonBroker> {
    const o = await this.#store.get<AddonBroker>("addon_broker", brokerKey(name, tenant));
    if (!o)
      throw notFound(
        `broker ${name} does not exist${tenant ? ` in tenant ${tenant}` : ""} (herd addons brokers lists them)`,
      );
    return o.value;
  }

  /** Fetches the catalog again (plans added or removed at the broker). */
  async refresh(name: string, tenant?: string): Promise<AddonBroker> {
    const key = brokerKey(name, tenant);
    const written = await updateObject<AddonBroker>(this.#store, "addon_broker", key, async (o) => {
      if (!o) throw notFound(`broker ${name} does not exist (herd addons brokers lists them)`);
      const services = await (await this.client(name, tenant)).catalog();
      return { ...o.value, services, catalogAt: new Date().toISOString() };
    });
    return written!.value;
  }

  /** Forgets a broker no add-on uses (its add-ons are destroyed first). */
  async remove(name: string, tenant?: string): Promise<void> {
    await this.get(name, tenant);
    const used = (await this.#store.list<Addon>("addon")).items.filter(
      (o) =>
        o.value.broker?.name === name &&
        (tenant === undefined ? !o.value.broker.tenantBroker : o.value.broker.tenantBroker === true),
    );
    if (used.length > 0)
      throw conflict(
        `broker ${name} runs add-ons (${used.map((o) => o.key).join(", ")}); destroy them first`,
      );
    await this.#store.delete("addon_broker", brokerKey(name, tenant));
    await this.#secrets.removeScope(tenant ?? PLATFORM, scopeOf(name));
  }

  /** A client for the broker (with `tenant`: that tenant's own), signed in with its password from the secret store. */
  async client(name: string, tenant?: string): Promise<OsbClient> {
    const b = await this.get(name, tenant);
    const password =
      b.user === undefined
        ? undefined
        : await this.#secrets.value(tenant ?? PLATFORM, scopeOf(name), PASSWORD);
    return new OsbClient({ url: b.url, user: b.user, password }, this.#guard);
  }

  /** The client of the broker that runs an add-on of `tenant`. */
  clientOf(b: { name: string; tenantBroker?: boolean }, tenant: string): Promise<OsbClient> {
    return this.client(b.name, b.tenantBroker ? tenant : undefined);
  }

  /** The catalog entry of the broker that runs an add-on of `tenant`. */
  brokerOf(b: { name: string; tenantBroker?: boolean }, tenant: string): Promise<AddonBroker> {
    return this.get(b.name, b.tenantBroker ? tenant : undefined);
  }

  /** Every add-on kind and plan `tenant` may use: herd's own, then each broker's it sees. */
  async plans(tenant: string): Promise<PlanView[]> {
    const out: PlanView[] = [];
    for (const kind of ADDON_KINDS)
      for (const [plan, p] of Object.entries(ADDON_PLANS))
        out.push({
          kind,
          plan,
          description: `${p.units} resource unit${p.units === 1 ? "" : "s"}, ${p.maxConnections} connections`,
          source: "herd",
          updateable: true,
        });
    const brokers = await this.list(tenant);
    for (const b of brokers)
      for (const s of b.services)
        for (const p of s.plans)
          out.push({
            kind: kindName(b, s.name, brokers),
            plan: p.name,
            description: p.description || s.description,
            source: b.tenant ? `${b.name} (tenant)` : b.name,
            updateable: p.planUpdateable ?? s.planUpdateable ?? false,
            ...(p.schemas?.create ? { parameters: p.schemas.create } : {}),
            ...(p.schemas?.bind ? { bindParameters: p.schemas.bind } : {}),
          });
    return out;
  }

  /**
   * The broker service and plan `kind` and `plan` name among the brokers
   * `tenant` sees: `SERVICE` when one broker offers it, else
   * `BROKER/SERVICE`. Undefined: not a broker's kind.
   */
  async resolve(kind: string, planName: string | undefined, tenant: string): Promise<Resolved | undefined> {
    const brokers = await this.list(tenant);
    const slash = kind.indexOf("/");
    const matches =
      slash === -1
        ? brokers.flatMap((b) => b.services.filter((s) => s.name === kind).map((s) => ({ b, s })))
        : brokers
            .filter((b) => b.name === kind.slice(0, slash))
            .flatMap((b) =>
              b.services.filter((s) => s.name === kind.slice(slash + 1)).map((s) => ({ b, s })),
            );
    if (matches.length === 0) return undefined;
    if (matches.length > 1)
      throw invalid(`several brokers offer ${kind}`, [
        { field: "kind", message: `one of ${matches.map((m) => `${m.b.name}/${kind}`).join(", ")}` },
      ]);
    const { b, s } = matches[0];
    const plan = planName === undefined ? s.plans[0] : s.plans.find((p) => p.name === planName);
    if (!plan)
      throw invalid(`unknown plan ${planName} of ${kind}`, [
        { field: "plan", message: `must be one of ${s.plans.map((p) => p.name).join(", ")}` },
      ]);
    return { broker: b, service: s, plan };
  }

  /** A broker name is one broker in every tenant's view: refused when the platform or (for the platform) any tenant uses it. */
  async #nameFree(name: string, tenant?: string): Promise<void> {
    const all = await this.list();
    const taken = all.find(
      (b) => b.name === name && (tenant === undefined || !b.tenant || b.tenant === tenant),
    );
    if (!taken) return;
    if (taken.tenant === undefined || taken.tenant === tenant) throw conflict(`broker ${name} exists`);
    throw conflict(`broker name ${name} is taken by a tenant's own broker; choose another`);
  }
}

/** A broker's service as a kind: its name, or `broker/service` when another broker offers one of that name. */
function kindName(b: AddonBroker, service: string, all: AddonBroker[]): string {
  const offered = all.filter((x) => x.services.some((s) => s.name === service)).length;
  return offered > 1 ? `${b.name}/${service}` : service;
}
