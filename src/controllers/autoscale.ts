/**
 * The autoscaler: twice a second, for each service with `autoscale:`, reads
 * the live figures, decides (autoscale-decide.ts) and scales through the one
 * scale path (scale.ts), so quotas, placement and events are as `herd scale`'s.
 *
 *   every 500 ms ─► services with spec.autoscale (apps not being destroyed, services not failed)
 *     rps, concurrency, p99 ─► ctx.load (gateways' figures over the stable and panic windows)
 *     cpu                   ─► agents' heartbeat usage: Σ cores / cores asked, sampled each tick
 *     query                 ─► PromQL as the tenant, sampled each tick
 *   ─► decide ─► count changed? ─► scaleServices (event Autoscaled, with the figures and the reason)
 *                              └► refused (quota) ─► event AutoscaleRefused (once per message)
 *
 * What it remembers of each service (the scale-down delay's wants, panic,
 * the idle timer, the last request and decisions) is stored
 * (autoscale-state.ts) and restored when a restarted control plane first
 * sees the service, so a restart neither scales in early nor forgets an idle
 * timer. The cpu and query samples are not kept: they refill within a window.
 */

import { Rounds } from "../common/rounds.ts";
import type { AutoscaleSpec } from "../model/manifest.ts";
import { type App, appKey, type Instance, type Service, serviceKey } from "../model/objects.ts";
import {
  type Decision,
  decide,
  type Memory,
  newMemory,
  type Observation,
  targetUnit,
} from "./autoscale-decide.ts";
import {
  type AutoscaleState,
  dropStates,
  loadState,
  SAVE_EVERY_MS,
  saveState,
  shapeOf,
} from "./autoscale-state.ts";
import type { Context } from "./context.ts";
import { scaleServices } from "./scale.ts";

/** Where the figures that are not gateway traffic come from (the server wires the agents' usage and the PromQL pool). */
export interface AutoscaleSources {
  /** CPU cores an instance used lately, from its agent's heartbeats; undefined when not known. */
  cpuCores?: (instance: Instance) => number | undefined;
  /** A PromQL expression's value as `tenant` sees it (the sum of a vector); undefined without an answer. */
  query?: (tenant: string, expr: string) => Promise<number | undefined>;
}

/** One service's autoscaling as `herd autoscale status` shows it. */
export interface AutoscaleStatus {
  service: string;
  instances: number;
  min: number;
  max: number;
  target: AutoscaleSpec["target"];
  /** `stable`, `panic`, `idle` (at zero), or `waiting` before the first decision. */
  mode: "stable" | "panic" | "idle" | "waiting";
  /** The target's figure over each window, in its unit (rps, in flight, CPU share, ms, the query's value). */
  stable?: number;
  panic?: number;
  stableWindowMs: number;
  panicWindowMs: number;
  scaleDownDelayMs: number;
  /** What the windows ask for. */
  stableWant?: number;
  panicWant?: number;
  lastRequestAt?: string;
  /** The last decisions that changed the count or were refused, oldest first. */
  decisions: AutoscaleDecision[];
}

/** A decision as status keeps it. */
export interface AutoscaleDecision {
  time: string;
  from: number;
  to: number;
  panic: boolean;
  reason: string;
  /** Set when the scale was refused (quota) or could not place everything. */
  problem?: string;
  /** The count was not changed (the problem refused it); otherwise a problem is about placement. */
  refused?: boolean;
}

/** Decisions kept per service for status. */
const KEPT = 10;

interface Tracked {
  mem: Memory;
  /** Samples of cpu or query figures, oldest first. */
  samples: { at: number; value: number }[];
  last?: Decision;
  lastRequestAt?: number;
  decisions: AutoscaleDecision[];
  lastProblem?: string;
  /** A query sample is being taken. */
  querying?: boolean;
  /** What was stored last (JSON, and its shape) and when. */
  savedJson?: string;
  savedShape?: string;
  savedAt?: number;
}

export class Autoscaler {
  readonly #ctx: Context;
  readonly #sources: AutoscaleSources;
  readonly #tracked = new Map<string, Tracked>();
  /** States of services no longer autoscaled are dropped on the first round (they went while it was away). */
  #swept = false;
  readonly #rounds = new Rounds(
    () => this.#round(),
    (err) => this.#ctx.logger.warn("autoscale round failed", { err }),
  );

  constructor(ctx: Context, sources: AutoscaleSources = {}) {
    this.#ctx = ctx;
    this.#sources = sources;
  }

  /**
   * Decides every `intervalMs` (default 500 ms: gateways report each second at
   * their own phase, so half a second is the most a new figure waits).
   */
  start(intervalMs = 500): void {
    this.#rounds.start(intervalMs);
  }

  stop(): void {
    void this.#rounds.stop();
  }

  /** One round over every autoscaled service (a round still running is not started twice). */
  tick(): Promise<void> {
    return this.#rounds.run();
  }

  /** The autoscaled services of one app, with their figures and last decisions. */
  async status(tenant: string, app: string): Promise<AutoscaleStatus[]> {
    const services = (await this.#ctx.store.list<Service>("service", { prefix: `${appKey(tenant, app)}/` }))
      .items;
    return services
      .filter((o) => o.value.spec.autoscale)
      .map((o) => {
        const s = o.value;
        const a = s.spec.autoscale!;
        const t = this.#tracked.get(o.key);
        const d = t?.last;
        const mode = !d ? "waiting" : s.instances === 0 ? "idle" : d.panic ? "panic" : "stable";
        return {
          service: s.name,
          instances: s.instances,
          min: a.min,
          max: a.max,
          target: a.target,
          mode,
          ...(d?.stable !== undefined ? { stable: round(d.stable) } : {}),
          ...(d?.panicFigure !== undefined ? { panic: round(d.panicFigure) } : {}),
          stableWindowMs: a.stableWindowMs,
          panicWindowMs: a.panicWindowMs,
          scaleDownDelayMs: a.scaleDownDelayMs,
          ...(d?.stableWant !== undefined ? { stableWant: d.stableWant } : {}),
          ...(d?.panicWant !== undefined ? { panicWant: d.panicWant } : {}),
          ...(t?.lastRequestAt ? { lastRequestAt: new Date(t.lastRequestAt).toISOString() } : {}),
          decisions: t?.decisions ?? [],
        };
      });
  }

  async #round(): Promise<void> {
    const { store } = this.#ctx;
    const services = (await store.list<Service>("service")).items.filter((o) => o.value.spec.autoscale);
    const autoscaled = new Set(services.map((o) => o.key));
    for (const key of this.#tracked.keys()) {
      if (autoscaled.has(key)) continue;
      this.#tracked.delete(key);
      await store.delete("autoscale_state", key);
    }
    if (!this.#swept) {
      await dropStates(store, (key) => autoscaled.has(key));
      this.#swept = true;
    }
    if (services.length === 0) return;
    const destroying = new Set(
      (await store.list<App>("app")).items.filter((o) => o.value.destroying).map((o) => o.key),
    );
    const needsInstances = services.some((o) => o.value.spec.autoscale!.target.metric === "cpu");
    const instances = needsInstances
      ? (await store.list<Instance>("instance")).items.map((o) => o.value)
      : [];
    for (const o of services) {
      const svc = o.value;
      if (destroying.has(appKey(svc.tenant, svc.app)) || svc.state === "failed") continue;
      try {
        await this.#decideOne(o.key, svc, instances);
      } catch (err) {
        this.#ctx.logger.warn("autoscale decision failed", { err, service: o.key });
      }
    }
  }

  async #decideOne(key: string, svc: Service, instances: readonly Instance[]): Promise<void> {
    const spec = svc.spec.autoscale!;
    const now = this.#ctx.clock.now();
    let t = this.#tracked.get(key);
    if (!t) {
      t = await this.#restore(key, svc, now);
      this.#tracked.set(key, t);
    }
    const o = await this.#observe(key, svc, spec, instances, t, now);
    if (o.lastRequestAt !== undefined) t.lastRequestAt = Math.max(t.lastRequestAt ?? 0, o.lastRequestAt);
    // The last request the figures show, or the one kept from before a restart (gateways report theirs again
    // within a second, requests they saw while the control plane was away included).
    const d = decide(
      spec,
      t.lastRequestAt !== undefined ? { ...o, lastRequestAt: t.lastRequestAt } : o,
      t.mem,
    );
    t.last = d;
    try {
      await this.#scale(svc, t, d, spec);
    } finally {
      await this.#save(key, t, now);
    }
  }

  /** A service's memory: stored by this or an earlier control plane, or a fresh one. */
  async #restore(key: string, svc: Service, now: number): Promise<Tracked> {
    const stored = await loadState(this.#ctx.store, key);
    if (!stored) return { mem: newMemory(now, svc.instances), samples: [], decisions: [] };
    return {
      mem: stored.mem,
      samples: [],
      decisions: stored.decisions,
      ...(stored.last ? { last: stored.last } : {}),
      ...(stored.lastRequestAt !== undefined ? { lastRequestAt: stored.lastRequestAt } : {}),
    };
  }

  /** Stores the memory when it changed: at once when what matters changed, else every SAVE_EVERY_MS. */
  async #save(key: string, t: Tracked, now: number): Promise<void> {
    const state: Omit<AutoscaleState, "savedAt"> = {
      mem: t.mem,
      decisions: t.decisions,
      ...(t.last ? { last: t.last } : {}),
      ...(t.lastRequestAt !== undefined ? { lastRequestAt: t.lastRequestAt } : {}),
    };
    const json = JSON.stringify(state);
    if (json === t.savedJson) return;
    const shape = shapeOf(state);
    if (shape === t.savedShape && now - (t.savedAt ?? 0) < SAVE_EVERY_MS) return;
    await saveState(this.#ctx.store, key, { ...state, savedAt: now });
    t.savedJson = json;
    t.savedShape = shape;
    t.savedAt = now;
  }

  /** Applies a decision that changes the count through the one scale path. */
  async #scale(svc: Service, t: Tracked, d: Decision, spec: AutoscaleSpec): Promise<void> {
    if (d.to === d.from) return;
    const details = figureLines(spec, d);
    try {
      const r = await scaleServices(
        {
          store: this.#ctx.store,
          events: this.#ctx.events,
          unit: this.#ctx.settings.unit,
          informer: this.#ctx.informer,
        },
        {
          tenant: svc.tenant,
          app: svc.app,
          services: { [svc.name]: d.to },
          reason: "Autoscaled",
          why: d.reason,
          details,
        },
      );
      this.#remember(t, d, r.unplaced[0]?.message, false);
      t.lastProblem = undefined;
    } catch (err) {
      // Not scaled: the count stays, and the next round decides again from it.
      t.mem.lastCount = d.from;
      const problem = (err as Error).message;
      this.#remember(t, d, problem, true);
      if (problem !== t.lastProblem) {
        await this.#ctx.events.record({
          tenant: svc.tenant,
          app: svc.app,
          service: svc.name,
          type: "warning",
          reason: "AutoscaleRefused",
          message: `${svc.name} could not scale from ${d.from} to ${d.to} (${d.reason}): ${problem}`,
          details,
        });
      }
      t.lastProblem = problem;
    }
  }

  #remember(t: Tracked, d: Decision, problem: string | undefined, refused: boolean): void {
    t.decisions.push({
      time: new Date(d.at).toISOString(),
      from: d.from,
      to: d.to,
      panic: d.panic,
      reason: d.reason,
      ...(problem ? { problem } : {}),
      ...(refused ? { refused } : {}),
    });
    if (t.decisions.length > KEPT) t.decisions.splice(0, t.decisions.length - KEPT);
  }

  /** The figures of the service's target metric over both windows. */
  async #observe(
    key: string,
    svc: Service,
    spec: AutoscaleSpec,
    instances: readonly Instance[],
    t: Tracked,
    now: number,
  ): Promise<Observation> {
    const load = this.#ctx.load;
    const panicFigures = load?.service(key, spec.panicWindowMs);
    const stableFigures = load?.service(key, spec.stableWindowMs);
    const base = {
      now,
      current: svc.instances,
      inflight: panicFigures?.inflight ?? 0,
      waiting: panicFigures?.waiting ?? 0,
      ...(stableFigures?.lastRequestAt !== undefined ? { lastRequestAt: stableFigures.lastRequestAt } : {}),
      // Without gateway figures nothing says the service is idle.
      traffic: load !== undefined,
    };
    const metric = spec.target.metric;
    if (metric === "rps" || metric === "concurrency" || metric === "p99") {
      if (!load) return { ...base, stable: undefined, panic: undefined };
      const pick = (f: typeof stableFigures) =>
        metric === "rps" ? (f?.rps ?? 0) : metric === "concurrency" ? (f?.inflight ?? 0) : (f?.p99Ms ?? 0);
      return { ...base, stable: pick(stableFigures), panic: pick(panicFigures) };
    }
    // cpu and query: sampled here each round, averaged over the windows.
    const sample = metric === "cpu" ? this.#cpuShare(svc, instances) : await this.#query(svc, spec, t);
    if (sample !== undefined) t.samples.push({ at: now, value: sample });
    while (t.samples.length > 0 && t.samples[0].at <= now - spec.stableWindowMs) t.samples.shift();
    return {
      ...base,
      stable: mean(t.samples, now - spec.stableWindowMs),
      panic: mean(t.samples, now - spec.panicWindowMs),
    };
  }

  /** Σ over the service's running instances of cores used / cores asked; undefined when none is known. */
  #cpuShare(svc: Service, instances: readonly Instance[]): number | undefined {
    const cores = this.#sources.cpuCores;
    if (!cores) return undefined;
    let sum = 0;
    let known = 0;
    for (const i of instances) {
      if (i.tenant !== svc.tenant || i.app !== svc.app || i.service !== svc.name) continue;
      if (i.desired !== "running" || (i.state !== "running" && i.state !== "ready")) continue;
      const c = cores(i);
      if (c === undefined) continue;
      sum += c / i.run.resources.cpu;
      known++;
    }
    return known > 0 ? sum : undefined;
  }

  /** The query's value now; the previous round's query still running → no sample this round. */
  async #query(svc: Service, spec: AutoscaleSpec, t: Tracked): Promise<number | undefined> {
    const query = this.#sources.query;
    // One sample a second at most: a query costs more than a round.
    const latest = t.samples.at(-1)?.at;
    if (!query || !spec.target.query || t.querying) return undefined;
    if (latest !== undefined && this.#ctx.clock.now() - latest < 1000) return undefined;
    t.querying = true;
    try {
      return await query(svc.tenant, spec.target.query);
    } catch (err) {
      this.#ctx.logger.warn("autoscale query failed", {
        err,
        service: serviceKey(svc.tenant, svc.app, svc.name),
      });
      return undefined;
    } finally {
      t.querying = false;
    }
  }
}

/** The mean of the samples since `from`; undefined without one. */
function mean(samples: readonly { at: number; value: number }[], from: number): number | undefined {
  const inside = samples.filter((s) => s.at > from);
  if (inside.length === 0) return undefined;
  return inside.reduce((sum, s) => sum + s.value, 0) / inside.length;
}

/** The figures of a decision, as its event's detail lines. */
function figureLines(spec: AutoscaleSpec, d: Decision): string[] {
  const unit = targetUnit(spec);
  const w = (ms: number) => `${Math.round(ms / 100) / 10}s`;
  const lines = [
    `target: ${round(spec.target.value)}${unit} per instance${spec.target.query ? ` of ${spec.target.query}` : ""}`,
  ];
  if (d.stable !== undefined)
    lines.push(`stable ${w(spec.stableWindowMs)}: ${round(d.stable)}${unit} → ${d.stableWant}`);
  if (d.panicFigure !== undefined)
    lines.push(`panic ${w(spec.panicWindowMs)}: ${round(d.panicFigure)}${unit} → ${d.panicWant}`);
  lines.push(`mode: ${d.panic ? "panic" : "stable"}; bounds ${spec.min}..${spec.max}`);
  return lines;
}

const round = (n: number) => Math.round(n * 100) / 100;
