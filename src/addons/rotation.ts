/**
 * Credential rotation of herd's own add-ons: new credentials beside the old
 * ones, the bound app's URL secret changed (a new release rolls out), and the
 * old ones revoked by the add-on timer once that deploy has finished.
 *
 *   rotate ─► driver.rotate (new login / second password) ─► binding.revoke recorded
 *          ─► URL secret ─► secretChanged (new release) ─► revoke.afterDeploy = its id
 *                                                            (or revoke.released: nothing to roll out)
 *   revokeRotated (every sync) ─► neither yet? wait (a crash in between: the release made after STALE_MS)
 *                              ─► deploy finished? ─► driver.revoke ─► binding.revoke cleared
 *
 * What is to be revoked is kept before the URL changes (a role name or a
 * password's hash, never a password), so a crash in between still revokes it.
 */

import { createHash, randomBytes } from "node:crypto";
import { conflict, notFound } from "../common/errors.ts";
import { deployKey } from "../controllers/deploy-controller.ts";
import type { Addon, AddonBinding } from "../model/addon.ts";
import type { Deploy, Instance } from "../model/objects.ts";
import type { AddonDeps } from "./addons.ts";
import { ADMIN_SECRET, driverOf } from "./kinds.ts";

/** The bindings a rotation renews: all of `a`'s, or `app`'s (notFound when it has none). */
export function rotatedBindings(a: Addon, app: string | undefined): AddonBinding[] {
  const bindings = a.bindings.filter((b) => app === undefined || b.app === app);
  if (app !== undefined && bindings.length === 0) throw notFound(`add-on ${a.name} is not bound to ${app}`);
  return bindings;
}

/** A rotation's step left this long was left by a crash, not a slow request: the add-on timer finishes it. */
export const STALE_MS = 90_000;

/** States in which an instance's process is gone: it holds no connection with old credentials. */
const GONE: ReadonlySet<Instance["state"]> = new Set(["stopped", "crashed", "failed", "lost"]);

/**
 * Whether the deploy that carries new credentials still runs, or an instance of
 * an older release is still up (draining its requests, or not yet out of every
 * gateway's table): the old credentials are kept until both have ended.
 */
export async function rolloutUnderway(
  store: AddonDeps["store"],
  tenant: string,
  app: string,
  deploy: string | undefined,
): Promise<boolean> {
  if (!deploy) return false;
  const d = await store.get<Deploy>("deploy", deployKey({ tenant, app, id: deploy }));
  if (!d) return false;
  if (d.value.state === "building" || d.value.state === "rolling_out") return true;
  const release = d.value.release;
  if (d.value.state !== "succeeded" || release === undefined) return false;
  const instances = (await store.list<Instance>("instance")).items.map((o) => o.value);
  return instances.some(
    (i) => i.tenant === tenant && i.app === app && i.release < release && !GONE.has(i.state),
  );
}

/**
 * What a pending revoke waits for: "wait" while its rotation is between the
 * new URL and its release (the old instances still use the old credentials),
 * "release" when a crash left it there for STALE_MS (the release is made
 * now), else "rolled-out?" (its deploy, if any, has to have finished).
 */
export function revokeStep(
  r: Pick<NonNullable<AddonBinding["revoke"]>, "afterDeploy" | "released" | "since">,
  now: number,
): "wait" | "release" | "rolled-out?" {
  if (r.afterDeploy || r.released) return "rolled-out?";
  return now - Date.parse(r.since) > STALE_MS ? "release" : "wait";
}

/**
 * A rotation's release (herd's own add-ons and brokers' alike): a new release
 * with the new credentials, its deploy kept on the app's binding's revoke
 * (`released` when the app has no release to roll out). Until then the revoke
 * waits (revokeStep): the running instances still use the old credentials.
 */
export async function releaseForRevoke(
  d: Pick<AddonDeps, "deploys"> & {
    update(tenant: string, name: string, f: (a: Addon) => Addon): Promise<void>;
  },
  tenant: string,
  name: string,
  app: string,
  secret: string,
  actor: string,
): Promise<Deploy | undefined> {
  const deploy = await d.deploys.secretChanged(tenant, app, secret, actor);
  await d.update(tenant, name, (x) => ({
    ...x,
    bindings: x.bindings.map((y) =>
      y.app === app && y.revoke
        ? { ...y, revoke: { ...y.revoke, ...(deploy ? { afterDeploy: deploy.id } : { released: true }) } }
        : y,
    ),
  }));
  return deploy;
}

type Deps = Pick<AddonDeps, "store" | "secrets" | "deploys" | "events"> & {
  update(tenant: string, name: string, f: (a: Addon) => Addon): Promise<void>;
  endpoint(tenant: string, name: string): Promise<string | undefined>;
  waitEndpoint(tenant: string, name: string, timeoutMs: number): Promise<string>;
};

export class Rotation {
  readonly #d: Deps;

  constructor(deps: Deps) {
    this.#d = deps;
  }

  /** New credentials for `a`'s bindings (all, or `app`'s); the old ones are revoked later. */
  async rotate(
    a: Addon,
    app: string | undefined,
    actor: string,
  ): Promise<{ rotated: { app: string; deploy?: string }[] }> {
    const { tenant, name } = a;
    const bindings = rotatedBindings(a, app);
    const busy = bindings.find((b) => b.revoke);
    if (busy)
      throw conflict(
        `the last rotation of ${busy.app}'s credentials is still rolling out; rotate again once it has finished`,
      );
    const driver = driverOf(a);
    const endpoint = await this.#d.waitEndpoint(tenant, name, 10_000);
    const admin = await this.#d.secrets.value(tenant, name, ADMIN_SECRET);
    const rotated: { app: string; deploy?: string }[] = [];
    for (const b of bindings) {
      const rotation = (b.rotation ?? 0) + 1;
      const password = randomBytes(18).toString("hex");
      const oldUrl = await this.#d.secrets.value(tenant, b.app, b.var).catch(() => undefined);
      const out = await driver.rotate(endpoint, admin, { ...b, rotation }, password);
      const oldPassword = oldUrl ? decodeURIComponent(new URL(oldUrl).password) : undefined;
      const revoke = {
        since: new Date().toISOString(),
        ...out.revoke,
        ...(a.kind === "redis" && oldPassword
          ? { passwordSha256: createHash("sha256").update(oldPassword).digest("hex") }
          : {}),
      };
      // Recorded before the URL changes: a crash after this still revokes the old credentials later.
      await this.#d.update(tenant, name, (x) => ({
        ...x,
        bindings: x.bindings.map((y) =>
          y.app === b.app ? { ...y, rotation, ...(out.login ? { login: out.login } : {}), revoke } : y,
        ),
      }));
      await this.#d.secrets.set(tenant, b.app, b.var, driver.url(out.account, endpoint), actor);
      const deploy = await releaseForRevoke(this.#d, tenant, name, b.app, b.var, actor);
      await this.#d.events.record({
        tenant,
        app: b.app,
        reason: "AddonRotated",
        message: `new credentials of ${name} for ${b.app} by ${actor}; the old ones are revoked once ${deploy ? `deploy ${deploy.id}` : "the app"} has rolled out`,
      });
      rotated.push({ app: b.app, ...(deploy ? { deploy: deploy.id } : {}) });
    }
    return { rotated };
  }

  /** Revokes old credentials whose new URL has rolled out (the deploy finished, or there was none). */
  async revokeRotated(a: Addon): Promise<void> {
    const pending = a.bindings.filter((b) => b.revoke);
    if (pending.length === 0) return;
    const endpoint = await this.#d.endpoint(a.tenant, a.name);
    if (!endpoint) return;
    const now = Date.now();
    for (const b of pending) {
      const r = b.revoke;
      if (!r) continue;
      const step = revokeStep(r, now);
      if (step === "release") await releaseForRevoke(this.#d, a.tenant, a.name, b.app, b.var, "herd");
      if (step !== "rolled-out?") continue;
      if (await rolloutUnderway(this.#d.store, a.tenant, b.app, r.afterDeploy)) continue;
      const admin = await this.#d.secrets.value(a.tenant, a.name, ADMIN_SECRET);
      await driverOf(a).revoke(endpoint, admin, b.user, r);
      await this.#d.update(a.tenant, a.name, (x) => ({
        ...x,
        bindings: x.bindings.map((y) => {
          if (y.app !== b.app) return y;
          const { revoke: _, ...rest } = y;
          return rest;
        }),
      }));
      await this.#d.events.record({
        tenant: a.tenant,
        app: b.app,
        reason: "AddonRevoked",
        message: `the old credentials of ${a.name} for ${b.app} are revoked`,
      });
    }
  }
}
