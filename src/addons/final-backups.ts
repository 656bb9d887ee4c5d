/**
 * Final backups of destroyed add-ons: recorded when the add-on goes (store
 * kind `addon_backup`, key `<tenant>/<id>`), listed per tenant, deleted on
 * request, and looked up by `create --from-backup ID`, which restores one
 * into a new add-on of the same kind. The dump itself is the artifact store's
 * (content-addressed, never dropped by herd); deleting the record makes it
 * unreachable from the API.
 *
 *   destroy ─► final backup (AddonBackup) ─► recordFinal ─► addon_backup
 *   GET /addon-backups ─► listFinal · DELETE /addon-backups/:id ─► deleteFinal
 *   create {fromBackup} ─► finalFor (same tenant, same kind) ─► server up ─► restoreAddon ─► attach
 */

import { invalid, notFound } from "../common/errors.ts";
import { type Addon, type AddonBackup, addonKey, type FinalAddonBackup } from "../model/addon.ts";
import type { Store } from "../store/store.ts";
import { finalBindings } from "./backups.ts";

export const FINAL_KIND = "addon_backup";

/** Keeps the destroyed add-on's final backup as an object of its own (the add-on is about to go). */
export async function recordFinal(
  store: Store,
  a: Addon,
  backup: AddonBackup,
  actor: string,
): Promise<FinalAddonBackup> {
  const f: FinalAddonBackup = {
    ...backup,
    tenant: a.tenant,
    addon: a.name,
    kind: a.kind,
    plan: a.plan,
    apps: finalBindings(a).map((b) => b.app),
    destroyedAt: new Date().toISOString(),
    destroyedBy: actor,
  };
  await store.put(FINAL_KIND, addonKey(a.tenant, backup.id), f);
  return f;
}

/** The tenant's final backups, newest first. */
export async function listFinal(store: Store, tenant: string): Promise<FinalAddonBackup[]> {
  const items = (await store.list<FinalAddonBackup>(FINAL_KIND, { prefix: addonKey(tenant, "") })).items;
  return items.map((o) => o.value).sort((x, y) => y.createdAt.localeCompare(x.createdAt));
}

/** The tenant's final backup `id` (404 naming the listing when there is none). */
export async function getFinal(store: Store, tenant: string, id: string): Promise<FinalAddonBackup> {
  const o = await store.get<FinalAddonBackup>(FINAL_KIND, addonKey(tenant, id));
  if (!o) throw notFound(`there is no final backup ${id} (herd addons final-backups lists them)`);
  return o.value;
}

/** The final backup `create --from-backup` restores: the tenant's, of the kind asked for. */
export async function finalFor(
  store: Store,
  tenant: string,
  id: string,
  kind: string,
): Promise<FinalAddonBackup> {
  const o = await store.get<FinalAddonBackup>(FINAL_KIND, addonKey(tenant, id));
  if (!o)
    throw invalid(`there is no final backup ${id} (herd addons final-backups lists them)`, [
      { field: "fromBackup", message: "no such final backup in this tenant" },
    ]);
  if (o.value.kind !== kind)
    throw invalid(`final backup ${id} is of a ${o.value.kind} add-on, not ${kind}`, [
      { field: "fromBackup", message: `a ${o.value.kind} backup` },
    ]);
  return o.value;
}

/** Forgets a final backup. */
export async function deleteFinal(store: Store, tenant: string, id: string): Promise<FinalAddonBackup> {
  const f = await getFinal(store, tenant, id);
  await store.delete(FINAL_KIND, addonKey(tenant, id));
  return f;
}
