/**
 * The progressive rollout controller: moves a canary through its steps and a
 * blue/green release to its switch, from `Service.progressive` (model/progressive.ts).
 *
 *   deploy (strategy canary|bluegreen) ─► Service.progressive {phase, step, weight}
 *     steps:     canary instances running ─► weight = step's ─► every interval: analysis (live figures
 *                per release: canary vs baseline; per endpoint from traces where the app sends spans)
 *                ─ fail ─► aborted: weight 0, service failed (the
 *                deploy controller points it back at the baseline and fails the deploy with the figures)
 *                                                      └ pass, pause over ─► next step … ─► promoting
 *     preview:   blue/green in full, at its preview host ─► promote (herd rollout promote, or `promote:` time)
 *     promoting: the new release at its full count ─► promoted: weight 100; the service controller drains the old
 *
 * Level-based like the others: everything it needs is on the Service (step,
 * when it started, when it was last analysed), so a restarted control plane
 * picks the rollout up where it was. The service controller sizes the new
 * release (canaryInstances) and keeps the old one while the phase holds it.
 */

import { conflict, notFound } from "../common/errors.ts";
import {
  describeEndpointCheck,
  type EndpointFigures,
  judgeEndpoints,
  KEEP_ENDPOINT_CHECKS,
} from "../model/endpoint-analysis.ts";
import type { Instance, Service } from "../model/objects.ts";
import {
  type Analysis,
  canaryInstances,
  DEFAULT_ANALYSIS,
  DEFAULT_STEPS,
  formatDuration,
  judgeAnalysis,
  KEEP_ANALYSES,
  type ProgressiveState,
  previewHost,
  type ReleaseFigures,
} from "../model/progressive.ts";
import type { StoredObject } from "../store/store.ts";
import type { Context } from "./context.ts";

/** What `herd rollout promote|pause|resume|abort` asks. */
export type RolloutAction = "promote" | "pause" | "resume" | "abort";

/**
 * Per-route latency of a service per release from its spans over [from, to)
 * µs (observe/traces/endpoint-figures.ts); `releases` maps instance ids to
 * the release each runs.
 */
export type EndpointSource = (query: {
  tenant: string;
  service: string;
  from: number;
  to: number;
  releases: Record<string, number>;
}) => Promise<EndpointFigures[]>;

export class RolloutController {
  readonly #ctx: Context;
  readonly #endpoints: EndpointSource | undefined;

  constructor(ctx: Context, endpoints?: EndpointSource) {
    this.#ctx = ctx;
    this.#endpoints = endpoints;
  }

  /** Takes a service's progressive rollout one step further; returns when to look again (ms). */
  async reconcile(key: string): Promise<number | undefined> {
    const { store, clock } = this.#ctx;
    const o = await store.get<Service>("service", key);
    const p = o?.value.progressive;
    if (!o || !p) return undefined;
    const svc = o.value;
    const now = clock.now();
    const fresh = (await store.list<Instance>("instance")).items
      .map((i) => i.value)
      .filter(
        (i) =>
          i.tenant === svc.tenant && i.app === svc.app && i.service === svc.name && i.release === p.release,
      );
    const running = fresh.filter((i) => i.desired === "running" && i.state === "running").length;

    if (p.phase === "aborted") {
      // Kept (weight 0) until no instance of the aborted release takes traffic, then forgotten.
      if (svc.release === p.release || fresh.some((i) => i.state === "running")) return 1000;
      await this.#save(o, { ...svc, progressive: undefined });
      return undefined;
    }
    if (svc.release !== p.release || svc.state === "failed" || p.phase === "promoted") return undefined;

    const spec = svc.spec.rollout;
    const line = (m: string) => this.#log(svc, m);
    if (p.phase === "promoting") {
      if (running < svc.instances) return 500;
      await this.#save(o, { ...svc, progressive: { ...p, phase: "promoted", weight: 100 } });
      line(`${svc.name}: v${p.release} takes every request; v${p.baseline} drains`);
      await this.#event(svc, "RolloutPromoted", `${svc.name}: v${p.release} promoted; v${p.baseline} drains`);
      return undefined;
    }
    if (p.phase === "preview") {
      if (p.stepStartedAt === undefined) {
        if (running < svc.instances) return 500;
        await this.#save(o, { ...svc, progressive: { ...p, stepStartedAt: iso(now) } });
        const auto = spec?.autoPromoteMs;
        line(
          `${svc.name}: v${p.release} runs in full beside v${p.baseline}; preview at ${this.#previewUrl(svc, p)}; ${
            auto !== undefined
              ? `it takes every request in ${formatDuration(auto)}`
              : `\`herd rollout promote --app ${svc.app}\` switches every request to it`
          }`,
        );
        return auto;
      }
      const auto = spec?.autoPromoteMs;
      if (auto === undefined || p.paused) return undefined;
      const left = Date.parse(p.stepStartedAt) + auto - now;
      if (left > 0) return left;
      await this.#save(o, { ...svc, progressive: { ...p, phase: "promoting" } });
      line(`${svc.name}: promoting v${p.release}`);
      return 500;
    }

    // Canary steps.
    const steps = spec?.steps ?? DEFAULT_STEPS;
    const analysis = spec?.analysis ?? DEFAULT_ANALYSIS;
    const step = steps[Math.min(p.step, steps.length - 1)]!;
    const label = `step ${p.step + 1}/${steps.length} (${step.weight}%)`;
    if (p.stepStartedAt === undefined) {
      const target = canaryInstances(step.weight, svc.instances);
      if (running < target) return 500;
      await this.#save(o, {
        ...svc,
        progressive: { ...p, weight: step.weight, stepStartedAt: iso(now), analyzedAt: iso(now) },
      });
      line(
        `${svc.name}: ${label}: ${step.weight}% of requests to v${p.release} (${target} instance${target === 1 ? "" : "s"}) beside v${p.baseline}${step.pauseMs > 0 ? ` for ${formatDuration(step.pauseMs)}` : ""}; analysis every ${formatDuration(analysis.intervalMs)}`,
      );
      return analysis.intervalMs;
    }
    const due = Date.parse(p.analyzedAt ?? p.stepStartedAt) + analysis.intervalMs;
    if (now < due) return due - now;
    const started = Date.parse(p.stepStartedAt);
    const windowMs = Math.max(1000, Math.min(analysis.intervalMs, now - started));
    const figures = this.#ctx.load?.releases?.(key, windowMs) ?? [];
    const canary = figures.find((f) => f.release === p.release) ?? noFigures(p.release);
    const baseline = figures.find((f) => f.release === p.baseline) ?? noFigures(p.baseline);
    let verdict = judgeAnalysis(analysis, canary, baseline);
    // Where the app sends spans: route by route too, once the service-wide figures have a verdict.
    let endpoints: Analysis["endpoints"];
    if (verdict.verdict !== "wait" && this.#endpoints) {
      const judged = await this.#judgeEndpoints(svc, p, analysis, now, windowMs);
      if (judged && judged.checks.length > 0) {
        endpoints = [...judged.failed, ...judged.checks.filter((c) => c.passed)].slice(
          0,
          KEEP_ENDPOINT_CHECKS,
        );
        const routes = new Set(judged.checks.map((c) => c.route)).size;
        verdict =
          judged.failed.length > 0
            ? {
                ...verdict,
                verdict: "fail",
                summary: `per endpoint from traces: ${judged.failed.map(describeEndpointCheck).join(", ")}; service-wide: ${verdict.summary.replace(/^passed: /, "")}`,
              }
            : {
                ...verdict,
                summary: `${verdict.summary}; ${routes} endpoint${routes === 1 ? "" : "s"} within bounds (traces)`,
              };
      }
    }
    const record: Analysis = {
      at: iso(now),
      step: p.step,
      weight: p.weight,
      canary,
      baseline,
      ...verdict,
      ...(endpoints ? { endpoints } : {}),
    };
    const analyses = [...p.analyses, record].slice(-KEEP_ANALYSES);
    // Written to the deploy's log once the store has it (a conflict retries the whole pass).
    const said = `${svc.name}: ${label}: analysis ${verdict.verdict === "wait" ? "waits" : verdict.verdict === "pass" ? "passed" : "FAILED"}: ${verdict.summary.replace(/^passed: /, "")}`;
    if (verdict.verdict === "fail") {
      await this.#abort(
        o,
        { ...p, analyses },
        `canary v${p.release} failed its analysis at ${label}: ${verdict.summary}`,
        () => line(said),
      );
      return 1000;
    }
    const held = now - started >= step.pauseMs;
    if (verdict.verdict === "pass" && held && !p.paused) {
      const last = p.step + 1 >= steps.length;
      await this.#save(o, {
        ...svc,
        progressive: last
          ? { ...p, analyses, analyzedAt: iso(now), phase: "promoting" }
          : { ...p, analyses, analyzedAt: iso(now), step: p.step + 1, stepStartedAt: undefined },
      });
      line(said);
      if (last) line(`${svc.name}: every step passed; promoting v${p.release}`);
      return last ? 500 : 200;
    }
    await this.#save(o, { ...svc, progressive: { ...p, analyses, analyzedAt: iso(now) } });
    line(said);
    return analysis.intervalMs;
  }

  /** The per-route checks of the window, or undefined when the traces cannot be read (the gateway's figures decide). */
  async #judgeEndpoints(
    svc: Service,
    p: ProgressiveState,
    analysis: typeof DEFAULT_ANALYSIS,
    now: number,
    windowMs: number,
  ): Promise<ReturnType<typeof judgeEndpoints> | undefined> {
    const instances = (await this.#ctx.store.list<Instance>("instance")).items.map((o) => o.value);
    const releases: Record<string, number> = {};
    for (const i of instances) {
      if (i.tenant === svc.tenant && i.app === svc.app && i.service === svc.name) releases[i.id] = i.release;
    }
    try {
      const figures = await this.#endpoints!({
        tenant: svc.tenant,
        service: `${svc.app}/${svc.name}`,
        from: (now - windowMs) * 1000,
        to: now * 1000,
        releases,
      });
      return judgeEndpoints(analysis, figures, p.release, p.baseline);
    } catch (err) {
      this.#ctx.logger.warn("per-endpoint analysis skipped: the traces could not be read", {
        service: `${svc.app}/${svc.name}`,
        err,
      });
      return undefined;
    }
  }

  /**
   * `herd rollout promote|pause|resume|abort` on an app's services in a
   * progressive rollout (or the one named). Returns the services it changed.
   */
  async act(
    tenant: string,
    app: string,
    action: RolloutAction,
    options: { service?: string; by?: string } = {},
  ): Promise<Service[]> {
    const targets = await this.#targets(tenant, app, options.service);
    const changed: Service[] = [];
    for (const key of targets) {
      for (let attempt = 0; ; attempt++) {
        const o = await this.#ctx.store.get<Service>("service", key);
        const p = o?.value.progressive;
        if (!o || !p || p.release !== o.value.release || o.value.state === "failed") break;
        try {
          const next = this.#apply(o.value, p, action, options.by);
          if (next !== undefined) {
            await this.#save(o, next);
            changed.push(next);
          }
          break;
        } catch (err) {
          if ((err as { code?: string }).code !== "conflict" || attempt >= 5) throw err;
        }
      }
    }
    for (const s of changed) {
      const by = options.by ? ` (by ${options.by})` : "";
      const done = action === "abort" ? "aborted" : action === "pause" ? "paused" : `${action}d`;
      this.#log(s, `${s.name}: rollout ${done}${by}`);
      if (action === "abort") await this.#event(s, "RolloutAborted", `${s.name}: ${s.message}`, "warning");
    }
    return changed;
  }

  /** The service after `action`, or undefined when it changes nothing (promote twice, resume unpaused). */
  #apply(svc: Service, p: ProgressiveState, action: RolloutAction, by?: string): Service | undefined {
    if (action === "abort") {
      if (p.phase === "promoted")
        throw conflict(`${svc.name}: v${p.release} is already promoted; roll back instead`);
      return this.#aborted(svc, p, `rollout of v${p.release} aborted${by ? ` by ${by}` : ""}`);
    }
    if (action === "promote") {
      if (p.phase === "promoting" || p.phase === "promoted") return undefined;
      return { ...svc, progressive: { ...p, phase: "promoting", paused: false } };
    }
    if (action === "pause") {
      if (p.paused || p.phase === "promoting" || p.phase === "promoted") return undefined;
      return { ...svc, progressive: { ...p, paused: true } };
    }
    return p.paused ? { ...svc, progressive: { ...p, paused: false } } : undefined;
  }

  /** The keys of an app's services in a progressive rollout (or the one named, which must be in one). */
  async #targets(tenant: string, app: string, service?: string): Promise<string[]> {
    const { store } = this.#ctx;
    const all = (await store.list<Service>("service", { prefix: `${tenant}/${app}/` })).items;
    if (all.length === 0) throw notFound(`app ${app} has no services`);
    if (service !== undefined) {
      const s = all.find((o) => o.value.name === service);
      if (!s) throw notFound(`app ${app} has no service ${service}`);
      if (!s.value.progressive || s.value.progressive.phase === "aborted")
        throw conflict(`${service} has no canary or blue/green rollout in progress`);
      return [s.key];
    }
    const live = all.filter((o) => o.value.progressive && o.value.progressive.phase !== "aborted");
    if (live.length === 0) throw conflict(`app ${app} has no canary or blue/green rollout in progress`);
    return live.map((o) => o.key);
  }

  /** Stops a rollout: no request to the new release, the service failed with `message` (the deploy reverts it). */
  async #abort(
    o: StoredObject<Service>,
    p: ProgressiveState,
    message: string,
    saved: () => void,
  ): Promise<void> {
    const next = this.#aborted(o.value, p, message);
    await this.#save(o, next);
    saved();
    await this.#event(o.value, "RolloutAborted", `${o.value.name}: ${message}`, "warning");
  }

  #aborted(svc: Service, p: ProgressiveState, message: string): Service {
    return {
      ...svc,
      state: "failed",
      message,
      progressive: { ...p, phase: "aborted", weight: 0, paused: false },
    };
  }

  async #save(o: StoredObject<Service>, next: Service): Promise<void> {
    await this.#ctx.store.put("service", o.key, next, { expectRevision: o.revision });
  }

  #log(svc: Service, message: string): void {
    if (svc.deploy) this.#ctx.deployLogs.append(svc.deploy, "step", message);
  }

  async #event(svc: Service, reason: string, message: string, type: "normal" | "warning" = "normal") {
    await this.#ctx.events.record({
      tenant: svc.tenant,
      app: svc.app,
      service: svc.name,
      deploy: svc.deploy,
      reason,
      type,
      message,
    });
  }

  #previewUrl(svc: Service, p: ProgressiveState): string {
    const u = new URL(this.#ctx.settings.gatewayUrl);
    return `${u.protocol}//${previewHost(svc.app, svc.name, p.release)}${u.port ? `:${u.port}` : ""}/`;
  }
}

function noFigures(release: number): ReleaseFigures {
  return { release, requests: 0, errors: 0, errorRate: 0 };
}

const iso = (ms: number) => new Date(ms).toISOString();
