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
 *   plan   ─► state updating, update {plan} stored first ─► PATCH instance ─► 200: new plan · 202: … last_operation
 *            (not answered: the timer sends it again) · failed: the old plan stays, with the broker's word
 *   rotate ─► broker-rotation.ts
 */

import { randomUUID } from "node:crypto";
import { conflict, HerdError, invalid, isCode, notFound } from "../common/errors.ts";
import type { Addon, AddonBinding, BrokerInstance } from "../model/addon.ts";
import { addonKey } from "../model/addon.ts";
import type { AddonDeps } from "./addons.ts";
import type { Brokers, Resolved } from "./brokers.ts";
import type { Credentials, Operation } from "./osb-client.ts";
import { checkParameters } from "./parameters.ts";

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
  /** Records a failure of the add-on timer's step (a lasting one not every pass: addons.ts). */
  failed(a: Addon, reason: string, message: string): Promise<void>;
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

  /**
   * Stores the add-on, then provisions its instance at the broker (a 202 is
   * followed later). `parameters` must meet the plan's schema, if it has one.
   */
  async create(
    tenant: string,
    name: string,
    r: Resolved,
    actor: string,
    parameters?: Record<string, unknown>,
  ): Promise<Addon> {
    checkParameters(r.plan.schemas?.create, parameters ?? {}, `${r.service.name} plan ${r.plan.name}`);
    const broker: BrokerInstance = {
      name: r.broker.name,
      ...(r.broker.tenant ? { tenantBroker: true } : {}),
      serviceId: r.service.id,
      planId: r.plan.id,
      instanceId: randomUUID(),
      state: "provisioning",
      ...(parameters ? { parameters } : {}),
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
      op = await (await this.#d.brokers.clientOf(broker, tenant)).provision(broker.instanceId, {
        serviceId: broker.serviceId,
        planId: broker.planId,
        tenant,
        ...(parameters ? { parameters } : {}),
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
    parameters?: Record<string, unknown>,
  ): Promise<{ binding: AddonBinding; deploy?: string }> {
    // Checked against the catalog before waiting or storing anything.
    const before = await this.#d.get(tenant, name);
    const broker = await this.#d.brokers.brokerOf(before.broker as BrokerInstance, tenant);
    const service = broker.services.find((s) => s.id === before.broker?.serviceId);
    if (service && !service.bindable)
      throw invalid(`${before.kind} of broker ${broker.name} cannot be bound to apps`, [
        { field: "app", message: "the broker's catalog says the service is not bindable" },
      ]);
    const plan = service?.plans.find((p) => p.id === before.broker?.planId);
    checkParameters(
      plan?.schemas?.bind,
      parameters ?? {},
      `${before.kind} plan ${plan?.name ?? before.plan} (binding)`,
    );
    const a = await this.waitReady(tenant, name);
    const b = a.broker as BrokerInstance;
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
      ...(parameters ? { parameters } : {}),
    };
    // Kept before the broker is asked: a crash after the bind still knows the binding to unbind.
    await this.#d.update(tenant, name, (x) => {
      if (x.bindings.some((y) => y.app === app)) throw conflict(`add-on ${name} is already bound to ${app}`);
      return { ...x, bindings: [...x.bindings, binding] };
    });
    let vars: Record<string, string>;
    try {
      const creds = await (await this.#d.brokers.clientOf(b, tenant)).bind(b.instanceId, bindingId, {
        serviceId: b.serviceId,
        planId: b.planId,
        app: `${tenant}/${app}`,
        ...(parameters ? { parameters } : {}),
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
    // A rotation's new binding and one waiting to be revoked go too (410: never made, or gone already).
    const ids = [binding.bindingId, binding.rotating?.bindingId, binding.revoke?.bindingId];
    if (!purge)
      for (const id of new Set(ids.filter((x): x is string => typeof x === "string"))) {
        await (await this.#d.brokers.clientOf(b, tenant)).unbind(b.instanceId, id, {
          serviceId: b.serviceId,
          planId: b.planId,
        });
      }
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
    const op = await (await this.#d.brokers.clientOf(b, tenant)).deprovision(b.instanceId, {
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

  /**
   * Moves the instance to another plan (and/or gives it new parameters):
   * only a plan the catalog marks `plan_updateable`. Waits up to WAIT_MS for
   * an asynchronous update; after that the add-on timer follows it.
   */
  async changePlan(
    tenant: string,
    name: string,
    planName: string | undefined,
    parameters: Record<string, unknown> | undefined,
    actor: string,
  ): Promise<{ addon: Addon; pending?: boolean }> {
    const a = await this.#d.get(tenant, name);
    const b = a.broker as BrokerInstance;
    if (b.state !== "ready")
      throw conflict(`add-on ${name} is ${b.state}: its plan changes once it is ready`);
    const catalog = await this.#d.brokers.brokerOf(b, tenant);
    const service = catalog.services.find((s) => s.id === b.serviceId);
    if (!service)
      throw conflict(`broker ${b.name}'s catalog no longer offers ${a.kind} (herd addons brokers refresh)`);
    const target =
      planName === undefined
        ? service.plans.find((p) => p.id === b.planId)
        : service.plans.find((p) => p.name === planName);
    if (!target)
      throw invalid(`unknown plan ${planName} of ${a.kind}`, [
        { field: "plan", message: `must be one of ${service.plans.map((p) => p.name).join(", ")}` },
      ]);
    if (target.id === b.planId && parameters === undefined)
      throw invalid(`${name} is on plan ${target.name} already`, [
        { field: "plan", message: `another plan than ${target.name}, or parameters` },
      ]);
    if (target.id !== b.planId && !(target.planUpdateable ?? service.planUpdateable ?? false))
      throw invalid(`broker ${b.name} does not move ${a.kind} instances to plan ${target.name}`, [
        { field: "plan", message: "the broker's catalog says the plan is not plan_updateable" },
      ]);
    if (parameters !== undefined)
      checkParameters(target.schemas?.update, parameters, `${a.kind} plan ${target.name} (update)`);
    const update = {
      planId: target.id,
      plan: target.name,
      since: new Date().toISOString(),
      ...(parameters !== undefined ? { parameters } : {}),
    };
    // Kept before asking: a crash after the PATCH still finishes it (the timer sends it again).
    let claimed = false;
    await this.#d.update(tenant, name, (x) => {
      claimed = x.broker?.state === "ready";
      if (!claimed || !x.broker) return x;
      const { operation: _, ...rest } = x.broker;
      return { ...x, broker: { ...rest, state: "updating", update } };
    });
    if (!claimed) throw conflict(`add-on ${name} changed meanwhile; try again`);
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonPlanChanging",
      message: `${name}: plan ${a.plan} → ${target.name}${parameters ? " with new parameters" : ""} asked of broker ${b.name} by ${actor}`,
    });
    await this.#sendUpdate(await this.#d.get(tenant, name)).catch((err) => {
      if (isCode(err, "invalid") || isCode(err, "conflict")) throw err;
      throw new HerdError(
        "unavailable",
        `${(err as Error).message}; the plan change is kept and herd sends it again in a minute (herd addons info ${name})`,
      );
    });
    const until = Date.now() + WAIT_MS;
    for (;;) {
      const { addon, retryS } = await this.#advance(await this.#d.get(tenant, name));
      const st = (addon.broker as BrokerInstance).state;
      if (st !== "updating") {
        if (addon.broker?.planId !== target.id)
          throw new HerdError(
            "unavailable",
            `broker ${b.name} could not move ${name} to plan ${target.name}${addon.broker?.message ? `: ${addon.broker.message}` : ""}; it stays on ${addon.plan}`,
          );
        return { addon };
      }
      if (Date.now() > until) return { addon, pending: true };
      await sleep(Math.min((retryS ?? POLL_MS / 1000) * 1000, Math.max(0, until - Date.now()) + 10));
    }
  }

  /** Sends the stored plan change (again); a refusal puts the add-on back on its plan. */
  async #sendUpdate(a: Addon): Promise<void> {
    const b = a.broker as BrokerInstance;
    const u = b.update;
    if (b.state !== "updating" || !u) return;
    let op: Operation;
    try {
      op = await (await this.#d.brokers.clientOf(b, a.tenant)).update(b.instanceId, {
        serviceId: b.serviceId,
        planId: u.planId,
        previousPlanId: b.planId,
        tenant: a.tenant,
        ...(u.parameters ? { parameters: u.parameters } : {}),
      });
    } catch (err) {
      // The broker said no: nothing changed there. Otherwise (no answer) the timer asks again.
      if (isCode(err, "invalid") || isCode(err, "conflict"))
        await this.#endUpdate(a, false, (err as Error).message);
      throw err;
    }
    if (op.done) return void (await this.#endUpdate(a, true));
    await this.#set(a.tenant, a.name, {
      update: { ...u, sent: true },
      ...(op.operation ? { operation: op.operation } : {}),
    });
  }

  /** One step of a pending plan change: send it again when it was never answered, else ask last_operation. */
  async #advanceUpdate(a: Addon): Promise<{ addon: Addon; retryS?: number }> {
    const b = a.broker as BrokerInstance;
    const u = b.update;
    if (!u) return this.#endUpdate(a, false, "no plan change was recorded");
    if (!u.sent) {
      if (Date.now() - Date.parse(u.since) < RESEND_AFTER_MS) return { addon: a };
      await this.#sendUpdate(a);
      return { addon: await this.#d.get(a.tenant, a.name) };
    }
    const last = await (await this.#d.brokers.clientOf(b, a.tenant)).lastOperation(b.instanceId, {
      serviceId: b.serviceId,
      planId: u.planId,
      ...(b.operation ? { operation: b.operation } : {}),
    });
    if (last.state === "in progress")
      return { addon: a, ...(last.retryAfterS ? { retryS: last.retryAfterS } : {}) };
    if (last.state === "gone") return this.#endUpdate(a, false, "the broker no longer knows the instance");
    return this.#endUpdate(a, last.state === "succeeded", last.description);
  }

  /** Ends a plan change once: on the new plan, or back on the old one with the broker's word. */
  async #endUpdate(a: Addon, ok: boolean, description?: string): Promise<{ addon: Addon }> {
    const b = a.broker as BrokerInstance;
    const u = b.update;
    let moved = false;
    await this.#d.update(a.tenant, a.name, (x) => {
      moved = x.broker?.state === "updating" && x.broker.update?.since === u?.since;
      if (!moved || !x.broker) return x;
      const { operation: _, update: __, message: ___, ...rest } = x.broker;
      if (!ok || !u)
        return {
          ...x,
          broker: { ...rest, state: "ready", ...(description ? { message: description } : {}) },
        };
      return {
        ...x,
        plan: u.plan,
        broker: {
          ...rest,
          state: "ready",
          planId: u.planId,
          ...(u.parameters ? { parameters: { ...rest.parameters, ...u.parameters } } : {}),
        },
      };
    });
    if (moved)
      await this.#d.events.record({
        tenant: a.tenant,
        app: a.name,
        reason: ok ? "AddonPlanChanged" : "AddonPlanFailed",
        message: ok
          ? `${a.name} is on plan ${u?.plan} (broker ${b.name})`
          : `broker ${b.name} did not move ${a.name} to plan ${u?.plan}${description ? `: ${description}` : ""}; it stays on ${a.plan}`,
      });
    return { addon: await this.#d.get(a.tenant, a.name) };
  }

  /** Follows every pending asynchronous operation one step (the server's add-on timer). */
  async sync(addons: Addon[]): Promise<void> {
    for (const a of addons) {
      const s = a.broker?.state;
      if (s !== "provisioning" && s !== "deprovisioning" && s !== "updating") continue;
      await this.#advance(a).catch((err) =>
        this.#d.failed(
          a,
          "AddonBrokerUnreachable",
          `asking broker ${a.broker?.name} about ${a.name} failed (asked again): ${(err as Error).message}`,
        ),
      );
    }
  }

  /** Asks the broker about a pending operation once and records the answer. */
  async #advance(a: Addon): Promise<{ addon: Addon; retryS?: number; gone?: boolean }> {
    const b = a.broker;
    if (b?.state === "updating") return this.#advanceUpdate(a);
    if (!b || (b.state !== "provisioning" && b.state !== "deprovisioning")) return { addon: a };
    const client = await this.#d.brokers.clientOf(b, a.tenant);
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
        ...(b.parameters ? { parameters: b.parameters } : {}),
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
