/**
 * External Open Service Brokers: registering one fetches its catalog (the
 * services and plans that become add-on kinds), the password goes into the
 * secret store, the URL through the URL guard. Store kind `addon_broker`,
 * key `<name>`, platform-wide: every tenant sees the brokers' plans.
 */

import { conflict, invalid, notFound } from "../common/errors.ts";
import type { UrlGuard } from "../common/url-guard.ts";
import { ADDON_KINDS, ADDON_PLANS, type Addon, type AddonBroker } from "../model/addon.ts";
import type { SecretStore } from "../secrets/secret-store.ts";
import type { Store } from "../store/store.ts";
import { OsbClient } from "./osb-client.ts";

/** The secret store's home of brokers' passwords: platform-wide, no tenant's. */
const TENANT = "_herd";
const scopeOf = (broker: string) => `_broker.${broker}`;
const PASSWORD = "password";
const NAME = /^[a-z][a-z0-9-]{0,39}$/;

/** One line of `herd addons plans`. */
export interface PlanView {
  kind: string;
  plan: string;
  description: string;
  /** herd (built in) or the broker's name. */
  source: string;
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

  /** Registers a broker: its catalog must answer (through the URL guard) before anything is kept. */
  async add(
    o: { name: string; url: string; user?: string; password?: string },
    actor: string,
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
    if (await this.#store.get("addon_broker", o.name)) throw conflict(`broker ${o.name} exists`);
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
      url: o.url,
      ...(o.user !== undefined ? { user: o.user } : {}),
      createdAt: now,
      createdBy: actor,
      services,
      catalogAt: now,
    };
    if (o.password !== undefined)
      await this.#secrets.set(TENANT, scopeOf(o.name), PASSWORD, o.password, actor);
    try {
      await this.#store.put("addon_broker", o.name, broker, { expectRevision: 0 });
    } catch (err) {
      if ((err as { code?: string }).code === "conflict") throw conflict(`broker ${o.name} exists`);
      throw err;
    }
    return broker;
  }

  async list(): Promise<AddonBroker[]> {
    return (await this.#store.list<AddonBroker>("addon_broker")).items.map((o) => o.value);
  }

  async get(name: string): Promise<AddonBroker> {
    const o = await this.#store.get<AddonBroker>("addon_broker", name);
    if (!o) throw notFound(`broker ${name} does not exist (herd addons brokers lists them)`);
    return o.value;
  }

  /** Fetches the catalog again (plans added or removed at the broker). */
  async refresh(name: string): Promise<AddonBroker> {
    for (;;) {
      const o = await this.#store.get<AddonBroker>("addon_broker", name);
      if (!o) throw notFound(`broker ${name} does not exist (herd addons brokers lists them)`);
      const services = await (await this.client(name)).catalog();
      const next = { ...o.value, services, catalogAt: new Date().toISOString() };
      try {
        await this.#store.put("addon_broker", name, next, { expectRevision: o.revision });
        return next;
      } catch (err) {
        if ((err as { code?: string }).code !== "conflict") throw err;
      }
    }
  }

  /** Forgets a broker no add-on uses (its add-ons are destroyed first). */
  async remove(name: string): Promise<void> {
    await this.get(name);
    const used = (await this.#store.list<Addon>("addon")).items.filter((o) => o.value.broker?.name === name);
    if (used.length > 0)
      throw conflict(
        `broker ${name} runs add-ons (${used.map((o) => o.key).join(", ")}); destroy them first`,
      );
    await this.#store.delete("addon_broker", name);
    await this.#secrets.removeScope(TENANT, scopeOf(name));
  }

  /** A client for the broker, signed in with its password from the secret store. */
  async client(name: string): Promise<OsbClient> {
    const b = await this.get(name);
    const password =
      b.user === undefined ? undefined : await this.#secrets.value(TENANT, scopeOf(name), PASSWORD);
    return new OsbClient({ url: b.url, user: b.user, password }, this.#guard);
  }

  /** Every add-on kind and plan: herd's own, then each broker's. */
  async plans(): Promise<PlanView[]> {
    const out: PlanView[] = [];
    for (const kind of ADDON_KINDS)
      for (const [plan, p] of Object.entries(ADDON_PLANS))
        out.push({
          kind,
          plan,
          description: `${p.units} resource unit${p.units === 1 ? "" : "s"}, ${p.maxConnections} connections`,
          source: "herd",
        });
    const brokers = await this.list();
    for (const b of brokers)
      for (const s of b.services)
        for (const p of s.plans)
          out.push({
            kind: kindName(b, s.name, brokers),
            plan: p.name,
            description: p.description || s.description,
            source: b.name,
          });
    return out;
  }

  /**
   * The broker service and plan `kind` and `plan` name: `SERVICE` when one
   * broker offers it, else `BROKER/SERVICE`. Undefined: not a broker's kind.
   */
  async resolve(kind: string, planName: string | undefined): Promise<Resolved | undefined> {
    const brokers = await this.list();
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
}

/** A broker's service as a kind: its name, or `broker/service` when another broker offers one of that name. */
function kindName(b: AddonBroker, service: string, all: AddonBroker[]): string {
  const offered = all.filter((x) => x.services.some((s) => s.name === service)).length;
  return offered > 1 ? `${b.name}/${service}` : service;
}
