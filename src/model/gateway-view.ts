/**
 * What the gateway reads of the model at run time, without the schemas: the
 * kinds it follows, a route's identity and a service's effective traffic
 * policies. Kept apart from manifest.ts and live-config.ts (which hold the
 * TypeBox schemas and the YAML parser, about 23 MB of a process) so a gateway
 * loads those only when it has route objects to check (route-table.ts).
 * manifest.ts and live-config.ts re-export these, so there is one definition.
 */

import type { Kind, Service } from "./objects.ts";
import type { Route, ServiceSpec } from "./service-spec.ts";

/** The kinds a gateway builds its table from (snapshot + watch); a change to any is a new config version. */
export const GATEWAY_KINDS: readonly Kind[] = ["service", "instance", "node", "consumer", "route"];

/** What makes two routes the same route: two services may not both declare it. */
export function routeIdentity(r: Pick<Route, "host" | "path" | "match" | "methods" | "headers">): string {
  const headers = Object.entries(r.headers ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .sort()
    .join("&");
  return [
    r.host.toLowerCase(),
    r.match ?? "prefix",
    r.path,
    [...(r.methods ?? [])].sort().join(","),
    headers,
  ].join(" ");
}

/**
 * A service's traffic policies, as ServiceSpec holds them, plus the switch
 * only the API sets: `fallback` (its routes that have a fallback answer it now).
 */
export type TrafficPolicies = Pick<ServiceSpec, "breaker" | "outlier" | "criticality" | "concurrency"> & {
  fallback?: true;
};

/** The traffic policies the gateway applies to a service: the spec's, with the API's overrides on top. */
export function effectiveTraffic(service: Pick<Service, "spec" | "traffic">): TrafficPolicies {
  const o = service.traffic;
  const s = service.spec;
  if (o === undefined) return s;
  // Through `pick`, only the spec's fields: `fallback` is never in herd.yaml.
  const pick = <K extends Exclude<keyof TrafficPolicies, "fallback">>(k: K): TrafficPolicies[K] =>
    k in o ? ((o[k] ?? undefined) as TrafficPolicies[K]) : s[k];
  return {
    breaker: pick("breaker"),
    outlier: pick("outlier"),
    criticality: pick("criticality"),
    concurrency: pick("concurrency"),
    ...(o.fallback ? { fallback: true as const } : {}),
  };
}
