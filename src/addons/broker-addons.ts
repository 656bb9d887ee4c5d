/**
 * Add-ons an external Open Service Broker runs: create provisions a service
 * instance, attach binds it (its credentials become the app's secrets, a new
 * release rolls out), detach unbinds, destroy deprovisions. Asynchronous
 * operations (202) are followed through `last_operation`, by whoever waits
 * and by the server's add-on timer (`sync`), so a restart loses none.
 *
 *   create ─► addon {broker: state provisioning, instanceId} stored first ─► PUT instance
 *            ─► 201: ready · 202: operation kept ─► last_operation … succeeded: ready · failed: failed
 *   attach ─► binding (its id) stored first ─► PUT binding ─► credentials ─► secrets <VAR>, <P>_<KEY> ─► release
 *   detach ─► DELETE binding ─► binding forgotten ─► release without the secrets ─► secrets unset
 *   destroy ─► detach all ─► DELETE instance ─► 200/410: gone · 202: deprovisioning … succeeded: gone
 */

import { randomUUID } from "node:crypto";
import { conflict, HerdError, invalid, isCode, notFound } from "../common/errors.ts";
import type { Addon, AddonBinding, BrokerInstance } from "../model/addon.ts";
import { addonKey } from "../model/addon.ts";
import type { AddonDeps } from "./addons.ts";
import type { Brokers, Resolved } from "./brokers.ts";
import type { Credentials, Operation } from "./osb-client.ts";

/** How long create (with an app) and attach wait for an asynchronous provision; destroy for a deprovision. */
const WAIT_MS = 120_000;
/** A provision the broker does not know of is sent again once the add-on is this old (a crash before asking). */
const RESEND_AFTER_MS = 60_000;
/** Between two last_operation polls when the broker names no Retry-After. */
const POLL_MS = 1000;

type Deps = Pick<AddonDeps, "store" | "secrets" | "deploys" | "events"> & {
  brokers: Brokers;
  get(tenant: string, name: string): Promise<Addon>;
  update(tenant: string, name: string, f: (a: Addon) => Addon): Promise<void>;
};

/** The env variable of a credential: `<P>_<KEY>` (P: the binding's variable without `_URL`). */
export function credentialVars(variable: string, creds: Credentials): Record<string, string> {
  const out: Record<string, string> = {};
  const prefix = variable.replace(/_URL$/, "");
  const uri = creds.uri ?? creds.url;
  if (typeof uri === "string") out[variable] = uri;
  for (const [key, value] of Object.entries(creds)) {
    if (value === null || value === undefined) continue;
    if ((key === "uri" || key === "url") && typeof uri === "string" && value === uri) continue;
    const name = `${prefix}_${key.toUpperCase().replace(/[^A-Z0-9_]/g, "_")}`.slice(0, 64);
    if (out[name] !== undefined) continue;
    out[name] = typeof value === "object" ? JSON.stringify(value) : String(value);
  }
  return out;
}

/** The default variable of a broker's service: MAIL_URL for `mail`. */
export const defaultVarOf = (service: string): string =>
  `${service
    .toUpperCase()
    .replace(/[^A-Z0-9]/g, "_")
    .replace(/^([0-9])/, "_$1")}_URL`.slice(0, 64);

export class BrokerAddons {
  readonly #d: Deps;

  constructor(deps: Deps) {
    this.#d = deps;
  }

  /** Stores the add-on, then provisions its instance at the broker (a 202 is followed later). */
  async create(tenant: string, name: string, r: Resolved, actor: string): Promise<Addon> {
    const broker: BrokerInstance = {
      name: r.broker.name,
      serviceId: r.service.id,
      planId: r.plan.id,
      instanceId: randomUUID(),
      state: "provisioning",
    };
    const addon: Addon = {
      tenant,
      name,
      kind: r.service.name,
      plan: r.plan.name,
      createdAt: new Date().toISOString(),
      bindings: [],
      broker,
    };
    try {
      await this.#d.store.put("addon", addonKey(tenant, name), addon, { expectRevision: 0 });
    } catch (err) {
      if ((err as { code?: string }).code === "conflict") throw conflict(`add-on ${name} already exists`);
      throw err;
    }
    let op: Operation;
    try {
      op = await (await this.#d.brokers.client(r.broker.name)).provision(broker.instanceId, {
        serviceId: broker.serviceId,
        planId: broker.planId,
        tenant,
      });
    } catch (err) {
      // Refused: nothing exists at the broker. Otherwise it may: kept as failed, for destroy to deprovision.
      if (isCode(err, "invalid") || isCode(err, "conflict"))
        await this.#d.store.delete("addon", addonKey(tenant, name));
      else await this.#set(tenant, name, { state: "failed", message: (err as Error).message });
      throw err;
    }
    await this.#set(tenant, name, {
      state: op.done ? "ready" : "provisioning",
      ...(op.operation ? { operation: op.operation } : {}),
      ...(op.dashboardUrl ? { dashboardUrl: op.dashboardUrl } : {}),
    });
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonCreated",
      message: `${r.service.name} add-on ${name} (plan ${r.plan.name}) from broker ${r.broker.name} ${op.done ? "created" : "being provisioned"} by ${actor}`,
    });
    return this.#d.get(tenant, name);
  }

  /** Waits until the instance is ready (failed: unavailable, with the broker's word). */
  async waitReady(tenant: string, name: string, timeoutMs = WAIT_MS): Promise<Addon> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const { addon, retryS } = await this.#advance(await this.#d.get(tenant, name));
      const b = addon.broker as BrokerInstance;
      if (b.state === "ready") return addon;
      if (b.state === "failed")
        throw new HerdError(
          "unavailable",
          `add-on ${name}'s instance at broker ${b.name} failed${b.message ? `: ${b.message}` : ""}`,
        );
      if (b.state === "deprovisioning") throw conflict(`add-on ${name} is being destroyed`);
      if (Date.now() > until)
        throw new HerdError(
          "unavailable",
          `add-on ${name} is still being provisioned by broker ${b.name}; try again`,
        );
      await sleep(Math.min((retryS ?? POLL_MS / 1000) * 1000, Math.max(0, until - Date.now()) + 10));
    }
  }

  async attach(
    tenant: string,
    name: string,
    app: string,
    variable: string | undefined,
    actor: string,
  ): Promise<{ binding: AddonBinding; deploy?: string }> {
    const a = await this.waitReady(tenant, name);
    const b = a.broker as BrokerInstance;
    const broker = await this.#d.brokers.get(b.name);
    const service = broker.services.find((s) => s.id === b.serviceId);
    if (service && !service.bindable)
      throw invalid(`${a.kind} of broker ${b.name} cannot be bound to apps`, [
        { field: "app", message: "the broker's catalog says the service is not bindable" },
      ]);
    const v = variable ?? defaultVarOf(a.kind);
    const bindingId = randomUUID();
    const binding: AddonBinding = {
      app,
      var: v,
      user: bindingId,
      database: "",
      bindingId,
      vars: [],
      createdAt: new Date().toISOString(),
    };
    // Kept before the broker is asked: a crash after the bind still knows the binding to unbind.
    await this.#d.update(tenant, name, (x) => {
      if (x.bindings.some((y) => y.app === app)) throw conflict(`add-on ${name} is already bound to ${app}`);
      return { ...x, bindings: [...x.bindings, binding] };
    });
    let vars: Record<string, string>;
    try {
      const creds = await (await this.#d.brokers.client(b.name)).bind(b.instanceId, bindingId, {
        serviceId: b.serviceId,
        planId: b.planId,
        app: `${tenant}/${app}`,
      });
      vars = credentialVars(v, creds);
      if (Object.keys(vars).length === 0)
        throw new HerdError("unavailable", `broker ${b.name} bound ${name} to ${app} without credentials`);
    } catch (err) {
      await this.#forget(tenant, name, app);
      throw err;
    }
    const names = Object.keys(vars).sort();
    // Named before they are set: a crash in between still has detach unset them.
    await this.#d.update(tenant, name, (x) => ({
      ...x,
      bindings: x.bindings.map((y) => (y.app === app ? { ...y, vars: names } : y)),
    }));
    for (const n of names) await this.#d.secrets.set(tenant, app, n, vars[n], actor);
    await this.#d.events.record({
      tenant,
      app,
      reason: "AddonAttached",
      message: `add-on ${name} (broker ${b.name}) bound to ${app} as ${names.join(", ")} by ${actor}`,
    });
    const deploy = await this.#d.deploys.secretChanged(tenant, app, names[0], actor);
    return { binding: { ...binding, vars: names }, ...(deploy ? { deploy: deploy.id } : {}) };
  }

  /** Unbinds at the broker, then the app loses the secrets (a new release). */
  /** With `purge`, the broker is not asked (it is gone for good): herd only forgets the binding. */
  async detach(
    tenant: string,
    name: string,
    app: string,
    actor: string,
    purge = false,
  ): Promise<{ deploy?: string }> {
    const a = await this.#d.get(tenant, name);
    const binding = a.bindings.find((x) => x.app === app);
    const b = a.broker as BrokerInstance;
    if (!binding) throw notFound(`add-on ${name} is not bound to ${app}`);
    if (binding.bindingId && !purge)
      await (await this.#d.brokers.client(b.name)).unbind(b.instanceId, binding.bindingId, {
        serviceId: b.serviceId,
        planId: b.planId,
      });
    await this.#forget(tenant, name, app);
    const vars = binding.vars ?? [];
    const deploy =
      vars.length > 0
        ? await this.#d.deploys.secretChanged(tenant, app, vars[0], actor).catch(() => undefined)
        : undefined;
    for (const v of vars) await this.#d.secrets.unset(tenant, app, v, actor).catch(() => undefined);
    await this.#d.events.record({
      tenant,
      app,
      reason: "AddonDetached",
      message: `add-on ${name} (broker ${b.name}) detached from ${app} by ${actor}`,
    });
    return deploy ? { deploy: deploy.id } : {};
  }

  /**
   * Detaches every app and deprovisions the instance; forgets the add-on once
   * the broker says it is gone (waiting up to WAIT_MS; later, the timer).
   */
  async destroy(tenant: string, name: string, actor: string, purge = false): Promise<{ pending?: boolean }> {
    const a = await this.#d.get(tenant, name);
    for (const x of a.bindings) await this.detach(tenant, name, x.app, actor, purge);
    if (purge) {
      await this.#gone(await this.#d.get(tenant, name), actor, "purged without asking the broker");
      return {};
    }
    const b = a.broker as BrokerInstance;
    const op = await (await this.#d.brokers.client(b.name)).deprovision(b.instanceId, {
      serviceId: b.serviceId,
      planId: b.planId,
    });
    if (op.done) {
      await this.#gone(a, actor);
      return {};
    }
    await this.#set(tenant, name, {
      state: "deprovisioning",
      ...(op.operation ? { operation: op.operation } : { operation: undefined }),
    });
    const until = Date.now() + WAIT_MS;
    for (;;) {
      // The add-on timer may follow the same operation and forget the add-on first: gone all the same.
      const now = await this.#d.get(tenant, name).catch((err) => {
        if (isCode(err, "not_found")) return undefined;
        throw err;
      });
      if (!now) return {};
      const { addon, retryS, gone } = await this.#advance(now);
      if (gone) return {};
      const state = (addon.broker as BrokerInstance).state;
      if (state === "failed")
        throw new HerdError(
          "unavailable",
          `broker ${b.name} could not deprovision ${name}: ${addon.broker?.message ?? "failed"}; try again`,
        );
      if (Date.now() > until) return { pending: true };
      await sleep((retryS ?? POLL_MS / 1000) * 1000);
    }
  }

  /** Follows every pending asynchronous operation one step (the server's add-on timer). */
  async sync(addons: Addon[]): Promise<void> {
    for (const a of addons) {
      const s = a.broker?.state;
      if (s !== "provisioning" && s !== "deprovisioning") continue;
      await this.#advance(a).catch((err) =>
        this.#d.events.record({
          tenant: a.tenant,
          app: a.name,
          reason: "AddonBrokerUnreachable",
          message: `asking broker ${a.broker?.name} about ${a.name} failed (asked again): ${(err as Error).message}`,
        }),
      );
    }
  }

  /** Asks the broker about a pending operation once and records the answer. */
  async #advance(a: Addon): Promise<{ addon: Addon; retryS?: number; gone?: boolean }> {
    const b = a.broker;
    if (!b || (b.state !== "provisioning" && b.state !== "deprovisioning")) return { addon: a };
    const client = await this.#d.brokers.client(b.name);
    const last = await client.lastOperation(b.instanceId, {
      serviceId: b.serviceId,
      planId: b.planId,
      ...(b.operation ? { operation: b.operation } : {}),
    });
    if (last.state === "in progress")
      return { addon: a, ...(last.retryAfterS ? { retryS: last.retryAfterS } : {}) };
    if (b.state === "provisioning" && last.state === "gone") {
      // Just stored, its provision may be on its way: left to the one creating it.
      if (Date.now() - Date.parse(a.createdAt) < RESEND_AFTER_MS) return { addon: a };
      // Never received (a crash between storing the add-on and asking): asked again, same instance id.
      const op = await client.provision(b.instanceId, {
        serviceId: b.serviceId,
        planId: b.planId,
        tenant: a.tenant,
      });
      if (!op.done) {
        await this.#set(a.tenant, a.name, op.operation ? { operation: op.operation } : {});
        return { addon: await this.#d.get(a.tenant, a.name) };
      }
      return this.#settle(a, "succeeded");
    }
    if (b.state === "deprovisioning" && (last.state === "succeeded" || last.state === "gone")) {
      await this.#gone(a, "herd");
      return { addon: a, gone: true };
    }
    return this.#settle(a, last.state === "succeeded" ? "succeeded" : "failed", last.description);
  }

  /** Records the end of `a`'s pending operation, once (the add-on timer may ask too). */
  async #settle(a: Addon, state: "succeeded" | "failed", description?: string): Promise<{ addon: Addon }> {
    const b = a.broker as BrokerInstance;
    let moved = false;
    await this.#d.update(a.tenant, a.name, (x) => {
      moved = x.broker?.state === b.state && x.broker.instanceId === b.instanceId;
      if (!moved || !x.broker) return x;
      const { operation: _, ...rest } = x.broker;
      return {
        ...x,
        broker: {
          ...rest,
          state: state === "succeeded" ? "ready" : "failed",
          ...(description ? { message: description } : {}),
        },
      };
    });
    if (moved)
      await this.#d.events.record({
        tenant: a.tenant,
        app: a.name,
        reason: state === "succeeded" ? "AddonReady" : "AddonFailed",
        message: `broker ${b.name}: ${b.state} of ${a.name} ${state}${description ? `: ${description}` : ""}`,
      });
    return { addon: await this.#d.get(a.tenant, a.name) };
  }

  async #gone(a: Addon, actor: string, how = `deprovisioned by broker ${a.broker?.name}`): Promise<void> {
    const o = await this.#d.store.get<Addon>("addon", addonKey(a.tenant, a.name));
    if (!o || o.value.broker?.instanceId !== a.broker?.instanceId) return;
    // Once: whoever deletes the revision it saw records it.
    const deleted = await this.#d.store
      .delete("addon", o.key, { expectRevision: o.revision })
      .catch((err) => (isCode(err, "conflict") ? false : Promise.reject(err)));
    if (!deleted) return;
    await this.#d.events.record({
      tenant: a.tenant,
      app: a.name,
      reason: "AddonDestroyed",
      message: `add-on ${a.name} ${how} (asked by ${actor})`,
    });
  }

  async #forget(tenant: string, name: string, app: string): Promise<void> {
    await this.#d.update(tenant, name, (x) => ({ ...x, bindings: x.bindings.filter((y) => y.app !== app) }));
  }

  /** Changes the broker part of the add-on (a field set to undefined is removed). */
  async #set(tenant: string, name: string, change: Partial<BrokerInstance>): Promise<void> {
    await this.#d.update(tenant, name, (x) => {
      const next = { ...(x.broker as BrokerInstance), ...change };
      for (const k of Object.keys(next) as (keyof BrokerInstance)[])
        if (next[k] === undefined) delete next[k];
      return { ...x, broker: next };
    });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
