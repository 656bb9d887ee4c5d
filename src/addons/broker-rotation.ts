/**
 * Credential rotation of a broker's add-on: a new binding at the broker, its
 * credentials as the app's secrets (a new release rolls out), and the old
 * binding unbound by the add-on timer once that deploy has finished.
 *
 *   rotate ─► binding.rotating {new id} stored ─► PUT binding (new id) ─► secrets set
 *          ─► binding: id = new, revoke {old id} ─► secretChanged (new release) ─► revoke.afterDeploy
 *   sync   ─► rotating left by a crash: rolled forward (PUT again, same id: the broker answers 200)
 *          ─► revoke without its deploy (a crash): the release made now ─► deploy finished? ─► DELETE old binding
 *
 * Every step is recorded before the broker is asked, so a crash anywhere
 * leaves no binding herd does not know of and no app without credentials.
 */

import { randomUUID } from "node:crypto";
import { conflict, isCode } from "../common/errors.ts";
import type { Addon, AddonBinding, BrokerInstance } from "../model/addon.ts";
import type { AddonDeps } from "./addons.ts";
import { credentialVars } from "./broker-addons.ts";
import type { Brokers } from "./brokers.ts";
import { releaseForRevoke, revokeStep, rolloutUnderway, rotatedBindings, STALE_MS } from "./rotation.ts";

type Deps = Pick<AddonDeps, "store" | "secrets" | "deploys" | "events"> & {
  brokers: Brokers;
  update(tenant: string, name: string, f: (a: Addon) => Addon): Promise<void>;
  get(tenant: string, name: string): Promise<Addon>;
};

export class BrokerRotation {
  readonly #d: Deps;

  constructor(deps: Deps) {
    this.#d = deps;
  }

  /** A new binding for each of `a`'s bound apps (or `app`'s); the old ones are unbound after the rollout. */
  async rotate(
    a: Addon,
    app: string | undefined,
    actor: string,
  ): Promise<{ rotated: { app: string; deploy?: string }[] }> {
    const b = a.broker as BrokerInstance;
    if (b.state !== "ready" && b.state !== "updating")
      throw conflict(`add-on ${a.name} is ${b.state}: its credentials rotate once it is ready`);
    const bindings = rotatedBindings(a, app);
    const busy = bindings.find((x) => x.revoke || x.rotating);
    if (busy)
      throw conflict(
        `the last rotation of ${busy.app}'s credentials is still rolling out; rotate again once it has finished`,
      );
    const rotated: { app: string; deploy?: string }[] = [];
    for (const x of bindings) {
      const rotating = { bindingId: randomUUID(), since: new Date().toISOString() };
      let claimed = false;
      await this.#d.update(a.tenant, a.name, (y) => ({
        ...y,
        bindings: y.bindings.map((z) => {
          if (z.app !== x.app || z.rotating || z.revoke) return z;
          claimed = true;
          return { ...z, rotating };
        }),
      }));
      if (!claimed) throw conflict(`${x.app}'s credentials of ${a.name} are being rotated already`);
      const deploy = await this.#finish(a.tenant, a.name, x.app, actor).catch(async (err) => {
        // Refused by the broker: nothing was bound; the rotation is dropped. No answer: the timer goes on.
        if (isCode(err, "invalid") || isCode(err, "conflict")) await this.#drop(a, x.app, rotating.bindingId);
        throw err;
      });
      rotated.push({ app: x.app, ...(deploy ? { deploy } : {}) });
    }
    return { rotated };
  }

  /**
   * Binds under the recorded new id (again, after a crash: same id, same
   * binding), sets the secrets, switches the binding over and rolls out a
   * release. Returns the deploy's id.
   */
  async #finish(tenant: string, name: string, app: string, actor: string): Promise<string | undefined> {
    const a = await this.#d.get(tenant, name);
    const b = a.broker as BrokerInstance;
    const x = a.bindings.find((y) => y.app === app);
    const newId = x?.rotating?.bindingId;
    if (!x || !newId) return undefined;
    const creds = await (await this.#d.brokers.clientOf(b, tenant)).bind(b.instanceId, newId, {
      serviceId: b.serviceId,
      planId: b.planId,
      app: `${tenant}/${app}`,
      ...(x.parameters ? { parameters: x.parameters } : {}),
    });
    const vars = credentialVars(x.var, creds);
    const names = Object.keys(vars).sort();
    if (names.length === 0) throw conflict(`broker ${b.name} bound ${name} to ${app} without credentials`);
    // Secrets first: whatever the record says next, the app's secrets are the new binding's.
    for (const n of names) await this.#d.secrets.set(tenant, app, n, vars[n], actor);
    let switched: AddonBinding | undefined;
    const since = new Date().toISOString();
    await this.#d.update(tenant, name, (y) => ({
      ...y,
      bindings: y.bindings.map((z) => {
        if (z.app !== app || z.rotating?.bindingId !== newId) return z;
        const { rotating: _, ...rest } = z;
        switched = {
          ...rest,
          bindingId: newId,
          vars: names,
          rotation: (z.rotation ?? 0) + 1,
          revoke: { since, ...(z.bindingId ? { bindingId: z.bindingId } : {}) },
        };
        return switched;
      }),
    }));
    if (!switched) return undefined; // finished by another (the timer and a request both at it)
    for (const old of x.vars ?? [])
      if (!names.includes(old)) await this.#d.secrets.unset(tenant, app, old, actor).catch(() => undefined);
    const deploy = (await releaseForRevoke(this.#d, tenant, name, app, names[0], actor))?.id;
    await this.#d.events.record({
      tenant,
      app,
      reason: "AddonRotated",
      message: `a new binding of ${name} (broker ${b.name}) for ${app} by ${actor}; the old one is unbound once ${deploy ? `deploy ${deploy}` : "the app"} has rolled out`,
    });
    return deploy;
  }

  /** A rotation the broker refused: its id forgotten (unbound, should the broker have made it after all). */
  async #drop(a: Addon, app: string, bindingId: string): Promise<void> {
    const b = a.broker as BrokerInstance;
    await (await this.#d.brokers.clientOf(b, a.tenant))
      .unbind(b.instanceId, bindingId, { serviceId: b.serviceId, planId: b.planId })
      .catch(() => undefined);
    await this.#d.update(a.tenant, a.name, (y) => ({
      ...y,
      bindings: y.bindings.map((z) => {
        if (z.app !== app || z.rotating?.bindingId !== bindingId) return z;
        const { rotating: _, ...rest } = z;
        return rest;
      }),
    }));
  }

  /**
   * The add-on timer: finishes rotations a crash interrupted and unbinds old
   * bindings whose apps run the new credentials (the deploy finished).
   */
  async sync(a: Addon): Promise<void> {
    const b = a.broker;
    if (!b || (b.state !== "ready" && b.state !== "updating")) return;
    const now = Date.now();
    for (const x of a.bindings) {
      if (x.rotating && now - Date.parse(x.rotating.since) > STALE_MS) {
        await this.#finish(a.tenant, a.name, x.app, "herd").catch(async (err) => {
          if (isCode(err, "invalid") || isCode(err, "conflict"))
            await this.#drop(a, x.app, x.rotating?.bindingId as string);
          throw err;
        });
        continue;
      }
      const r = x.revoke;
      if (!r?.bindingId) continue;
      // The switch recorded but no release made yet (or a crash in between: made now).
      const step = revokeStep(r, now);
      if (step === "release")
        await releaseForRevoke(this.#d, a.tenant, a.name, x.app, (x.vars ?? [x.var])[0], "herd");
      if (step !== "rolled-out?") continue;
      if (await rolloutUnderway(this.#d.store, a.tenant, x.app, r.afterDeploy)) continue;
      await (await this.#d.brokers.clientOf(b, a.tenant)).unbind(b.instanceId, r.bindingId, {
        serviceId: b.serviceId,
        planId: b.planId,
      });
      let cleared = false;
      await this.#d.update(a.tenant, a.name, (y) => ({
        ...y,
        bindings: y.bindings.map((z) => {
          if (z.app !== x.app || z.revoke?.bindingId !== r.bindingId) return z;
          cleared = true;
          const { revoke: _, ...rest } = z;
          return rest;
        }),
      }));
      if (cleared)
        await this.#d.events.record({
          tenant: a.tenant,
          app: x.app,
          reason: "AddonRevoked",
          message: `the old binding of ${a.name} for ${x.app} is unbound at broker ${b.name}`,
        });
    }
  }
}
