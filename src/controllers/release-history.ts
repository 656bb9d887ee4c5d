/**
 * How many releases an app keeps. Each release holds a slug (and its
 * source) in the artifact store and on the nodes that ran it, so an app
 * deployed many times a day would fill the disk: after each deploy ends, an
 * app's releases beyond the newest `keepReleases` (default 50, `herd up
 * --keep-releases N`, 0 keeps every one) are deleted, as a Kubernetes
 * Deployment keeps its last ReplicaSets. A release still in use always
 * stays, however old: the one serving, a rollout's baseline, one an instance
 * or a run not finished runs, one a deploy in flight moves from or to, and one a
 * version set pins (its rollback needs it). The artifact collection
 * (build/artifact-collect.ts) then removes the slugs and sources nothing
 * names.
 *
 *   deploy ends ─► pruneReleases(app) ─► store.delete(release) … ─► ReleasesPruned event
 *              └─► pruneDeploys(app): finished deploys past the newest 100 (their logs went at 20)
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
import type { Store } from "../store/store.ts";

export const KEPT_RELEASES = 50;
/** Finished deploys an app keeps (its history: `herd deploys`); their logs are kept for fewer (deploy-log.ts). */
export const KEPT_DEPLOYS = 100;

/**
 * Deletes an app's finished deploys beyond its newest `keep`: without it
 * every deploy stays a store object for good (an etcd store has a size
 * quota). A deploy still building or rolling out always stays.
 */
export async function pruneDeploys(
  store: Store,
  tenant: string,
  app: string,
  keep = KEPT_DEPLOYS,
): Promise<number> {
  const finished = (await store.list<Deploy>("deploy", { prefix: `${appKey(tenant, app)}/` })).items
    .filter((o) => o.value.state === "succeeded" || o.value.state === "failed")
    .sort(
      (a, b) => b.value.createdAt.localeCompare(a.value.createdAt) || b.value.id.localeCompare(a.value.id),
    );
  let deleted = 0;
  for (const o of finished.slice(keep))
    if (await store.delete("deploy", o.key, { expectRevision: o.revision }).catch(() => false)) deleted++;
  return deleted;
}

/** Deletes the app's releases older than its newest `keep` that nothing uses; returns their versions. */
export async function pruneReleases(
  store: Store,
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
  const used = await releasesInUse(store, tenant, app);
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
async function releasesInUse(store: Store, tenant: string, app: string): Promise<Set<number>> {
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
  for (const { value: i } of (await store.list<Instance>("instance")).items)
    if (i.tenant === tenant && i.app === app) add(i.release);
  for (const { value: r } of (await store.list<Run>("run")).items)
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
