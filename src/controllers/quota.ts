/**
 * Tenant quotas in resource units. A deploy or scale that would take a
 * tenant's services past its quota is refused before anything changes, with
 * what is in use, what is asked and the limit.
 */

import { HerdError } from "../common/errors.ts";
import { type Resources, type Service, serviceKey, type Tenant } from "../model/objects.ts";
import type { Store } from "../store/store.ts";

/** Units one instance with these resources takes: its larger share of a unit, CPU or memory. */
export function unitsOf(resources: Resources, unit: Resources): number {
  return Math.max(resources.cpu / unit.cpu, resources.memory / unit.memory);
}

/** What a service of a change will have: instances of this size. */
export interface Asked {
  instances: number;
  resources: Resources;
}

/** Units the tenant's services hold now (desired instances × their size). */
export async function unitsInUse(store: Store, tenant: string, unit: Resources): Promise<number> {
  const services = (await store.list<Service>("service", { prefix: `${tenant}/` })).items;
  return round(
    services.reduce((sum, o) => sum + o.value.instances * unitsOf(o.value.spec.resources, unit), 0),
  );
}

/**
 * Throws `forbidden` when `asked` (services of `app`, by name) would take the
 * tenant past its quota. With `wholeApp`, the app's services not in `asked` go
 * away (a deploy); otherwise they stay as they are (a scale).
 */
export async function checkQuota(
  store: Store,
  unit: Resources,
  tenant: string,
  app: string,
  asked: Readonly<Record<string, Asked>>,
  wholeApp: boolean,
): Promise<void> {
  const limit = (await store.get<Tenant>("tenant", tenant))?.value.quota?.units;
  if (limit === undefined) return;
  const services = (await store.list<Service>("service", { prefix: `${tenant}/` })).items;
  let inUse = 0;
  let others = 0;
  for (const o of services) {
    const units = o.value.instances * unitsOf(o.value.spec.resources, unit);
    inUse += units;
    const replaced = o.value.app === app && (wholeApp || o.key in keyed(tenant, app, asked));
    if (!replaced) others += units;
  }
  const parts = Object.entries(asked).map(([name, a]) => ({
    name,
    units: a.instances * unitsOf(a.resources, unit),
    each: unitsOf(a.resources, unit),
    instances: a.instances,
  }));
  const total = others + parts.reduce((sum, p) => sum + p.units, 0);
  if (total <= limit + 1e-9) return;
  const detail = parts.map((p) => `${p.name}: ${p.instances} × ${round(p.each)}`).join(", ");
  const message =
    `tenant ${tenant} is over its quota: ${round(inUse)} units in use, this asks for ${round(total - others)} ` +
    `(${detail}) on top of ${round(others)} elsewhere, making ${round(total)}; the limit is ${limit} units`;
  throw new HerdError(
    "forbidden",
    message,
    parts.map((p) => ({ field: `services.${p.name}.instances`, message: `${round(p.units)} units asked` })),
  );
}

function keyed(tenant: string, app: string, asked: Readonly<Record<string, Asked>>): Record<string, true> {
  return Object.fromEntries(Object.keys(asked).map((n) => [serviceKey(tenant, app, n), true]));
}

const round = (n: number) => Math.round(n * 100) / 100;
