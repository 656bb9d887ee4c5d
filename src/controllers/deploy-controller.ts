/**
 * Deploys and releases.
 *
 *   upload ─► build (builder) ─► Release vN ─► services → vN (updating) ─► service controller rolls out
 *                                                   │
 *   reconcile(deploy): all services running vN → succeeded, app.release = vN
 *                      a service failed        → failed; services back to the previous release
 *
 * A rollback is the same path without the build: a new release that reuses an
 * old release's slug and spec (and the secret versions it pinned). A secret
 * change is that path too: a new release of the running content with the
 * secret's new version.
 */

import { addonVars, withAddonSecrets } from "../addons/bindings.ts";
import { conflict, HerdError, notFound } from "../common/errors.ts";
import { newId } from "../common/ids.ts";
import { keepTraffic } from "../model/live-config.ts";
import { missingSecrets, referencedSecrets, type ServiceSpec } from "../model/manifest.ts";
import {
  type App,
  appKey,
  type Deploy,
  type Instance,
  type Release,
  releaseKey,
  type Service,
  serviceKey,
} from "../model/objects.ts";
import { DEFAULT_ANALYSIS, DEFAULT_STEPS, formatDuration, formatThreshold } from "../model/progressive.ts";
import { formatDeadline, serviceDeadlineMs } from "../model/rollout.ts";
import { updateObject } from "../store/store.ts";
import type { Context } from "./context.ts";
import { checkDependencies, dependencyOrder } from "./dependencies.ts";
import { checkImageUser } from "./image-user.ts";
import { checkQuota } from "./quota.ts";
import { pruneHistory } from "./release-history.ts";
import { checkHostsOwned, checkRouteFree, routeOwners } from "./route-owners.ts";
import { clampToAutoscale } from "./scale.ts";

/** What a build produced: enough to make a release. */
export interface BuildResult {
  source: string;
  slug: string;
  services: Record<string, ServiceSpec>;
  /** herd.yaml's alert rules, kept in the release. */
  alerts?: Release["alerts"];
  description: string;
  /** The secret versions to pin (a rollback keeps its target's); absent: each secret's latest. */
  secrets?: Release["secrets"];
  /** A promotion's origin, kept on the release (model/pipeline.ts). */
  promotedFrom?: Release["promotedFrom"];
}

/** Runs a new release's release phase (controllers/jobs.ts); throws when it fails. */
export type ReleasePhase = (deploy: Deploy, release: Release, log: (line: string) => void) => Promise<void>;

/** With a shared store, a build no server finished within this long is taken for lost with its server. */
const BUILD_ORPHAN_MS = 30 * 60 * 1000;

export class DeployController {
  readonly #ctx: Context;
  readonly #releasePhase: ReleasePhase | undefined;
  /** Deploys whose build runs in this process (a build interrupted by a restart fails). */
  readonly #building = new Set<string>();

  constructor(ctx: Context, releasePhase?: ReleasePhase) {
    this.#ctx = ctx;
    this.#releasePhase = releasePhase;
  }

  /** Creates a deploy in state building; `build` runs in the background and its result is rolled out. */
  async startDeploy(
    tenant: string,
    app: string,
    build: (log: (line: string) => void) => Promise<BuildResult>,
    options: { deadlineMs?: number; createdBy?: string } = {},
  ): Promise<Deploy> {
    const appObj = await this.#liveApp(tenant, app);
    const deploy = await this.#newDeploy(appObj.value, {
      message: "building",
      ...(options.deadlineMs !== undefined ? { deadlineMs: options.deadlineMs } : {}),
      ...(options.createdBy !== undefined ? { createdBy: options.createdBy } : {}),
    });
    const log = (line: string) => this.#ctx.deployLogs.append(deploy.id, "build", line);
    void (async () => {
      try {
        const result = await build(log);
        await this.#release(deploy, result, false, undefined, true);
      } catch (err) {
        const e = err instanceof HerdError ? err : new HerdError("internal", (err as Error).message);
        for (const d of e.details ?? []) log(`${d.field}: ${d.message}`);
        await this.#finish(deploy.id, tenant, app, "failed", e.message);
      } finally {
        this.#building.delete(deploy.id);
      }
    })();
    return deploy;
  }

  /** Rolls back to `version` (default: the release before the current one) as a new release. */
  async rollback(tenant: string, app: string, version?: number, createdBy?: string): Promise<Deploy> {
    const appObj = await this.#liveApp(tenant, app);
    const current = appObj.value.release;
    if (current === null) throw new HerdError("invalid", `app ${app} has no release to roll back from`);
    const releases = (
      await this.#ctx.store.list<Release>("release", { prefix: `${appKey(tenant, app)}/` })
    ).items.map((o) => o.value);
    let target: Release | undefined;
    if (version !== undefined) {
      target = releases.find((r) => r.version === version);
      if (!target) {
        const versions = releases.map((r) => r.version).sort((a, b) => a - b);
        const has =
          versions.length > 10
            ? `v${versions[0]} to v${versions.at(-1)}`
            : versions.map((v) => `v${v}`).join(", ");
        const pruned = version < (versions[0] ?? 0) && version >= 1;
        throw notFound(
          pruned
            ? `release v${version} of ${app} was deleted: an app keeps its newest releases (--keep-releases) and those in use; it has ${has}`
            : `app ${app} has no release v${version} (it has ${has})`,
        );
      }
      if (version === current)
        throw new HerdError("invalid", `v${version} is already the current release`, [
          { field: "version", message: "is the current release" },
        ]);
    } else {
      const cur = releases.find((r) => r.version === current);
      const currentContent = cur?.rollbackOf ?? current;
      target = [...releases]
        .reverse()
        .find((r) => r.version < current && (r.rollbackOf ?? r.version) !== currentContent);
      if (!target)
        throw new HerdError("invalid", `app ${app} has no release before v${current} to roll back to`);
    }
    // A rollback has no build, but it is in the same "building" state until its release exists.
    const deploy = await this.#newDeploy(appObj.value, {
      rollback: true,
      message: `rolling back to v${target.version}`,
      ...(createdBy !== undefined ? { createdBy } : {}),
    });
    try {
      const content = target.rollbackOf ?? target.version;
      await this.#release(
        deploy,
        {
          source: target.source,
          slug: target.slug,
          services: target.services,
          ...(target.alerts ? { alerts: target.alerts } : {}),
          ...(target.secrets ? { secrets: target.secrets } : {}),
          description: `Rollback to v${target.version}`,
        },
        true,
        content,
      );
    } finally {
      this.#building.delete(deploy.id);
    }
    return (await this.#ctx.store.get<Deploy>("deploy", deployKey(deploy)))!.value;
  }

  /**
   * A secret of the app changed. When the release its services are on refers
   * to it, a new release of the same content with the secret's latest version
   * rolls out (like a config change); otherwise nothing happens (undefined).
   */
  async secretChanged(
    tenant: string,
    app: string,
    secret: string,
    createdBy?: string,
  ): Promise<Deploy | undefined> {
    const { store } = this.#ctx;
    const appObj = await store.get<App>("app", appKey(tenant, app));
    if (!appObj || appObj.value.destroying) return undefined;
    const base = await this.#desiredRelease(tenant, app, appObj.value.release);
    const bound = (await addonVars(store, tenant, app)).includes(secret);
    const injected = base && Object.values(base.services).some((s) => s.addonSecrets?.includes(secret));
    if (!base || (!referencedSecrets(base.services).includes(secret) && !bound && !injected))
      return undefined;
    const deploy = await this.#newDeploy(appObj.value, {
      message: `secret ${secret} changed`,
      ...(createdBy !== undefined ? { createdBy } : {}),
    });
    try {
      await this.#release(
        deploy,
        {
          source: base.source,
          slug: base.slug,
          services: base.services,
          ...(base.alerts ? { alerts: base.alerts } : {}),
          description: `Secret ${secret} changed (content of v${base.version})`,
        },
        false,
      );
    } catch (err) {
      await this.#finish(deploy.id, tenant, app, "failed", (err as Error).message);
      throw err;
    } finally {
      this.#building.delete(deploy.id);
    }
    return (await store.get<Deploy>("deploy", deployKey(deploy)))!.value;
  }

  /** Whether the release an app's services are on refers to `secret` (an unset must not pull it away). */
  async secretInUse(tenant: string, app: string, secret: string): Promise<string | undefined> {
    const a = await this.#ctx.store.get<App>("app", appKey(tenant, app));
    const base = a ? await this.#desiredRelease(tenant, app, a.value.release) : undefined;
    if (!base) return undefined;
    for (const [name, spec] of Object.entries(base.services)) {
      const variable = Object.entries(spec.secrets ?? {}).find(([, s]) => s === secret)?.[0];
      if (variable) return `release v${base.version} gives it to ${name} as ${variable}`;
    }
    return undefined;
  }

  /** The release the app's services point to (the one rolling out, else the serving one). */
  async #desiredRelease(tenant: string, app: string, serving: number | null): Promise<Release | undefined> {
    const { store } = this.#ctx;
    const services = (await store.list<Service>("service", { prefix: `${appKey(tenant, app)}/` })).items;
    const version = Math.max(serving ?? 0, ...services.map((s) => s.value.release));
    if (version === 0) return undefined;
    return (await store.get<Release>("release", releaseKey(tenant, app, version)))?.value;
  }

  /**
   * What a release of `services` is refused for, checked by a build before it
   * installs anything (so a missing secret does not wait for `npm ci`), and
   * again when the release is made: a route another app holds, an image user
   * the tenant may not have, a dependency that is not there, a secret that
   * is not set. Throws the first problem.
   */
  async preflight(tenant: string, app: string, services: Record<string, ServiceSpec>): Promise<void> {
    const checked = await this.#checked(tenant, app, services);
    await this.#latestSecrets(tenant, app, checked);
  }

  /** `services` checked (but for their secrets), with the URL secrets of the app's add-on bindings (src/addons/bindings.ts). */
  async #checked(
    tenant: string,
    app: string,
    services: Record<string, ServiceSpec>,
  ): Promise<Record<string, ServiceSpec>> {
    const { store } = this.#ctx;
    await this.#checkRoutes(tenant, app, services);
    await checkImageUser(store, tenant, services);
    await checkDependencies(store, tenant, app, services);
    return withAddonSecrets(services, await addonVars(store, tenant, app));
  }

  /** The latest version of each secret `services` refer to; one that is not set throws, naming the env variable and the secret. */
  async #latestSecrets(
    tenant: string,
    app: string,
    services: Record<string, ServiceSpec>,
  ): Promise<Record<string, number>> {
    const latest: Record<string, number> = {};
    const missing = new Set<string>();
    for (const name of referencedSecrets(services)) {
      const info = await this.#ctx.secrets.info(tenant, app, name);
      if (!info) missing.add(name);
      else latest[name] = info.version;
    }
    const problems = missingSecrets(app, services, (name) => !missing.has(name));
    if (problems.length > 0) {
      const first = problems[0]!;
      throw new HerdError("invalid", `${first.field}: ${first.message}`, problems);
    }
    return latest;
  }

  /**
   * The secret versions a release pins: the given ones (a rollback's), which
   * must still be kept, or each referenced secret's latest. A secret that is
   * not set fails the deploy, naming the env variable and the secret.
   */
  async #pinSecrets(
    tenant: string,
    app: string,
    services: Record<string, ServiceSpec>,
    given: Release["secrets"],
  ): Promise<Release["secrets"]> {
    if (referencedSecrets(services).length === 0) return undefined;
    const { secrets } = this.#ctx;
    const latest = await this.#latestSecrets(tenant, app, services);
    const pins = Object.fromEntries(Object.entries(latest).map(([name, v]) => [name, given?.[name] ?? v]));
    if (given) {
      for (const [name, version] of Object.entries(pins)) {
        await secrets.value(tenant, app, name, version).catch((err: Error) => {
          throw new HerdError("invalid", `${err.message}: set it again, or deploy`, [
            { field: `secrets.${name}`, message: err.message },
          ]);
        });
      }
    }
    return pins;
  }

  /** The app, which must exist and not be on its way out. */
  async #liveApp(tenant: string, app: string) {
    const appObj = await this.#ctx.store.get<App>("app", appKey(tenant, app));
    if (!appObj) throw notFound(`app ${app} does not exist`);
    if (appObj.value.destroying) throw conflict(`app ${app} is being destroyed`);
    return appObj;
  }

  /** Stores a new deploy in state building, remembered as in progress in this process. */
  async #newDeploy(
    app: App,
    extra: Pick<Deploy, "message"> & Partial<Pick<Deploy, "rollback" | "deadlineMs" | "createdBy">>,
  ): Promise<Deploy> {
    const deploy: Deploy = {
      id: newId(10),
      tenant: app.tenant,
      app: app.name,
      state: "building",
      createdAt: new Date(this.#ctx.clock.now()).toISOString(),
      previous: app.release,
      ...extra,
    };
    this.#building.add(deploy.id);
    await this.#ctx.store.put("deploy", deployKey(deploy), deploy, { expectRevision: 0 });
    return deploy;
  }

  /** Makes release vN from a build and points the app's services at it. */
  async #release(
    deploy: Deploy,
    result: BuildResult,
    rollback: boolean,
    rollbackOf?: number,
    releasePhase = false,
  ): Promise<void> {
    const { store, clock, deployLogs, events } = this.#ctx;
    const { tenant, app } = deploy;
    const step = (m: string) => deployLogs.append(deploy.id, "step", m);
    result = { ...result, services: await this.#checked(tenant, app, result.services) };
    const secrets = await this.#pinSecrets(tenant, app, result.services, result.secrets);
    const previous = deploy.previous
      ? await store.get<Release>("release", releaseKey(tenant, app, deploy.previous))
      : undefined;
    const existing = (await store.list<Service>("service", { prefix: `${appKey(tenant, app)}/` })).items;
    // Keep a count set by `herd scale` unless herd.yaml changed it; an autoscaled service keeps
    // the autoscaler's count (inside the new bounds).
    const counts = new Map(
      Object.entries(result.services).map(([name, spec]) => {
        const cur = existing.find((o) => o.value.name === name);
        if (cur && spec.autoscale) return [name, clampToAutoscale(spec.autoscale, cur.value.instances)];
        const prevSpec = previous?.value.services[name];
        const keep = cur && prevSpec && prevSpec.instances === spec.instances;
        return [name, keep ? cur.value.instances : spec.instances];
      }),
    );
    await checkQuota(
      store,
      this.#ctx.settings.unit,
      tenant,
      app,
      Object.fromEntries(
        Object.entries(result.services).map(([name, spec]) => [
          name,
          { instances: counts.get(name) ?? 0, resources: spec.resources },
        ]),
      ),
      true,
    );
    // Take the next version number (optimistic: retried on a concurrent deploy).
    const taken = await updateObject<App>(store, "app", appKey(tenant, app), (a) => {
      if (!a) throw notFound(`app ${app} was destroyed during the deploy`);
      return { ...a.value, latestVersion: a.value.latestVersion + 1 };
    });
    const version = taken!.value.latestVersion;
    const release: Release = {
      tenant,
      app,
      version,
      createdAt: new Date(clock.now()).toISOString(),
      description: result.description,
      source: result.source,
      slug: result.slug,
      services: result.services,
      ...(result.alerts ? { alerts: result.alerts } : {}),
      ...(rollbackOf !== undefined ? { rollbackOf } : {}),
      ...(secrets ? { secrets } : {}),
      ...(deploy.createdBy !== undefined ? { createdBy: deploy.createdBy } : {}),
      ...(result.promotedFrom ? { promotedFrom: result.promotedFrom } : {}),
    };
    await store.put("release", releaseKey(tenant, app, version), release, { expectRevision: 0 });
    step(`Release v${version} created (${result.description})`);
    await events.record({
      tenant,
      app,
      deploy: deploy.id,
      reason: "ReleaseCreated",
      message: `release v${version}: ${result.description}`,
    });
    // A new build's release phase (herd.yaml `release:`) runs before anything rolls out; it throws on failure.
    if (releasePhase) await this.#releasePhase?.(deploy, release, step);

    // Dependencies first: a dependent's controller must find what it waits for (dependsOn).
    for (const name of dependencyOrder(app, result.services)) {
      const spec = result.services[name] as ServiceSpec;
      const key = serviceKey(tenant, app, name);
      const cur = existing.find((o) => o.key === key);
      const instances = counts.get(name) ?? spec.instances;
      const svc: Service = {
        tenant,
        app,
        name,
        release: version,
        spec,
        instances,
        state: rollback ? "rolling_back" : "updating",
        message: `rolling out v${version}`,
        deploy: deploy.id,
        crashes: 0,
        rollout: {
          deadlineMs: deploy.deadlineMs ?? serviceDeadlineMs(spec, this.#ctx.settings.rolloutDeadlineMs),
          best: 0,
          since: new Date(clock.now()).toISOString(),
        },
      };
      // Traffic policies set through the API stay, unless this release changes them in herd.yaml.
      const traffic = keepTraffic(cur?.value.traffic, previous?.value.services[name], spec);
      if (traffic) svc.traffic = traffic;
      // Canary and blue/green need a release that serves to run beside; a first deploy and a rollback roll.
      const strategy = spec.rollout?.strategy;
      const serving = deploy.previous ?? null;
      if (strategy && !rollback && cur && serving !== null && cur.value.instances > 0) {
        svc.progressive = {
          strategy,
          baseline: serving,
          release: version,
          phase: strategy === "canary" ? "steps" : "preview",
          step: 0,
          weight: 0,
          analyses: [],
          ...(spec.rollout?.sticky ? { sticky: spec.rollout.sticky } : {}),
        };
      }
      await store.put("service", key, svc, cur ? { expectRevision: cur.revision } : { expectRevision: 0 });
      step(
        svc.progressive
          ? `${name}: ${describeProgressive(svc.progressive.strategy, spec, version, svc.progressive.baseline, instances)}`
          : `${name}: rolling out v${version} to ${instances} instance${instances === 1 ? "" : "s"} (fails after ${formatDeadline(svc.rollout!.deadlineMs)} without progress)`,
      );
    }
    for (const o of existing) {
      if (o.value.name in result.services) continue;
      await store.delete("service", o.key);
      step(`${o.value.name}: not in v${version}, stopping it`);
    }
    const d = await store.get<Deploy>("deploy", deployKey(deploy));
    if (d) {
      await store.put(
        "deploy",
        d.key,
        {
          ...d.value,
          state: "rolling_out",
          release: version,
          message: `rolling out v${version}`,
          previousInstances: Object.fromEntries(existing.map((o) => [o.value.name, o.value.instances])),
        },
        {
          expectRevision: d.revision,
        },
      );
    }
  }

  /**
   * A route another app, or a route object of any app, already serves makes
   * the deploy fail before any release is made (409).
   */
  async #checkRoutes(tenant: string, app: string, services: Record<string, ServiceSpec>): Promise<void> {
    const owners = await routeOwners(
      this.#ctx.store,
      tenant,
      (o) => o.source === "herd.yaml" && o.tenant === tenant && o.app === app,
    );
    const hosts: { host: string; field: string }[] = [];
    for (const [name, spec] of Object.entries(services)) {
      spec.routes.forEach((r, n) => {
        checkRouteFree(owners, r, `services.${name}.routes.${n}`, ` of ${name}`, app);
        hosts.push({ host: r.host, field: `services.${name}.routes.${n}.host` });
      });
    }
    await checkHostsOwned(this.#ctx.store, tenant, hosts);
  }

  /** Level-based: decides whether a rolling-out deploy has succeeded or failed. */
  async reconcile(key: string): Promise<void> {
    const { store } = this.#ctx;
    const o = await store.get<Deploy>("deploy", key);
    if (!o) return;
    const d = o.value;
    if (d.state === "building") {
      const foreign =
        this.#ctx.settings.sharedStore && this.#ctx.clock.now() - Date.parse(d.createdAt) < BUILD_ORPHAN_MS;
      if (!this.#building.has(d.id) && !foreign)
        await this.#finish(
          d.id,
          d.tenant,
          d.app,
          "failed",
          "the server restarted during the build; deploy again",
        );
      return;
    }
    if (d.state !== "rolling_out") return;
    const services = (await store.list<Service>("service", { prefix: `${appKey(d.tenant, d.app)}/` })).items;
    const ours = services.filter((s) => s.value.deploy === d.id);
    if (ours.length === 0) {
      await this.#finish(d.id, d.tenant, d.app, "failed", "superseded by a newer deploy");
      return;
    }
    const failed = ours.find((s) => s.value.state === "failed");
    if (failed) {
      await this.#revert(
        d,
        ours.map((s) => s.key),
      );
      const tail = await this.#crashTail(d);
      await this.#finish(
        d.id,
        d.tenant,
        d.app,
        "failed",
        `${failed.value.name}: ${failed.value.message}. ${d.previous ? (failed.value.spec.mode === "pet" ? `v${d.previous} comes back in place (pets are updated in place).` : `v${d.previous} keeps serving.`) : "Nothing was running before."}${tail}`,
      );
      return;
    }
    const instances = (await store.list<Instance>("instance")).items.map((i) => i.value);
    const done = ours.every(
      (s) =>
        s.value.state === "running" &&
        !instances.some(
          (i) =>
            i.tenant === d.tenant &&
            i.app === d.app &&
            i.service === s.value.name &&
            i.desired === "running" &&
            i.release !== d.release,
        ),
    );
    if (!done) return;
    for (const s of ours) {
      await store.put(
        "service",
        s.key,
        { ...s.value, deploy: undefined, rollout: undefined, progressive: undefined, message: "" },
        { expectRevision: s.revision },
      );
    }
    const a = await store.get<App>("app", appKey(d.tenant, d.app));
    if (a)
      await store.put(
        "app",
        a.key,
        { ...a.value, release: d.release ?? null },
        { expectRevision: a.revision },
      );
    const urls = servingUrls(
      this.#ctx.settings.gatewayUrl,
      ours.flatMap((s) => s.value.spec.routes),
    );
    await this.#finish(
      d.id,
      d.tenant,
      d.app,
      "succeeded",
      `v${d.release} is serving${urls.length ? ` at ${urls.join(" ")}` : ""}`,
    );
  }

  /** Points the deploy's services back at the release that served before. */
  async #revert(d: Deploy, keys: string[]): Promise<void> {
    const { store } = this.#ctx;
    const previous = d.previous
      ? (await store.get<Release>("release", releaseKey(d.tenant, d.app, d.previous)))?.value
      : undefined;
    for (const key of keys) {
      const o = await store.get<Service>("service", key);
      if (!o) continue;
      const spec = previous?.services[o.value.name];
      if (previous && spec) {
        await store.put(
          "service",
          key,
          {
            ...o.value,
            release: previous.version,
            spec,
            // Back to the count that ran before (herd.yaml's or a scale's), not the failed release's.
            instances: d.previousInstances?.[o.value.name] ?? spec.instances,
            state: "running",
            deploy: undefined,
            rollout: undefined,
            crashes: 0,
            backoffUntil: undefined,
            message: `v${d.release} failed to roll out; serving v${previous.version}`,
            // No request to the failed release while its instances stop (the rollout controller forgets it then).
            ...(o.value.progressive
              ? { progressive: { ...o.value.progressive, phase: "aborted" as const, weight: 0 } }
              : {}),
          },
          { expectRevision: o.revision },
        );
      } else if (previous) {
        await store.delete("service", key);
      } else {
        await store.put(
          "service",
          key,
          { ...o.value, deploy: undefined, rollout: undefined },
          { expectRevision: o.revision },
        );
      }
    }
  }

  async #crashTail(d: Deploy): Promise<string> {
    const events = await this.#ctx.events.list({ tenant: d.tenant, app: d.app, limit: 200 });
    const last = [...events]
      .reverse()
      .find((e) => e.details && e.details.length > 0 && e.time >= d.createdAt);
    if (!last?.details) return "";
    return `\nLast log lines of ${last.instance}:\n${last.details
      .slice(-15)
      .map((l) => `  ${l}`)
      .join("\n")}`;
  }

  async #finish(
    id: string,
    tenant: string,
    app: string,
    state: "succeeded" | "failed",
    message: string,
  ): Promise<void> {
    const { store, clock, deployLogs, events } = this.#ctx;
    const key = `${tenant}/${app}/${id}`;
    const o = await store.get<Deploy>("deploy", key);
    if (!o || o.value.state === "succeeded" || o.value.state === "failed") return;
    await store.put(
      "deploy",
      key,
      { ...o.value, state, message, finishedAt: new Date(clock.now()).toISOString() },
      { expectRevision: o.revision },
    );
    await events.record({
      tenant,
      app,
      deploy: id,
      reason: state === "succeeded" ? "DeploySucceeded" : "DeployFailed",
      type: state === "succeeded" ? "normal" : "warning",
      message: message.split("\n")[0],
    });
    deployLogs.append(id, "done", message, state);
    await pruneHistory(this.#ctx, tenant, app);
  }
}

/** "canary of v2 beside v1 (3 instances): 5% 1m → 25% 2m → 50% → promote; analysis every 10s: error rate < 1%, p99 < 1.2x baseline" */
function describeProgressive(
  strategy: "canary" | "bluegreen",
  spec: ServiceSpec,
  version: number,
  baseline: number,
  instances: number,
): string {
  const count = `${instances} instance${instances === 1 ? "" : "s"}`;
  if (strategy === "bluegreen")
    return `blue/green: v${version} starts in full (${count}) beside v${baseline}, which serves until the switch`;
  const steps = (spec.rollout?.steps ?? DEFAULT_STEPS)
    .map((s) => `${s.weight}%${s.pauseMs > 0 ? ` ${formatDuration(s.pauseMs)}` : ""}`)
    .join(" → ");
  const a = spec.rollout?.analysis ?? DEFAULT_ANALYSIS;
  const bounds = [
    a.errorRate ? `error rate ${formatThreshold(a.errorRate, "errorRate")}` : "",
    a.p50 ? `p50 ${formatThreshold(a.p50, "latency")}` : "",
    a.p99 ? `p99 ${formatThreshold(a.p99, "latency")}` : "",
  ].filter(Boolean);
  return `canary of v${version} beside v${baseline} (${count}): ${steps} → promote; analysis every ${formatDuration(a.intervalMs)} (at least ${a.minRequests} requests): ${bounds.join(", ") || "no bounds"}`;
}

export const deployKey = (d: Pick<Deploy, "tenant" | "app" | "id">): string => `${d.tenant}/${d.app}/${d.id}`;

/**
 * Where the routes answer, as a deploy's last line shows them: each URL once
 * (routes that differ by method or header share one), a wildcard host as
 * written (`*.shop.localhost`: its base domain is not served).
 */
export function servingUrls(gatewayUrl: string, routes: readonly { host: string; path: string }[]): string[] {
  const u = new URL(gatewayUrl);
  return [...new Set(routes.map((r) => `${u.protocol}//${r.host}${u.port ? `:${u.port}` : ""}${r.path}`))];
}
