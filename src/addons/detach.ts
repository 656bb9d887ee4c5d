/**
 * Detaching an app from one of herd's own add-ons. The binding leaves at
 * once and the app gets a new release without the URL; the app's database
 * and role are dropped by the add-on timer only once that release has rolled
 * out, since the running instances use them until they are replaced.
 *
 *   detach ─► binding → detached (kept before the release) ─► secretChanged (new release)
 *          ─► detached.afterDeploy = its id (or .released: nothing to roll out) ─► URL secret unset
 *   dropDetached (every sync) ─► not released yet? wait (a crash in between: released after STALE_MS)
 *                             ─► rolled out (rotation.ts rolloutUnderway)?
 *                             ─► postgres: a backup of its database (reason detach; its id on the entry first)
 *                             ─► driver.drop ─► forgotten
 *
 * The backup is what Heroku's detach gives by leaving the data alone: the
 * database can be had back (attach the app again, then restore the backup).
 * Redis needs none: its drop takes only the user, the keys stay.
 * Attaching the app again waits until its drop is done: the drop would take
 * the new binding's database with it.
 */

import { conflict, notFound } from "../common/errors.ts";
import type { Addon, AddonBinding, DetachedBinding } from "../model/addon.ts";
import type { AddonDeps } from "./addons.ts";
import { dumpAddon, newBackup, withBackup } from "./backups.ts";
import { ADMIN_SECRET, driverOf, type KindDriver } from "./kinds.ts";
import { revokeStep, rolloutUnderway } from "./rotation.ts";

type Deps = Pick<AddonDeps, "store" | "secrets" | "deploys" | "events" | "artifacts"> & {
  update(tenant: string, name: string, f: (a: Addon) => Addon): Promise<void>;
  endpoint(tenant: string, name: string): Promise<string | undefined>;
  /** The kind's driver (kinds.ts driverOf; a test's own). */
  driver?: (a: Addon) => Pick<KindDriver, "drop">;
  /** The dump of the databases (backups.ts dumpAddon; a test's own). */
  dump?: typeof dumpAddon;
};

/** Refuses to bind `app` while a drop of its earlier binding to `a` is pending. */
export function refuseWhileDropping(a: Addon, app: string): void {
  const d = a.detached?.find((x) => x.app === app);
  if (d)
    throw conflict(
      `${app} was detached from ${a.name} and its database ${d.database} is dropped once that release has rolled out (${d.afterDeploy ? `deploy ${d.afterDeploy}` : "not released yet"}); attach it again after that`,
    );
}

/** What a detach answers: the deploy that takes the URL away, and whether a backup comes before the drop. */
export interface Detached {
  deploy?: string;
  backupFirst?: boolean;
}

/** Whether the drop of `e` waits for a backup: postgres's drop takes the data, redis's only the user. */
const backedUp = (a: Addon, e: DetachedBinding): boolean => a.kind === "postgres" && !e.withoutBackup;

export class Detach {
  readonly #d: Deps;

  constructor(deps: Deps) {
    this.#d = deps;
  }

  /** Takes the URL from the app (a new release); its database and role go once that release has rolled out. */
  async detach(a: Addon, app: string, actor: string, withoutBackup = false): Promise<Detached> {
    const { tenant, name } = a;
    const b = a.bindings.find((x) => x.app === app);
    if (!b) throw notFound(`add-on ${name} is not bound to ${app}`);
    // Kept before the release: a crash in between still drops the database later.
    const entry = await this.#moveToDetached(a, b, withoutBackup ? { withoutBackup } : {});
    let deploy: string | undefined;
    let failed: string | undefined;
    try {
      deploy = await this.#release(a, entry, actor);
    } catch (err) {
      failed = (err as Error).message;
    }
    const dropped = `its database ${b.database} is dropped${backedUp(a, entry) ? " (after a backup)" : ""}`;
    const then = failed
      ? `the release without ${b.var} failed (${failed}): it is tried again, and ${dropped} once it has rolled out`
      : deploy
        ? `${dropped} once deploy ${deploy} has rolled out`
        : `${dropped} at once (the app has no release to roll out)`;
    await this.#d.events.record({
      tenant,
      app,
      reason: "AddonDetached",
      message: `add-on ${name} detached from ${app} by ${actor}; ${then}`,
    });
    return { ...(deploy ? { deploy } : {}), ...(backedUp(a, entry) ? { backupFirst: true } : {}) };
  }

  /**
   * The binding of an app that was destroyed: detached with nothing to roll
   * out (the app and its secrets are gone), so its database and role are
   * dropped at the next sync, postgres's after a backup, as a detach's are.
   */
  async appGone(a: Addon, app: string): Promise<void> {
    const b = a.bindings.find((x) => x.app === app);
    if (!b) return;
    const entry = await this.#moveToDetached(a, b, { released: true });
    await this.#d.events.record({
      tenant: a.tenant,
      app: a.name,
      reason: "AddonDetached",
      message: `add-on ${a.name} detached from ${app}, which was destroyed; its ${a.kind === "redis" ? `user ${b.user} is deleted (the keys stay)` : `database ${b.database} is dropped${backedUp(a, entry) ? " after a backup" : ""}`}`,
    });
  }

  /** Moves the binding `b` from the add-on's bindings to its detached ones (what its drop needs), in one write. */
  async #moveToDetached(
    a: Addon,
    b: AddonBinding,
    extra: Pick<DetachedBinding, "withoutBackup" | "released">,
  ): Promise<DetachedBinding> {
    const entry: DetachedBinding = {
      app: b.app,
      var: b.var,
      user: b.user,
      database: b.database,
      ...(b.login ? { login: b.login } : {}),
      since: new Date().toISOString(),
      ...extra,
    };
    await this.#d.update(a.tenant, a.name, (x) => ({
      ...x,
      bindings: x.bindings.filter((y) => y.app !== b.app),
      detached: [...(x.detached ?? []).filter((y) => y.app !== b.app), entry],
    }));
    return entry;
  }

  /** Drops the databases of detached bindings whose release has rolled out. */
  async dropDetached(a: Addon): Promise<void> {
    const pending = a.detached ?? [];
    if (pending.length === 0) return;
    const now = Date.now();
    for (const e of pending) {
      const step = revokeStep(e, now);
      if (step === "release") await this.#release(a, e, "herd");
      if (step !== "rolled-out?") continue;
      if (await rolloutUnderway(this.#d.store, a.tenant, e.app, e.afterDeploy)) continue;
      const endpoint = await this.#d.endpoint(a.tenant, a.name);
      if (!endpoint) return;
      const admin = await this.#d.secrets.value(a.tenant, a.name, ADMIN_SECRET);
      const backup = backedUp(a, e) ? (e.backup ?? (await this.#backup(a, e, endpoint, admin))) : undefined;
      await (this.#d.driver ?? driverOf)(a).drop(endpoint, admin, e);
      await this.#d.update(a.tenant, a.name, (x) => ({
        ...x,
        detached: (x.detached ?? []).filter((y) => y.app !== e.app),
      }));
      await this.#d.events.record({
        tenant: a.tenant,
        app: e.app,
        reason: "AddonDatabaseDropped",
        message: `${a.name}: the database ${e.database} of ${e.app} is dropped (its release without ${e.var} has rolled out)${
          backup
            ? `; backup ${backup} keeps it (herd addons restore ${a.name} ${backup} after attaching ${e.app} again)`
            : ""
        }`,
      });
    }
  }

  /** Dumps the detached database; the backup and its id on the entry are one write, so a crash after it takes no second one. */
  async #backup(a: Addon, e: DetachedBinding, endpoint: string, admin: string): Promise<string> {
    const dumped = await (this.#d.dump ?? dumpAddon)(a, endpoint, admin, this.#d.artifacts, [e.database]);
    const backup = newBackup(dumped, "detach", e.app);
    await this.#d.update(a.tenant, a.name, (x) => ({
      ...withBackup(x, backup),
      detached: (x.detached ?? []).map((y) => (y.app === e.app ? { ...y, backup: backup.id } : y)),
    }));
    await this.#d.events.record({
      tenant: a.tenant,
      app: a.name,
      reason: "AddonBackup",
      message: `detach backup ${backup.id} of ${a.name} (${e.database}, of ${e.app}) before its drop`,
    });
    return backup.id;
  }

  /** The app's release without the URL; the entry learns its deploy (or that none was needed). Returns the deploy's id. */
  async #release(a: Addon, e: DetachedBinding, actor: string): Promise<string | undefined> {
    const deploy = await this.#d.deploys.secretChanged(a.tenant, e.app, e.var, actor);
    await this.#d.secrets.unset(a.tenant, e.app, e.var, actor).catch(() => undefined);
    await this.#d.update(a.tenant, a.name, (x) => ({
      ...x,
      detached: (x.detached ?? []).map((y) =>
        y.app === e.app ? { ...y, ...(deploy ? { afterDeploy: deploy.id } : { released: true }) } : y,
      ),
    }));
    return deploy?.id;
  }
}
