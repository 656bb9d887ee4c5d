/**
 * Which service and instance a request goes to, and how an attempt went:
 * shared by proxied requests (exchange.ts), WebSocket tunnels (tunnel.ts)
 * and aggregation parts (aggregate.ts).
 */

import type http from "node:http";
import type { StickySpec } from "../model/manifest.ts";
import { clientOf } from "./forwarded.ts";
import type { Backend, Endpoint, RouteEntry } from "./route-table.ts";
import { CLOSED, CONNECT_TIMEOUT } from "./upstream-pool.ts";

/**
 * Errors that mean the request did not get an answer because the connection
 * failed: refused, reset, closed by the instance, or not opened in time.
 */
export const CONNECTION_FAILURES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  // The instance closed the connection before answering (upstream-pool.ts).
  CLOSED,
  // The connection did not open within the connect timeout.
  CONNECT_TIMEOUT,
]);

/**
 * The service a request goes to: the route's own, or the one its traffic
 * split picks; then, while that service runs two releases side by side
 * (canary, blue/green), the release its weights pick.
 */
export function chooseBackend(route: RouteEntry, req: http.IncomingMessage): Backend {
  const split = route.split;
  const backend =
    split === null
      ? route.backend
      : split.choose(split.sticky === null ? undefined : clientKey(split.sticky, req));
  const releases = backend.releases;
  if (releases === null) return backend;
  return releases.choose(releases.sticky === null ? undefined : clientKey(releases.sticky, req));
}

/** The instance for a request, by the route's balancing. */
export function pickEndpoint(
  route: RouteEntry,
  backend: Backend,
  req: http.IncomingMessage,
): Endpoint | undefined {
  const balance = route.balance;
  if (balance.kind === "round_robin") return backend.next();
  if (balance.kind === "least_request") return backend.leastRequest();
  const key = clientKey(balance, req);
  // No key (no header, no cookie yet): any instance; the app's own cookie makes the next request sticky.
  return key === undefined || key === "" ? backend.next() : backend.byKey(key);
}

/** The value that identifies a client for stickiness: its address, a header or a cookie. */
function clientKey(spec: StickySpec, req: http.IncomingMessage): string | undefined {
  if (spec.on === "ip") return clientOf(req.socket);
  if (spec.on === "header") {
    const value = req.headers[spec.name];
    return Array.isArray(value) ? value[0] : value;
  }
  return cookieValue(req.headers.cookie, spec.name);
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Tells a service's breaker and outlier detector how an attempt went (5xx, refused and timeouts fail). */
export function recordOutcome(backend: Backend | undefined, endpoint: Endpoint, success: boolean): void {
  if (backend === undefined) return;
  const { breaker, outlier } = backend.policies;
  if (breaker === null && outlier === null) return;
  const now = Date.now();
  breaker?.record(success, now);
  outlier?.record(endpoint.instance, success, now, backend.endpoints.length);
}
