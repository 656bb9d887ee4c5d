/**
 * Declared against observed dependencies, checked every `intervalMs` for each
 * tenant (model/dependency-drift.ts decides):
 *
 *   store services (dependsOn, criticality) ─┐
 *   traces' dependency map (last 15 min) ────┴► findings ─► a warning event when one appears
 *                                                        └► herd_dependency_drift{kind,from,to} = 1
 *                                                           (the built-in alerts undeclared-dependency*)
 */

import { Gauge, type Registry } from "prom-client";
import type { Logger } from "../common/log.ts";
import type { EventRecorder } from "../controllers/events.ts";
import {
  type DeclaredService,
  type DriftFinding,
  dependencyDrift,
  findingKey,
} from "../model/dependency-drift.ts";
import type { Service, Tenant } from "../model/objects.ts";
import type { Store } from "../store/store.ts";

export interface DependencyDriftOptions {
  store: Store;
  events: EventRecorder;
  registry: Registry;
  logger: Logger;
  /** The calls between services the traces saw for a tenant over the last `windowMicros`. */
  calls: (tenant: string, fromMicros: number, toMicros: number) => Promise<{ from: string; to: string }[]>;
  intervalMs?: number;
  windowMicros?: number;
}

export class DependencyDrift {
  readonly #o: DependencyDriftOptions;
  /** The findings in force per tenant, by key: an event is recorded when one appears, not every round. */
  readonly #current = new Map<string, Map<string, DriftFinding>>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;

  constructor(options: DependencyDriftOptions) {
    this.#o = options;
    const current = this.#current;
    new Gauge({
      name: "herd_dependency_drift",
      help: "1 per finding of declared against observed dependencies: kind undeclared, undeclared-cycle or critical-on-low.",
      labelNames: ["tenant", "app", "kind", "from", "to"],
      registers: [options.registry],
      collect() {
        this.reset();
        for (const [tenant, findings] of current)
          for (const f of findings.values())
            this.set({ tenant, app: f.from.split("/")[0] ?? "", kind: f.kind, from: f.from, to: f.to }, 1);
      },
    });
  }

  start(): void {
    const every = this.#o.intervalMs ?? 30_000;
    this.#timer = setInterval(() => {
      this.#running ??= this.check()
        .catch((err) => this.#o.logger.warn("dependency check failed", { err }))
        .finally(() => {
          this.#running = undefined;
        });
    }, every);
    this.#timer.unref();
  }

  /** Stops the rounds; the findings go with them (the next leader's rounds report them). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
    this.#current.clear();
  }

  /** One round over every tenant; returns the findings in force. */
  async check(): Promise<Map<string, DriftFinding[]>> {
    const { store, events } = this.#o;
    const out = new Map<string, DriftFinding[]>();
    const services = (await store.list<Service>("service")).items.map((o) => o.value);
    for (const t of (await store.list<Tenant>("tenant")).items) {
      const tenant = t.value.name;
      const mine = new Map<string, DeclaredService>(
        services
          .filter((s) => s.tenant === tenant)
          .map((s) => [
            `${s.app}/${s.name}`,
            { dependsOn: s.spec.dependsOn, criticality: s.spec.criticality },
          ]),
      );
      const to = Date.now() * 1000;
      const calls =
        mine.size === 0 ? [] : await this.#o.calls(tenant, to - (this.#o.windowMicros ?? 15 * 60e6), to);
      const findings = dependencyDrift(mine, calls);
      const before = this.#current.get(tenant) ?? new Map<string, DriftFinding>();
      const now = new Map(findings.map((f) => [findingKey(f), f]));
      for (const [key, f] of now) {
        if (before.has(key)) continue;
        await events.record({
          tenant,
          app: f.from.split("/")[0],
          service: f.from.split("/")[1],
          type: "warning",
          reason:
            f.kind === "undeclared"
              ? "UndeclaredDependency"
              : f.kind === "undeclared-cycle"
                ? "UndeclaredDependencyCycle"
                : "CriticalDependsOnLow",
          message: f.message,
        });
      }
      this.#current.set(tenant, now);
      out.set(tenant, findings);
    }
    return out;
  }
}
