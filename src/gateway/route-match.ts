/**
 * Route matching, per request: the Host header reduced to a route's host,
 * the first route of a host whose path, method and headers match, and the
 * path forwarded after a rewrite. Also the order routes are tried in, which
 * the table sorts by when it is built.
 */

import type { RouteEntry } from "./route-table.ts";

/** What a request carries that routes match on. */
export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

/** A Host header reduced to the name routes use: lowercase, no port, no trailing dot. */
export function normalizeHost(host: string): string {
  let end = host.length;
  if (host.charCodeAt(0) === 91 /* [ */) {
    // IPv6 literal: the port, if any, follows the closing bracket.
    end = host.indexOf("]") + 1 || end;
  } else {
    const colon = host.lastIndexOf(":");
    if (colon !== -1) end = colon;
  }
  if (host.charCodeAt(end - 1) === 46 /* . */) end--;
  return (end === host.length ? host : host.slice(0, end)).toLowerCase();
}

/** No headers: for callers of a table that matches on none. */
export const NO_HEADERS: RequestHeaders = {};

/** The first of `routes` (in precedence order) that the request matches. */
export function firstMatch(
  routes: RouteEntry[],
  path: string,
  method: string,
  headers: RequestHeaders,
): RouteEntry | undefined {
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i];
    if (!pathMatches(r, path)) continue;
    if (r.methods !== null && !r.methods.has(method)) continue;
    if (r.headers !== null && !headersMatch(r.headers, headers)) continue;
    return r;
  }
  return undefined;
}

function pathMatches(r: RouteEntry, path: string): boolean {
  const { prefix } = r;
  if (r.exact) {
    if (!path.startsWith(prefix)) return false;
    return path.length === prefix.length || path.charCodeAt(prefix.length) === 63 /* ? */;
  }
  // "/" matches every path.
  if (prefix.length === 1) return true;
  if (!path.startsWith(prefix)) return false;
  if (path.length === prefix.length) return true;
  const next = path.charCodeAt(prefix.length);
  return next === 47 /* / */ || next === 63 /* ? */;
}

function headersMatch(required: readonly (readonly [string, string])[], headers: RequestHeaders): boolean {
  for (let i = 0; i < required.length; i++) {
    const [name, value] = required[i];
    const got = headers[name];
    if (got === value) continue;
    if (Array.isArray(got) && got.includes(value)) continue;
    return false;
  }
  return true;
}

/**
 * The path to forward for a request that matched `route`: the matched prefix
 * replaced by the route's rewrite (the rest, including the query, kept).
 */
export function rewritePath(route: RouteEntry, path: string): string {
  if (route.rewrite === null) return path;
  const rest = route.prefix.length === 1 ? path.slice(1) : path.slice(route.prefix.length);
  if (rest.length === 0) return route.rewrite;
  const base = route.rewrite.endsWith("/") ? route.rewrite.slice(0, -1) : route.rewrite;
  if (rest.charCodeAt(0) === 63 /* ? */) return `${route.rewrite}${rest}`;
  return rest.charCodeAt(0) === 47 ? `${base}${rest}` : `${base}/${rest}`;
}

/** A route's path as a prefix: `/` alone, or without trailing slashes. */
export function normalizePrefix(path: string | undefined): string {
  if (!path || path === "/") return "/";
  let end = path.length;
  while (end > 1 && path.charCodeAt(end - 1) === 47) end--;
  return path.slice(0, end);
}

/** Priority first; then exact paths before prefixes; then longer prefixes; then the more specific (method, headers) first. */
export function byPrecedence(a: RouteEntry, b: RouteEntry): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.exact !== b.exact) return a.exact ? -1 : 1;
  if (a.prefix.length !== b.prefix.length) return b.prefix.length - a.prefix.length;
  return specificity(b) - specificity(a);
}

function specificity(r: RouteEntry): number {
  return (r.methods === null ? 0 : 1) + (r.headers === null ? 0 : r.headers.length);
}
