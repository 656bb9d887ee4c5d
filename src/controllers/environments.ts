/**
 * Environments (model/pipeline.ts): promotion along a pipeline, and the
 * previews controller that destroys preview apps after their deadline.
 *
 *   promote(pipeline, from, to) ─► source app's serving release (slug, specs)
 *        ─► retargetServices (target keeps env values, size, own hosts)
 *        ─► deploys.startDeploy(target) with no build ─► release vN {promotedFrom}
 *
 *   every second: preview past expiresAt ─► its app marked destroying (app controller
 *                 takes it apart) ─► once the app is gone, the preview record goes too
 */

import { conflict, invalid, notFound } from "../common/errors.ts";
import { type App, appKey, type Deploy, type Release, releaseKey } from "../model/objects.ts";
import {
  type Pipeline,
  type Preview,
  pipelineKey,
  promotionStages,
  retargetServices,
} from "../model/pipeline.ts";
import type { Context } from "./context.ts";
import type { DeployController } from "./deploy-controller.ts";

/** What a promotion started: the target's deploy and the release it ships. */
export interface Promotion {
  deploy: Deploy;
  from: { stage: string; app: string; version: number; slug: string };
  to: { stage: string; app: string };
}

/**
 * Ships `version` (default: the serving release) of the `from` stage's app to
 * the `to` stage's app as its next release: same slug, no build. The target
 * app is created when missing. Throws 400 for stages out of order, 404 for a
 * missing pipeline or release, 409 when the source serves nothing.
 */
export async function promote(
  ctx: Pick<Context, "store" | "events">,
  deploys: DeployController,
  input: { tenant: string; pipeline: string; from: string; to: string; version?: number; createdBy?: string },
): Promise<Promotion> {
  const { store, events } = ctx;
  const { tenant } = input;
  const p = await store.get<Pipeline>("pipeline", pipelineKey(tenant, input.pipeline));
  if (!p) throw notFound(`pipeline ${input.pipeline} does not exist (herd pipelines lists them)`);
  const stages = promotionStages(p.value, input.from, input.to);
  if ("field" in stages) throw invalid(stages.message, [stages]);
  const { from, to } = stages;
  const source = await store.get<App>("app", appKey(tenant, from.app));
  if (!source) throw notFound(`app ${from.app} (stage ${from.name}) does not exist`);
  const version = input.version ?? source.value.release;
  if (version === null)
    throw conflict(`app ${from.app} (stage ${from.name}) has no release serving to promote`);
  const rel = (await store.get<Release>("release", releaseKey(tenant, from.app, version)))?.value;
  if (!rel) throw notFound(`app ${from.app} has no release v${version}`);

  let target = await store.get<App>("app", appKey(tenant, to.app));
  if (!target) {
    const app: App = {
      tenant,
      name: to.app,
      createdAt: new Date().toISOString(),
      release: null,
      latestVersion: 0,
    };
    await store
      .put("app", appKey(tenant, to.app), app, { expectRevision: 0 })
      .catch((err: { code?: string }) => {
        if (err.code !== "conflict") throw err;
      });
    await events.record({
      tenant,
      app: to.app,
      reason: "AppCreated",
      message: `app ${to.app} created for stage ${to.name}`,
    });
    target = await store.get<App>("app", appKey(tenant, to.app));
  }
  if (target?.value.destroying) throw conflict(`app ${to.app} is being destroyed`);
  const current =
    target?.value.release != null
      ? (await store.get<Release>("release", releaseKey(tenant, to.app, target.value.release)))?.value
      : undefined;
  const services = retargetServices(rel.services, from.app, current?.services, to.app);
  const origin = `${from.app} v${rel.version}`;
  const deploy = await deploys.startDeploy(
    tenant,
    to.app,
    async (log) => {
      log(`Promoting ${origin} (${from.name} → ${to.name}): slug ${rel.slug.slice(0, 12)}, no build`);
      return {
        source: rel.source,
        slug: rel.slug,
        services,
        ...(rel.alerts ? { alerts: rel.alerts } : {}),
        description: `Promote ${origin} (slug ${rel.slug.slice(0, 7)})`,
        promotedFrom: { pipeline: p.value.name, stage: from.name, app: from.app, version: rel.version },
      };
    },
    input.createdBy !== undefined ? { createdBy: input.createdBy } : {},
  );
  await events.record({
    tenant,
    app: to.app,
    deploy: deploy.id,
    reason: "Promoted",
    message: `promoting ${origin} from ${from.name} to ${to.name} (pipeline ${p.value.name})`,
  });
  return {
    deploy,
    from: { stage: from.name, app: from.app, version: rel.version, slug: rel.slug },
    to: { stage: to.name, app: to.app },
  };
}

/** How long a preview record may wait for its app to be created before it is taken for a leftover. */
const PREVIEW_CREATE_GRACE_MS = 60_000;

/** Destroys preview apps whose deadline passed; the deadline is stored, so a restart keeps it. */
export class PreviewReaper {
  readonly #ctx: Context;
  #timer: NodeJS.Timeout | undefined;

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  start(everyMs = 1000): void {
    this.#timer = setInterval(
      () => void this.sweep().catch((err) => this.#ctx.logger.warn("preview sweep failed", { err })),
      everyMs,
    );
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** One pass: expired previews' apps marked destroying; records of apps that are gone deleted. */
  async sweep(): Promise<void> {
    const { store, clock, events } = this.#ctx;
    const now = clock.now();
    for (const o of (await store.list<Preview>("preview")).items) {
      const pv = o.value;
      const app = await store.get<App>("app", appKey(pv.tenant, pv.app));
      if (!app) {
        // The record is written just before its app: a young one whose app is missing is being created.
        const settled = now - Date.parse(pv.createdAt) > PREVIEW_CREATE_GRACE_MS;
        if (settled || Date.parse(pv.expiresAt) <= now) await store.delete("preview", o.key);
        continue;
      }
      if (app.value.destroying || Date.parse(pv.expiresAt) > now) continue;
      await store.put("app", app.key, { ...app.value, destroying: true }, { expectRevision: app.revision });
      await events.record({
        tenant: pv.tenant,
        app: pv.app,
        reason: "PreviewExpired",
        message: `preview ${pv.name} of ${pv.of} expired at ${pv.expiresAt}; destroying app ${pv.app}`,
      });
    }
  }
}
