/**
 * Config versions pinned in a version set (`config: N` beside an app's
 * release in herd.set.yaml): the set moves the app's config (the config
 * center's app layer) to version N's content before its release, and back
 * when the set rolls back.
 *
 * Moving means a config-center rollback to N (a new version with N's
 * content, as `herd config rollback` makes): versions are never rewritten,
 * and the config center pushes it to running instances as any change. "Holds"
 * compares content, so a set applied twice, or resumed after a crash between
 * the change and the set's own write, does not change the config again.
 */

import { type ConfigHead, type ConfigVersion, configHeadKey, configVersionKey } from "../model/config.ts";
import type { Store } from "../store/store.ts";

const version = async (store: Store, tenant: string, app: string, v: number) =>
  (await store.get<ConfigVersion>("config_version", configVersionKey("app", `${tenant}/${app}`, v)))?.value;

/** Whether the app has config version `v`. */
export async function configExists(store: Store, tenant: string, app: string, v: number): Promise<boolean> {
  return (await version(store, tenant, app, v)) !== undefined;
}

/** The app's stable config version (0: it has none). */
export async function configServing(store: Store, tenant: string, app: string): Promise<number> {
  return (await store.get<ConfigHead>("config_head", configHeadKey(tenant, app)))?.value.stable ?? 0;
}

/** Whether the app's stable config holds what version `target` holds (entries and lower-layer pins). */
export async function configHolds(
  store: Store,
  tenant: string,
  app: string,
  target: number,
): Promise<boolean> {
  const serving = await configServing(store, tenant, app);
  if (serving === target) return true;
  if (serving === 0) return false;
  const [a, b] = await Promise.all([
    version(store, tenant, app, serving),
    version(store, tenant, app, target),
  ]);
  return a !== undefined && b !== undefined && contentOf(a) === contentOf(b);
}

/**
 * Moves the app's config to version `target`'s content (a config rollback),
 * unless it holds it already. Throws what the config center refuses (a gray
 * release in flight: 409).
 */
export async function moveConfig(
  store: Store,
  tenant: string,
  app: string,
  target: number,
  author: string,
): Promise<number | undefined> {
  if (await configHolds(store, tenant, app, target)) return undefined;
  // Loaded when a set pins config: an install that never does so does not load the config center.
  const { ConfigCenter } = await import("../config-center/center.ts");
  const { version: made } = await new ConfigCenter(store).change({
    layer: "app",
    namespace: `${tenant}/${app}`,
    author,
    rollbackTo: target,
    message: `${author} pins config v${target}`,
  });
  return made.version;
}

/** A version's content as one comparable string (keys sorted). */
function contentOf(v: ConfigVersion): string {
  const sorted = (o: object): unknown =>
    Object.fromEntries(
      Object.entries(o)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, x]) => [k, x !== null && typeof x === "object" && !Array.isArray(x) ? sorted(x) : x]),
    );
  return JSON.stringify([sorted(v.entries), v.uses ?? null]);
}
