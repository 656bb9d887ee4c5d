/**
 * An app's history and how much of it stays. Each release holds a slug (and
 * its source) in the artifact store and on the nodes that ran it, and each
 * deploy is a store object with a log, so an app deployed many times a day
 * would fill the disks: after each deploy ends, `pruneHistory` deletes
 *
 * - the logs of its finished deploys beyond the newest 20 (deploy-log.ts),
 *   and the Deploy objects beyond the newest 100 (an etcd store has a size
 *   quota); a deploy still building or rolling out keeps both;
 * - its releases beyond the newest `keepReleases` (default 50, `herd up
 *   --keep-releases N`, 0 keeps every one), as a Kubernetes Deployment keeps
 *   its last ReplicaSets. A release still in use always stays, however old:
 *   the one serving, a rollout's baseline, one an instance or an unfinished
 *   run runs, one a deploy in flight moves from or to, and one a version set
 *   pins (its rollback needs it).
 *
 * The artifact collection (builder/artifact-collect.ts) then removes the slugs
 * and sources nothing names.
 *
 *   deploy ends ─► pruneHistory(app) ─► finished deploys (one listing) ─► logs, Deploy objects
 *                                    └─► pruneReleases ─► store.delete(release) … ─► ReleasesPruned
 */

import { FINISHED, type Run } from "../model/job.ts";
import {
  type App,
  appKey,
  type Deploy,
  type Instance,
  type Release,
  type Service,
} from "../model/objects.ts";
import type { VersionSet } from "../model/version-set.ts";
import type { Informer } from "../store/informer.ts";
import type { Store, StoredObject } from "../store/store.ts";
import type { Context } from "./context.ts";

export const KEPT_RELEASES = 50;
/** Finished deploys an app keeps (its history: `herd deploys`); their logs are kept for fewer (deploy-log.ts). */
export const KEPT_DEPLOYS = 100;

/** After a deploy of the app ended: its old deploy logs, Deploy objects and releases go. A failure is logged only. */
export async function pruneHistory(
  ctx: Pick<Context, "store" | "informer" | "deployLogs" | "events" | "logger" | "settings">,
  tenant: string,
  app: string,
): Promise<void> {
  const failed = (what: string) => (err: unknown) =>
    ctx.logger.warn(`pruning ${what} failed`, { err, app: appKey(tenant, app) });
  await finishedDeploys(ctx.store, tenant, app)
    .then(async (finished) => {
      ctx.deployLogs.prune(finished.map((o) => o.value));
      await pruneDeploys(ctx.store, finished);
    })
    .catch(failed("old deploys"));
  const keep = ctx.settings.keepReleases ?? KEPT_RELEASES;
  const pruned = await pruneReleases(ctx.store, ctx.informer, tenant, app, keep).catch((err) => {
    failed("old releases")(err);
    return [];
  });
  if (pruned.length > 0)
    await ctx.events.record({
      tenant,
      app,
      reason: "ReleasesPruned",
      type: "normal",
      message: `deleted ${
        pruned.length === 1
          ? `release v${pruned[0]}`
          : pruned.length <= 5
            ? `releases ${pruned.map((v) => `v${v}`).join(", ")}`
            : `${pruned.length} releases, v${pruned[0]} to v${pruned.at(-1)}`
      }: the app keeps its newest ${keep} and those in use (--keep-releases)`,
    });
}

/** The app's finished deploys, newest first. */
export async function finishedDeploys(
  store: Store,
  tenant: string,
  app: string,
): Promise<StoredObject<Deploy>[]> {
  return (await store.list<Deploy>("deploy", { prefix: `${appKey(tenant, app)}/` })).items
    .filter((o) => o.value.state === "succeeded" || o.value.state === "failed")
    .sort(
      (a, b) => b.value.createdAt.localeCompare(a.value.createdAt) || b.value.id.localeCompare(a.value.id),
    );
}

/** Deletes the finished deploys (newest first, finishedDeploys) beyond the newest `keep`; how many went. */
export async function pruneDeploys(
  store: Store,
  finished: readonly StoredObject<Deploy>[],
  keep = KEPT_DEPLOYS,
): Promise<number> {
  let deleted = 0;
  for (const o of finished.slice(keep))
    if (await store.delete("deploy", o.key, { expectRevision: o.revision }).catch(() => false)) deleted++;
  return deleted;
}

/** Deletes the app's releases older than its newest `keep` that nothing uses; returns their versions. */
export async function pruneReleases(
  store: Store,
  informer: Informer,
  tenant: string,
  app: string,
  keep: number,
): Promise<number[]> {
  if (keep <= 0) return [];
  const prefix = `${appKey(tenant, app)}/`;
  const releases = (await store.list<Release>("release", { prefix })).items.sort(
    (a, b) => b.value.version - a.value.version,
  );
  const old = releases.slice(keep);
  if (old.length === 0) return [];
  const used = await releasesInUse(store, informer, tenant, app);
  const deleted: number[] = [];
  for (const o of old) {
    if (used.has(o.value.version)) continue;
    // A release written since it was listed (a rollback to it points a service at it) keeps its revision check.
    await store.delete("release", o.key, { expectRevision: o.revision }).then(
      () => deleted.push(o.value.version),
      () => {},
    );
  }
  return deleted.sort((a, b) => a - b);
}

/** Every version of the app that something refers to. */
async function releasesInUse(
  store: Store,
  informer: Informer,
  tenant: string,
  app: string,
): Promise<Set<number>> {
  const used = new Set<number>();
  const add = (v: number | null | undefined) => {
    if (typeof v === "number") used.add(v);
  };
  const prefix = `${appKey(tenant, app)}/`;
  add((await store.get<App>("app", appKey(tenant, app)))?.value.release);
  for (const { value: s } of (await store.list<Service>("service", { prefix })).items) {
    add(s.release);
    add(s.progressive?.baseline);
    add(s.progressive?.release);
  }
  for (const { value: d } of (await store.list<Deploy>("deploy", { prefix })).items) {
    if (d.state === "succeeded" || d.state === "failed") continue;
    add(d.release);
    add(d.previous);
  }
  // Instances and runs from the informer, as the controllers read them: no listing of whole kinds.
  await informer.sync();
  for (const { value: i } of informer.by<Instance>("instance", "app", appKey(tenant, app))) add(i.release);
  for (const { value: r } of informer.list<Run>("run"))
    if (r.tenant === tenant && r.app === app && !FINISHED.has(r.state)) add(r.release);
  for (const { value: v } of (await store.list<VersionSet>("version_set", { prefix: `${tenant}/` })).items) {
    add(v.apps[app]?.version);
    for (const step of v.steps) {
      if (step.app !== app) continue;
      add(step.version);
      add(step.from);
    }
  }
  return used;
}
