/**
 * Gray release of a catalog version (platform or middleware) to tenants:
 * the apps of those tenants that pin another version of the namespace get a
 * new app version pinning this one (a config change like any other: history,
 * diff, an event per app, live push to their instances); the other tenants'
 * apps keep theirs. Promote = the same to every tenant; roll back = each app
 * that pins this version is pinned again to the version it had before.
 *
 *   gray(platform base@4, tenants [acme]) ─► acme/web pins base@3 ─► change(app acme/web, platform base@4)
 *   rollback(platform base@4, [acme])     ─► acme/web pins base@4 ─► walk its versions back to the last other pin
 *                                          ─► change(app acme/web, platform base@3)
 *
 * An app in a gray release of its own (herd config gray) is skipped and
 * named in the reply: its gray must end first.
 */

import { HerdError } from "../common/errors.ts";
import type { ConfigHead, ConfigVersion, LayerRef, LayerUses } from "../model/config.ts";
import type { Store } from "../store/store.ts";
import type { ConfigCenter } from "./center.ts";

export interface CatalogGray {
  layer: "platform" | "middleware";
  name: string;
  version: number;
  /** The tenants whose apps get it; undefined: every tenant (promote). */
  tenants?: string[];
  author: string;
}

export interface CatalogMove {
  tenant: string;
  app: string;
  /** The version of the namespace the app pinned, and the one it pins now. */
  from: number;
  to: number;
  /** The app's new config version. */
  appVersion: number;
}

export interface CatalogGrayResult {
  moved: CatalogMove[];
  /** Apps left alone, and why. */
  skipped: { tenant: string; app: string; reason: string }[];
}

/** The version of `name` an app version pins in `layer`, if any. */
export function pinOf(
  uses: LayerUses | undefined,
  layer: CatalogGray["layer"],
  name: string,
): number | undefined {
  if (layer === "platform") return uses?.platform?.name === name ? uses.platform.version : undefined;
  return uses?.middleware?.find((r) => r.name === name)?.version;
}

/** The change that pins `name@version` in place of its current pin. */
function repin(
  uses: LayerUses | undefined,
  layer: CatalogGray["layer"],
  ref: LayerRef,
): { platform: LayerRef } | { middleware: LayerRef[] } {
  if (layer === "platform") return { platform: ref };
  return { middleware: (uses?.middleware ?? []).map((r) => (r.name === ref.name ? ref : r)) };
}

async function heads(store: Store, tenants: string[] | undefined): Promise<ConfigHead[]> {
  const { items } = await store.list<ConfigHead>("config_head");
  return items.map((o) => o.value).filter((h) => h.stable > 0 && (!tenants || tenants.includes(h.tenant)));
}

/** Gives catalog version `g.version` to the apps of `g.tenants` (every tenant when absent). */
export async function grayCatalog(
  center: ConfigCenter,
  store: Store,
  g: CatalogGray,
): Promise<CatalogGrayResult> {
  await center.mustVersion(g.layer, g.name, g.version);
  const out: CatalogGrayResult = { moved: [], skipped: [] };
  for (const head of await heads(store, g.tenants)) {
    const current = await center.version("app", `${head.tenant}/${head.app}`, head.stable);
    const from = pinOf(current?.uses, g.layer, g.name);
    if (from === undefined || from === g.version) continue;
    await move(center, head, current as ConfigVersion, g, from, g.version, out);
  }
  return out;
}

/** Pins the apps of `g.tenants` that pin `g.version` back to the version each had before it. */
export async function rollbackCatalog(
  center: ConfigCenter,
  store: Store,
  g: CatalogGray,
): Promise<CatalogGrayResult> {
  const out: CatalogGrayResult = { moved: [], skipped: [] };
  for (const head of await heads(store, g.tenants)) {
    const namespace = `${head.tenant}/${head.app}`;
    const current = await center.version("app", namespace, head.stable);
    if (pinOf(current?.uses, g.layer, g.name) !== g.version) continue;
    let before: number | undefined;
    for (let v = head.stable - 1; v >= 1 && before === undefined; v--) {
      const pin = pinOf((await center.version("app", namespace, v))?.uses, g.layer, g.name);
      if (pin !== undefined && pin !== g.version) before = pin;
    }
    if (before === undefined) {
      out.skipped.push({ ...at(head), reason: `it pinned no other version of ${g.name} before` });
      continue;
    }
    await move(center, head, current as ConfigVersion, g, g.version, before, out);
  }
  return out;
}

async function move(
  center: ConfigCenter,
  head: ConfigHead,
  current: ConfigVersion,
  g: CatalogGray,
  from: number,
  to: number,
  out: CatalogGrayResult,
): Promise<void> {
  if (head.gray) {
    out.skipped.push({ ...at(head), reason: `its v${head.gray.version} is in gray release` });
    return;
  }
  try {
    const { version } = await center.change({
      layer: "app",
      namespace: `${head.tenant}/${head.app}`,
      author: g.author,
      message: `${g.layer} ${g.name}@${to} (was @${from})${g.tenants ? ` for tenant ${head.tenant}` : ""}`,
      ...repin(current.uses, g.layer, { name: g.name, version: to }),
    });
    out.moved.push({ ...at(head), from, to, appVersion: version.version });
  } catch (err) {
    if (!(err instanceof HerdError) || err.code !== "conflict") throw err;
    out.skipped.push({ ...at(head), reason: err.message });
  }
}

const at = (h: ConfigHead) => ({ tenant: h.tenant, app: h.app });
