/**
 * Who serves which route, across every app: the one check behind "two routes
 * with the same host and path → 409", used by deploys (a herd.yaml route
 * another app or a route object already serves) and by the routes API (a
 * route object that a herd.yaml route or another route object already serves).
 * Within one herd.yaml, checkRouteClashes (manifest.ts) does the same job.
 */

import { HerdError } from "../common/errors.ts";
import { normalizeRoute, type RouteObject } from "../model/live-config.ts";
import { type Route, routeIdentity } from "../model/manifest.ts";
import type { Service } from "../model/objects.ts";
import type { Store } from "../store/store.ts";

/** One route someone serves, by routeIdentity. */
export interface RouteOwner {
  source: "herd.yaml" | "api";
  tenant: string;
  app: string;
  /** The service (herd.yaml) or the route object's name (api). */
  name: string;
  /** For people: `shop/web`, `other-tenant/shop/web`, or `route shop/beta`. */
  label: string;
}

/** Every route served now, by identity; `skip` leaves some owners out (the thing being changed). */
export async function routeOwners(
  store: Store,
  tenant: string,
  skip: (owner: RouteOwner) => boolean,
): Promise<Map<string, RouteOwner>> {
  const owners = new Map<string, RouteOwner>();
  const prefix = (t: string) => (t === tenant ? "" : `${t}/`);
  for (const o of (await store.list<Service>("service")).items) {
    const s = o.value;
    const owner: RouteOwner = {
      source: "herd.yaml",
      tenant: s.tenant,
      app: s.app,
      name: s.name,
      label: `${prefix(s.tenant)}${s.app}/${s.name}`,
    };
    if (skip(owner)) continue;
    for (const r of s.spec.routes) owners.set(routeIdentity(r), owner);
  }
  for (const o of (await store.list<RouteObject>("route")).items) {
    const r = o.value;
    const owner: RouteOwner = {
      source: "api",
      tenant: r.tenant,
      app: r.app,
      name: r.name,
      label: `route ${prefix(r.tenant)}${r.app}/${r.name}`,
    };
    if (skip(owner)) continue;
    try {
      owners.set(routeIdentity(normalizeRoute(r.app, r.spec)), owner);
    } catch {
      // A damaged route object serves nothing (the gateways refuse it); it claims nothing either.
    }
  }
  return owners;
}

/**
 * Throws 409 naming the owner when `route` is already served; `field` names
 * the route in the input, `of` says whose it is (e.g. " of web").
 */
export function checkRouteFree(owners: Map<string, RouteOwner>, route: Route, field: string, of = ""): void {
  const owner = owners.get(routeIdentity(route));
  if (owner === undefined) return;
  throw new HerdError(
    "conflict",
    `route ${route.host}${route.path}${of} is already served by ${owner.label}`,
    [{ field, message: `already served by ${owner.label}` }],
  );
}
