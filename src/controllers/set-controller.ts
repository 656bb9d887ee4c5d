/**
 * Version sets: applies a herd.set.yaml, app by app in dependency order.
 *
 *   apply(set) ─► VersionSet vN (applying; steps = apps, dependencies first)
 *   reconcile(vN): next step ─► record `from` ─► pinned config (set-config.ts) ─► deploy the pinned release
 *                  ─► succeeded ─► next step
 *                  └► failed ─► rolling_back: moved apps back to their `from` release and config,
 *                               dependents first ─► rolled_back
 *
 * Everything the apply knows is in the stored VersionSet, written before each
 * action: a restart mid-apply resumes where it was (or goes on rolling back),
 * never leaves the set half applied without a state saying so.
 */

import { conflict, HerdError, notFound } from "../common/errors.ts";
import { dependencyWaves, findCycle, formatCycle } from "../model/dependencies.ts";
import { type App, appKey, type Deploy, type Release, releaseKey } from "../model/objects.ts";
import {
  type SetDiffEntry,
  type SetManifest,
  type SetStep,
  type VersionSet,
  versionSetKey,
} from "../model/version-set.ts";
import type { Context } from "./context.ts";
import { type DeployController, deployKey } from "./deploy-controller.ts";
import { configExists, configHolds, configServing, moveConfig } from "./set-config.ts";

/** How often a set waiting on a deploy looks again. */
const POLL_MS = 300;

export class SetController {
  readonly #ctx: Context;
  readonly #deploys: DeployController;

  constructor(ctx: Context, deploys: DeployController) {
    this.#ctx = ctx;
    this.#deploys = deploys;
  }

  /** Every version of a set, oldest first. */
  async history(tenant: string, name: string): Promise<VersionSet[]> {
    const prefix = `${tenant}/${name}/`;
    return (await this.#ctx.store.list<VersionSet>("version_set", { prefix })).items.map((o) => o.value);
  }

  /** One version of a set. */
  async get(tenant: string, name: string, version: number): Promise<VersionSet> {
    const o = await this.#ctx.store.get<VersionSet>("version_set", versionSetKey(tenant, name, version));
    if (!o) throw notFound(`set ${name} has no version ${version}`);
    return o.value;
  }

  /** Per app: the release content it serves now and the one the set pins. */
  async diff(tenant: string, manifest: SetManifest): Promise<SetDiffEntry[]> {
    const out: SetDiffEntry[] = [];
    for (const [app, entry] of Object.entries(manifest.apps)) {
      const serving = await this.#servingContent(tenant, app);
      const target = await this.#content(tenant, app, entry.version);
      const config =
        entry.config === undefined
          ? undefined
          : {
              serving: await configServing(this.#ctx.store, tenant, app),
              target: entry.config,
              change: (await configHolds(this.#ctx.store, tenant, app, entry.config))
                ? ("unchanged" as const)
                : ("changes" as const),
            };
      out.push({
        app,
        ...(config ? { config } : {}),
        serving,
        target: entry.version,
        change:
          serving === null
            ? "new"
            : serving === target
              ? "unchanged"
              : serving < target
                ? "upgrade"
                : "downgrade",
      });
    }
    return out;
  }

  /**
   * Stores a new version of the set in state applying (the controller moves
   * the apps). Refused: an unknown app or release (400 naming the field), a
   * dependency cycle (400 naming it), another apply of the set in flight (409).
   */
  async apply(tenant: string, manifest: SetManifest, rollbackOf?: number): Promise<VersionSet> {
    const { store, clock } = this.#ctx;
    const name = manifest.set ?? "default";
    for (const [app, entry] of Object.entries(manifest.apps)) {
      const a = await store.get<App>("app", appKey(tenant, app));
      if (!a || a.value.destroying)
        throw new HerdError("invalid", `apps.${app}: there is no app ${app} in tenant ${tenant}`, [
          { field: `apps.${app}`, message: "no such app" },
        ]);
      if (!(await store.get<Release>("release", releaseKey(tenant, app, entry.version))))
        throw new HerdError("invalid", `apps.${app}.version: app ${app} has no release v${entry.version}`, [
          { field: `apps.${app}.version`, message: `no release v${entry.version}` },
        ]);
      if (entry.config !== undefined && !(await configExists(store, tenant, app, entry.config)))
        throw new HerdError(
          "invalid",
          `apps.${app}.config: app ${app} has no config version ${entry.config}`,
          [{ field: `apps.${app}.config`, message: `no config version ${entry.config}` }],
        );
    }
    const order = await this.#order(tenant, manifest);
    const history = await this.history(tenant, name);
    const busy = history.find((s) => s.state === "applying" || s.state === "rolling_back");
    if (busy) throw conflict(`set ${name} v${busy.version} is still ${busy.state.replace("_", " ")}`);
    const previous = [...history].reverse().find((s) => s.state === "applied")?.version ?? null;
    const version = (history.at(-1)?.version ?? 0) + 1;
    const set: VersionSet = {
      tenant,
      name,
      version,
      createdAt: new Date(clock.now()).toISOString(),
      apps: manifest.apps,
      steps: order.map((app) => {
        const config = manifest.apps[app]?.config;
        return {
          app,
          version: manifest.apps[app]?.version ?? 0,
          ...(config ? { config } : {}),
          state: "pending",
        };
      }),
      state: "applying",
      previous,
      ...(rollbackOf !== undefined ? { rollbackOf } : {}),
      message: `applying: ${order.join(" → ")}`,
    };
    // expectRevision 0: two applies racing for the same version cannot both win.
    await store.put("version_set", versionSetKey(tenant, name, version), set, { expectRevision: 0 });
    await this.#ctx.events.record({
      tenant,
      reason: "SetApplying",
      message: `set ${name} v${version}: applying ${order.map((a) => `${a} v${manifest.apps[a]?.version}`).join(", ")}`,
    });
    return set;
  }

  /** Applies again the apps of an earlier applied version (default: the one before the current). */
  async rollback(tenant: string, name: string, version?: number): Promise<VersionSet> {
    const history = await this.history(tenant, name);
    const applied = history.filter((s) => s.state === "applied");
    const target =
      version !== undefined
        ? history.find((s) => s.version === version)
        : applied.length >= 2
          ? applied[applied.length - 2]
          : undefined;
    if (!target)
      throw new HerdError(
        "invalid",
        version !== undefined
          ? `set ${name} has no version ${version}`
          : `set ${name} has no applied version before the current one to roll back to`,
        [{ field: "version", message: "no such applied version" }],
      );
    if (target.state !== "applied")
      throw new HerdError("invalid", `set ${name} v${target.version} was never applied (${target.state})`, [
        { field: "version", message: `is ${target.state}` },
      ]);
    return this.apply(tenant, { set: name, apps: target.apps }, target.version);
  }

  /** Level-based: takes the next step of an applying or rolling-back set. Returns when to look again. */
  async reconcile(key: string): Promise<number | undefined> {
    const { store } = this.#ctx;
    const o = await store.get<VersionSet>("version_set", key);
    if (!o) return undefined;
    const set = o.value;
    const save = (next: VersionSet) => store.put("version_set", key, next, { expectRevision: o.revision });
    if (set.state === "applying") return this.#applyStep(set, save);
    if (set.state === "rolling_back") return this.#revertStep(set, save);
    return undefined;
  }

  async #applyStep(set: VersionSet, save: (s: VersionSet) => Promise<unknown>): Promise<number | undefined> {
    const { clock, events } = this.#ctx;
    const now = new Date(clock.now()).toISOString();
    const n = set.steps.findIndex((s) => s.state === "pending" || s.state === "moving");
    const withStep = (patch: Partial<SetStep>, rest: Partial<VersionSet> = {}): VersionSet => ({
      ...set,
      ...rest,
      steps: set.steps.map((s, i) => (i === n ? { ...s, ...patch } : s)),
    });
    if (n === -1) {
      const moved = set.steps.filter((s) => s.state === "done").map((s) => `${s.app} v${s.version}`);
      const message = moved.length
        ? `applied: ${moved.join(", ")}`
        : "applied: every app already ran its version";
      await save({ ...set, state: "applied", finishedAt: now, message });
      await events.record({
        tenant: set.tenant,
        reason: "SetApplied",
        message: `set ${set.name} v${set.version} ${message}`,
      });
      return undefined;
    }
    const step = set.steps[n] as SetStep;
    const { tenant, app } = { tenant: set.tenant, app: step.app };
    if (!step.deploy) {
      const serving = await this.#servingContent(tenant, app);
      const target = await this.#content(tenant, app, step.version);
      const { store } = this.#ctx;
      const configOk = step.config === undefined || (await configHolds(store, tenant, app, step.config));
      if (serving === target && configOk) {
        // A step that moved only the app's config is done; one that found everything in place, unchanged.
        const state = step.state === "moving" ? "done" : "unchanged";
        await save(withStep({ state, doneAt: now, from: step.from ?? serving }));
        return 0;
      }
      if (step.state === "pending") {
        // `from` is stored before the deploy starts: a rollback after a crash knows where to go back to.
        const a = await store.get<App>("app", appKey(tenant, app));
        const configFrom =
          step.config === undefined ? {} : { configFrom: await configServing(store, tenant, app) };
        await save(
          withStep({ state: "moving", from: a?.value.release ?? null, ...configFrom, startedAt: now }),
        );
        return 0;
      }
      if (!configOk && step.config !== undefined) {
        // Config first: the new release's instances start with the config they were pinned with.
        try {
          const made = await moveConfig(
            store,
            tenant,
            app,
            step.config,
            `version set ${set.name} v${set.version}`,
          );
          await events.record({
            tenant,
            app,
            reason: "SetConfigMoved",
            message: `set ${set.name} v${set.version}: ${app}'s config holds v${step.config}${made ? ` (as v${made})` : ""}`,
          });
        } catch (err) {
          return this.#fail(set, n, `${app}: config v${step.config}: ${(err as Error).message}`, save);
        }
        return 0;
      }
      try {
        const d = await this.#deploys.rollback(
          tenant,
          app,
          step.version,
          `version set ${set.name} v${set.version}`,
        );
        await save(
          withStep({ deploy: d.id }, { message: `${app}: moving to v${step.version} (deploy ${d.id})` }),
        );
        await events.record({
          tenant,
          app,
          deploy: d.id,
          reason: "SetAppMoving",
          message: `set ${set.name} v${set.version}: ${app} moves to v${step.version}`,
        });
        return POLL_MS;
      } catch (err) {
        return this.#fail(set, n, `${app}: ${(err as Error).message}`, save);
      }
    }
    const d = await this.#ctx.store.get<Deploy>("deploy", deployKey({ tenant, app, id: step.deploy }));
    const state = d?.value.state ?? "failed";
    if (state === "succeeded") {
      await save(withStep({ state: "done", doneAt: now }));
      await events.record({
        tenant,
        app,
        reason: "SetAppApplied",
        message: `set ${set.name} v${set.version}: ${app} runs v${step.version}, healthy`,
      });
      return 0;
    }
    if (state === "failed")
      return this.#fail(set, n, `${app}: ${d?.value.message ?? "its deploy is gone"}`, save);
    return POLL_MS;
  }

  async #fail(
    set: VersionSet,
    n: number,
    why: string,
    save: (s: VersionSet) => Promise<unknown>,
  ): Promise<number> {
    await save({
      ...set,
      state: "rolling_back",
      message: `${why}; rolling back to ${set.previous === null ? "what ran before" : `set v${set.previous}`}`,
      steps: set.steps.map((s, i) => (i === n ? { ...s, state: "failed" } : s)),
    });
    await this.#ctx.events.record({
      tenant: set.tenant,
      app: set.steps[n]?.app,
      type: "warning",
      reason: "SetFailed",
      message: `set ${set.name} v${set.version} failed at ${why}; rolling back the apps it moved`,
    });
    return 0;
  }

  /** Moves back one app the set moved, dependents first (reverse order). */
  async #revertStep(set: VersionSet, save: (s: VersionSet) => Promise<unknown>): Promise<number | undefined> {
    const { clock, events } = this.#ctx;
    const now = new Date(clock.now()).toISOString();
    let n = -1;
    for (let i = set.steps.length - 1; i >= 0; i--) {
      const s = set.steps[i] as SetStep;
      if (
        (s.state === "done" || s.state === "failed" || s.state === "moving") &&
        (typeof s.from === "number" || (s.configFrom ?? 0) > 0)
      ) {
        n = i;
        break;
      }
    }
    const withStep = (patch: Partial<SetStep>): VersionSet => ({
      ...set,
      steps: set.steps.map((s, i) => (i === n ? { ...s, ...patch } : s)),
    });
    if (n === -1) {
      const message = `${set.message.replace(/; rolling back.*$/, "")}; rolled back`;
      await save({ ...set, state: "rolled_back", finishedAt: now, message });
      await events.record({
        tenant: set.tenant,
        type: "warning",
        reason: "SetRolledBack",
        message: `set ${set.name} v${set.version} ${message}`,
      });
      return undefined;
    }
    const step = set.steps[n] as SetStep;
    const { tenant, app } = { tenant: set.tenant, app: step.app };
    // The release first (dependents of the config may be its code), then the config.
    const reverted = async () => {
      await this.#revertConfig(set, step);
      await save(withStep({ state: "reverted", doneAt: now }));
    };
    if (typeof step.from !== "number") {
      await reverted();
      return 0;
    }
    const from = step.from;
    if (step.revert) {
      const d = await this.#ctx.store.get<Deploy>("deploy", deployKey({ tenant, app, id: step.revert }));
      const state = d?.value.state ?? "failed";
      if (state === "building" || state === "rolling_out") return POLL_MS;
      await reverted();
      if (state === "failed")
        await events.record({
          tenant,
          app,
          type: "warning",
          reason: "SetRevertFailed",
          message: `set ${set.name} v${set.version}: ${app} could not go back to v${from}: ${d?.value.message ?? "its deploy is gone"}`,
        });
      return 0;
    }
    // A deploy of this set still in flight for the app ends first (it fails or succeeds, then is undone).
    if (step.deploy) {
      const d = await this.#ctx.store.get<Deploy>("deploy", deployKey({ tenant, app, id: step.deploy }));
      if (d && (d.value.state === "building" || d.value.state === "rolling_out")) return POLL_MS;
    }
    if ((await this.#servingContent(tenant, app)) === (await this.#content(tenant, app, from))) {
      // The failed deploy already put it back (the deploy controller reverts a failed rollout).
      await reverted();
      return 0;
    }
    try {
      const d = await this.#deploys.rollback(tenant, app, from, `version set ${set.name} v${set.version}`);
      await save(withStep({ revert: d.id }));
      await events.record({
        tenant,
        app,
        deploy: d.id,
        reason: "SetAppReverting",
        message: `set ${set.name} v${set.version}: ${app} goes back to v${from}`,
      });
      return POLL_MS;
    } catch (err) {
      await reverted();
      await events.record({
        tenant,
        app,
        type: "warning",
        reason: "SetRevertFailed",
        message: `set ${set.name} v${set.version}: ${app} could not go back to v${from}: ${(err as Error).message}`,
      });
      return 0;
    }
  }

  /** Puts the app's config back where the set found it (a warning event when it cannot). */
  async #revertConfig(set: VersionSet, step: SetStep): Promise<void> {
    const from = step.configFrom ?? 0;
    if (step.config === undefined || from === 0) return;
    const { tenant, app } = { tenant: set.tenant, app: step.app };
    try {
      const made = await moveConfig(
        this.#ctx.store,
        tenant,
        app,
        from,
        `version set ${set.name} v${set.version}`,
      );
      if (made)
        await this.#ctx.events.record({
          tenant,
          app,
          reason: "SetConfigReverted",
          message: `set ${set.name} v${set.version}: ${app}'s config back to v${from}'s content (as v${made})`,
        });
    } catch (err) {
      await this.#ctx.events.record({
        tenant,
        app,
        type: "warning",
        reason: "SetRevertFailed",
        message: `set ${set.name} v${set.version}: ${app}'s config could not go back to v${from}: ${(err as Error).message}`,
      });
    }
  }

  /**
   * The order apps move in: the set's dependsOn plus what the pinned releases'
   * services declare about other apps of the set. A cycle is refused (400).
   */
  async #order(tenant: string, manifest: SetManifest): Promise<string[]> {
    const graph = new Map<string, string[]>();
    for (const [app, entry] of Object.entries(manifest.apps)) {
      const release = await this.#ctx.store.get<Release>("release", releaseKey(tenant, app, entry.version));
      const declared = Object.values(release?.value.services ?? {}).flatMap((s) =>
        (s.dependsOn ?? []).filter((d) => d.includes("/")).map((d) => d.split("/")[0] as string),
      );
      const deps = [...new Set([...(entry.dependsOn ?? []), ...declared])].filter(
        (d) => d !== app && d in manifest.apps,
      );
      graph.set(app, deps);
    }
    const cycle = findCycle(graph);
    if (cycle) {
      const field = `apps.${cycle[0]}.dependsOn`;
      throw new HerdError("invalid", `${field}: dependency cycle: ${formatCycle(cycle)}`, [
        { field, message: `dependency cycle: ${formatCycle(cycle)}` },
      ]);
    }
    return dependencyWaves(graph).flat();
  }

  /** The content version (an old release a rollback reused counts as itself) the app serves; null: nothing. */
  async #servingContent(tenant: string, app: string): Promise<number | null> {
    const a = await this.#ctx.store.get<App>("app", appKey(tenant, app));
    if (!a || a.value.release === null) return null;
    return this.#content(tenant, app, a.value.release);
  }

  async #content(tenant: string, app: string, version: number): Promise<number> {
    const r = await this.#ctx.store.get<Release>("release", releaseKey(tenant, app, version));
    return r?.value.rollbackOf ?? version;
  }
}
