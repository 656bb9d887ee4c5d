/**
 * Test helpers: an in-memory LoadFigures whose figures the test sets per
 * service (and per window), and a view builder. For unit tests only.
 */

import type { InstanceFigures, LoadFigures, ServiceFigures } from "../../model/load.ts";
import type { AppView, InstanceView, ServiceView } from "./view.ts";

/** Figures set by the test: per service key, the figures for windows up to a length (the first that covers it). */
export class FakeLoad implements LoadFigures {
  readonly #services = new Map<string, { upToMs: number; f: ServiceFigures }[]>();
  readonly #instances = new Map<string, InstanceFigures[]>();

  /** Sets a service's figures for windows ≤ upToMs (default: every window). */
  setService(key: string, f: Partial<ServiceFigures>, upToMs = Number.POSITIVE_INFINITY): this {
    const full: ServiceFigures = {
      rps: 0,
      errorRate: 0,
      requests: 0,
      errors: 0,
      shed: 0,
      inflight: 0,
      waiting: 0,
      coveredMs: 10_000,
      ...f,
    };
    if (full.requests > 0 && f.errorRate === undefined) full.errorRate = full.errors / full.requests;
    // Without an rps: the same rate over every window (steady load).
    if (f.rps === undefined) full.rps = full.requests / 10;
    const list = (this.#services.get(key) ?? []).filter((x) => x.upToMs !== upToMs);
    list.push({ upToMs, f: full });
    list.sort((a, b) => a.upToMs - b.upToMs);
    this.#services.set(key, list);
    return this;
  }

  setInstances(
    key: string,
    list: (Partial<InstanceFigures> & { instance: string; release: number })[],
  ): this {
    this.#instances.set(
      key,
      list.map((x) => {
        const requests = x.requests ?? 0;
        const errors = x.errors ?? 0;
        return {
          rps: requests / 10,
          inflight: 0,
          requests,
          errors,
          errorRate: requests ? errors / requests : 0,
          ...x,
        };
      }),
    );
    return this;
  }

  clear(key: string): void {
    this.#services.delete(key);
    this.#instances.delete(key);
  }

  service(key: string, windowMs: number): ServiceFigures | undefined {
    return this.#services.get(key)?.find((x) => windowMs <= x.upToMs)?.f;
  }

  instances(key: string): InstanceFigures[] {
    return this.#instances.get(key) ?? [];
  }
}

/** A view of app `shop` of tenant `t` with the given services and instances. */
export function viewOf(
  load: LoadFigures,
  parts: {
    now?: number;
    appRelease?: number;
    releases?: AppView["releases"];
    services: (Partial<ServiceView> & { name: string })[];
    instances?: (Partial<InstanceView> & { id: string; service: string })[];
    calls?: AppView["calls"];
    nodes?: AppView["nodes"];
  },
): AppView {
  const now = parts.now ?? 1_000_000_000;
  return {
    tenant: "t",
    app: "shop",
    now,
    appRelease: parts.appRelease ?? 2,
    releases: parts.releases ?? [
      { version: 1, createdAt: now - 3_600_000 },
      { version: 2, createdAt: now - 60_000 },
    ],
    services: parts.services.map((s) => ({
      release: parts.appRelease ?? 2,
      instances: 2,
      running: 2,
      state: "running",
      crashes: 0,
      spec: { mode: "cattle", routes: [] },
      ...s,
    })),
    instances: (parts.instances ?? []).map((i) => ({
      release: parts.appRelease ?? 2,
      node: "n1",
      state: "running",
      mode: "cattle",
      ...i,
    })),
    nodes:
      parts.nodes ??
      [...new Set((parts.instances ?? []).map((i) => i.node ?? "n1"))].map((name) => ({
        name,
        state: "ready" as const,
        schedulable: true,
      })),
    alerts: [],
    calls: parts.calls ?? [],
    load,
  };
}
