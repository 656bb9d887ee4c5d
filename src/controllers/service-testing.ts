/**
 * Plain services and instances for the tests of the service controller's pure
 * planners (service-heal.ts, service-rollout.ts): a fixed time, no store.
 */

import { normalizeService } from "../model/manifest.ts";
import type { Instance, Service } from "../model/objects.ts";

export const NOW = Date.parse("2026-03-01T12:00:00.000Z");
export const iso = (ms: number) => new Date(ms).toISOString();

/** shop's web (cattle) or db (pet): release 2, 2 instances, running. */
export function plainService(mode: "cattle" | "pet", over: Partial<Service> = {}): Service {
  const name = mode === "pet" ? "db" : "web";
  return {
    tenant: "default",
    app: "shop",
    name,
    release: 2,
    spec: { ...normalizeService("shop", name, { command: "node server.js" }, undefined), mode },
    instances: 2,
    state: "running",
    message: "",
    crashes: 0,
    ...over,
  };
}

/** An instance of shop's db (a pet: an id shop-db-…) or web: release 2, running on n1, made 2 min ago, started 1 min ago. */
export function plainInstance(id: string, over: Partial<Instance> = {}): Instance {
  const pet = id.startsWith("shop-db");
  return {
    id,
    tenant: "default",
    app: "shop",
    service: pet ? "db" : "web",
    release: 2,
    mode: pet ? "pet" : "cattle",
    node: "n1",
    desired: "running",
    generation: 1,
    state: "running",
    reason: "Healthy",
    message: "",
    run: {
      slug: "a".repeat(64),
      command: "node server.js",
      env: {},
      resources: { cpu: 0.1, memory: 128 * 1024 ** 2 },
      health: { kind: "http", path: "/", intervalMs: 1000, timeoutMs: 1000, failures: 3, startupMs: 30_000 },
    },
    restarts: 0,
    createdAt: iso(NOW - 120_000),
    startedAt: iso(NOW - 60_000),
    ...over,
  };
}
