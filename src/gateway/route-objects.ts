/**
 * Route objects (routes set through the API, model/live-config.ts) as routes
 * of their services, for buildRouteTable.
 */

import { createRequire } from "node:module";
import type { RouteObject } from "../model/live-config.ts";
import type { Route } from "../model/manifest.ts";
import { type Service, serviceKey } from "../model/objects.ts";

/** Loads modules on first use, synchronously (require of an ES module). */
const requireLazily = createRequire(import.meta.url);

/**
 * Route objects as routes of their services, sorted by key. Each is checked
 * against the API's schema first: one that is not valid (written around the
 * API, or by an older or newer control plane) fails the build, naming it.
 * The schema and herd.yaml's normaliser (TypeBox and yaml, about 23 MB) are
 * loaded at the first table that has route objects, not at start.
 */
export function routeObjectSources(
  objects: RouteObject[],
): { key: string; service: Service; routes: Route[] }[] {
  if (objects.length === 0) return [];
  const { checkRouteBody, normalizeRoute } = requireLazily(
    "../model/live-config.ts",
  ) as typeof import("../model/live-config.ts");
  const out: { key: string; service: Service; routes: Route[]; name: string }[] = [];
  for (const o of objects) {
    const name = `${o.tenant}/${o.app}/${o.name}`;
    if (typeof o.tenant !== "string" || typeof o.app !== "string" || typeof o.name !== "string") {
      throw new Error(`route object ${name}: tenant, app and name must be strings`);
    }
    const spec = checkRouteBody(o.spec, `route ${name}`);
    const key = serviceKey(o.tenant, o.app, spec.service);
    // Only what splits, mirrors and messages read of the service.
    const service = { tenant: o.tenant, app: o.app, name: spec.service } as Service;
    out.push({ key, service, routes: [normalizeRoute(o.app, spec)], name });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
