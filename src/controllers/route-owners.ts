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
import type { App, Service, Tenant } from "../model/objects.ts";
import type { Store } from "../store/store.ts";

/** One route someone serves, by routeIdentity. */
export interface RouteOwner {
  source: "herd.yaml" | "api";
  tenant: string;
  app: string;
  /** The service (herd.yaml) or the route object's name (api). */
  name: string;
  /**
   * For people: `shop/web` or `route shop/beta` in the caller's tenant; another
   * tenant's owner is never named (its tenant and apps are not the caller's to see).
   */
  label: string;
  /** Whether the owner is in another tenant than the caller's. */
  foreign: boolean;
}

/** Every route served now, by identity; `skip` leaves some owners out (the thing being changed). */
export async function routeOwners(
  store: Store,
  tenant: string,
  skip: (owner: RouteOwner) => boolean,
): Promise<Map<string, RouteOwner>> {
  const owners = new Map<string, RouteOwner>();
  for (const o of (await store.list<Service>("service")).items) {
    const s = o.value;
    const owner: RouteOwner = {
      source: "herd.yaml",
      tenant: s.tenant,
      app: s.app,
      name: s.name,
      label: s.tenant === tenant ? `${s.app}/${s.name}` : "an app of another tenant",
      foreign: s.tenant !== tenant,
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
      label: r.tenant === tenant ? `route ${r.app}/${r.name}` : "a route of another tenant",
      foreign: r.tenant !== tenant,
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
 * the route in the input, `of` says whose it is (e.g. " of web"). When another
 * tenant serves it, says what to do instead: app names are per tenant, so two
 * tenants' apps of one name both default to `<app>.localhost`, and the first
 * keeps it; another app name helps only when the host is that default (`app`:
 * the deploying app), not a host herd.yaml writes out.
 */
export function checkRouteFree(
  owners: Map<string, RouteOwner>,
  route: Route,
  field: string,
  of = "",
  app?: string,
): void {
  const owner = owners.get(routeIdentity(route));
  if (owner === undefined) return;
  const instead = !owner.foreign
    ? ""
    : app !== undefined && route.host === `${app}.localhost`
      ? ": give the service a host of its own (herd.yaml routes: - host: NAME.localhost), or use another app name (herd deploy --app NAME), which gets NAME.localhost"
      : route.host.endsWith(".localhost")
        ? ": give the service a host of its own in herd.yaml's routes (- host: NAME.localhost)"
        : ": give the service another host in herd.yaml's routes";
  throw new HerdError(
    "conflict",
    `route ${route.host}${route.path}${of} is already served by ${owner.label}${instead}`,
    [{ field, message: `already served by ${owner.label}` }],
  );
}

/** Whether `host` is `domain` or one of its subdomains. */
export const underDomain = (host: string, domain: string): boolean =>
  host === domain || host.endsWith(`.${domain}`);

/**
 * Hosts belong to tenants. Throws 409 when a host of `routes` is under a
 * domain a platform admin gave another tenant, is `<app>.localhost` of another
 * tenant's app, or is already used by another tenant's routes (any path).
 */
export async function checkHostsOwned(
  store: Store,
  tenant: string,
  routes: { host: string; field: string }[],
): Promise<void> {
  if (routes.length === 0) return;
  const tenants = (await store.list<Tenant>("tenant")).items.map((o) => o.value);
  const apps = (await store.list<App>("app")).items.map((o) => o.value);
  const used = new Map<string, string>();
  for (const o of (await store.list<Service>("service")).items) {
    if (o.value.tenant === tenant) continue;
    for (const r of o.value.spec.routes) used.set(r.host.toLowerCase(), o.value.tenant);
  }
  for (const o of (await store.list<RouteObject>("route")).items) {
    if (o.value.tenant === tenant) continue;
    try {
      used.set(normalizeRoute(o.value.app, o.value.spec).host.toLowerCase(), o.value.tenant);
    } catch {
      // A damaged route object claims nothing.
    }
  }
  const refuse = (field: string, message: string) => {
    throw new HerdError("conflict", message, [{ field, message }]);
  };
  for (const { host: raw, field } of routes) {
    const host = raw.toLowerCase().replace(/^\*\./, "");
    for (const t of tenants) {
      if (t.name === tenant) continue;
      const domain = (t.domains ?? []).find((d) => underDomain(host, d));
      if (domain) refuse(field, `host ${raw} is under domain ${domain}, which belongs to tenant ${t.name}`);
    }
    const local = /^(?:.*\.)?([a-z][a-z0-9-]*)\.localhost$/.exec(host)?.[1];
    if (local && !apps.some((a) => a.tenant === tenant && a.name === local)) {
      const other = apps.find((a) => a.name === local);
      if (other) refuse(field, `host ${raw} belongs to app ${local} of another tenant`);
    }
    const user = used.get(raw.toLowerCase());
    if (user !== undefined) refuse(field, `host ${raw} is already used by another tenant's routes`);
  }
}
