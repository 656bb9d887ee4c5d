/**
 * The platform's own endpoints on other machines that no instance may reach,
 * as "host:port" for the heartbeat reply's `peers.platform`
 * (controllers/peers.ts; the agent's firewall closes them like its own API
 * and metrics ports): the store's etcd members, whose plain-HTTP API would
 * let an instance read and write every object of the cluster, and each
 * gateway's metrics listener, which names every tenant's routes and traffic.
 */

import type { GatewayBook } from "./gateway-book.ts";

/** "host:port" of each member of an `etcd://h:p,h:p/root` store; none for SQLite. */
export function storeMembers(store: string | undefined): string[] {
  const m = /^etcd:\/\/([^/]+)/.exec(store ?? "");
  return m?.[1] ? m[1].split(",") : [];
}

/** The endpoints now: the store's members and the metrics of every gateway not silent. */
export function platformEndpoints(store: string | undefined, gateways: GatewayBook): () => string[] {
  const members = storeMembers(store);
  return () => [...members, ...gateways.scrapeTargets().map((t) => new URL(t.url).host)];
}
