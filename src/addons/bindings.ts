/**
 * How a binding reaches an app's instances: each release gives every
 * service the URL secrets of the app's bindings (DATABASE_URL…) as secret
 * env, besides what herd.yaml declares. What herd added is listed in the
 * spec's `addonSecrets`, so the next release drops a detached one.
 */

import { type Addon, addonKey } from "../model/addon.ts";
import type { ServiceSpec } from "../model/service-spec.ts";
import type { Store } from "../store/store.ts";

/** The env variables of the add-ons bound to `app` (each also the name of the app's secret that holds the URL). */
export async function addonVars(store: Store, tenant: string, app: string): Promise<string[]> {
  const addons = await store.list<Addon>("addon", { prefix: addonKey(tenant, "") });
  const vars = new Set<string>();
  for (const a of addons.items)
    for (const b of a.value.bindings) if (b.app === app) for (const v of b.vars ?? [b.var]) vars.add(v);
  return [...vars].sort();
}

/** The services with the bound variables as secret env (herd.yaml's own env of the same name wins). */
export function withAddonSecrets(
  services: Record<string, ServiceSpec>,
  vars: string[],
): Record<string, ServiceSpec> {
  const out: Record<string, ServiceSpec> = {};
  for (const [name, spec] of Object.entries(services)) {
    const secrets = { ...spec.secrets };
    for (const v of spec.addonSecrets ?? []) delete secrets[v];
    const added = vars.filter((v) => secrets[v] === undefined && spec.env[v] === undefined);
    for (const v of added) secrets[v] = v;
    const { addonSecrets: _, secrets: __, ...rest } = spec;
    out[name] = {
      ...rest,
      ...(Object.keys(secrets).length > 0 ? { secrets } : {}),
      ...(added.length > 0 ? { addonSecrets: added } : {}),
    };
  }
  return out;
}
