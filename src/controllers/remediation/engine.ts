/**
 * The remediation engine: every second, for each app,
 *
 *   appViews (store + live figures + firing alerts) ─► each rule: detect ─► findings
 *     ─► decide (pure) ─► cooldown? ─► budget? ─► dry-run? ─► record the decision ─► act
 *     ─► event `Remediation` (evidence in its details)
 *   decisions whose outcome is due ─► the symptom again ─► event `RemediationOutcome`
 *   throttles whose service's capacity serves and whose symptom cleared ─► restored
 *   degraded services whose calls succeed again (spans of the gateway's probes) ─► switched back
 *
 * Nothing is remembered between passes but the `remediation` object of each
 * app (decisions, throttles): a decision is stored before its change is made,
 * so a restarted server neither repeats it (cooldown) nor forgets it (budget).
 * A paused app gets no decisions; its outcomes and restores go on. Once
 * resumed, a rule decides only after a whole window of figures from after the
 * resume, and every window it reads (the load's baseline, the spans) starts
 * at the resume at the earliest: nothing seen while paused is acted on.
 */

import { timeOrderedId } from "../../common/ids.ts";
import { Rounds } from "../../common/rounds.ts";
import type { LoadFigures } from "../../model/load.ts";
import type { Instance } from "../../model/objects.ts";
import type { InstanceUsage } from "../../model/protocol.ts";
import type { Degrade } from "../../model/remediation.ts";
import {
  BUILT_IN_RULES,
  DEFAULT_COOLDOWN_S,
  DEFAULT_OUTCOME_AFTER_S,
  DEFAULT_RELEASE_WINDOW_S,
  KEEP_DECISIONS,
  type RemediationDecision,
  type RemediationPolicy,
  type RemediationRule,
  remediationKey,
  type Throttle,
} from "../../model/remediation.ts";
import type { Context } from "../context.ts";
import { type Actuators, type Applied, applyChange, restoreDegrade, restoreThrottle } from "./act.ts";
import { budgetLeft, coolingDown, recentChange } from "./budget.ts";
import { decide } from "./decide.ts";
import { degradeOver, recoveryFrom } from "./degrade.ts";
import { type AlertLike, appViews, NO_LOAD, releasesOf } from "./evidence.ts";
import { readPolicy } from "./policy.ts";
import { detect, detectOne, overloadedNow, windowMsOf } from "./symptoms.ts";
import type { AppView, CallEdge } from "./view.ts";

export interface EngineOptions {
  ctx: Context;
  act: Actuators;
  /** Alerts pending and firing now (the alert evaluator's `active()`). */
  alerts?: () => readonly AlertLike[];
  /** Calls between services seen in spans of one tenant between two times (µs). */
  calls?: (tenant: string, fromUs: number, toUs: number) => Promise<CallEdge[]>;
  /** What an instance used lately (agents' heartbeats: cores, its wait for a CPU): saturation by CPU. */
  usage?: (instance: Instance) => InstanceUsage | undefined;
  /** How often the engine looks (default 1 s). */
  intervalMs?: number;
}

/**
 * The rule an outcome is judged by: its window cut to half the time since the
 * decision, so the figures are those after the change took effect rather than
 * the ones that led to it.
 */
export function outcomeRule(rule: RemediationRule, afterMs: number): RemediationRule {
  const windowMs = Math.min(windowMsOf(rule), Math.max(2000, Math.floor(afterMs / 2)));
  return { ...rule, windowS: Math.round(windowMs / 1000) };
}

/**
 * Throttles in force plus new ones. A service throttled again keeps the
 * override it had before the first throttle, so the restore puts back the
 * developer's value rather than the first throttle's.
 */
export function mergeThrottles(current: readonly Throttle[], added: readonly Throttle[]): Throttle[] {
  const kept = current.filter((t) => !added.some((n) => n.service === t.service));
  return [
    ...kept,
    ...added.map((n) => {
      const old = current.find((t) => t.service === n.service);
      return old ? { ...n, previous: old.previous, since: old.since } : n;
    }),
  ];
}

/**
 * What became of the instance a replace or restart acted on, for its outcome:
 * the restarted pet runs again (same id), the replaced one is gone and the
 * service runs its count.
 */
export function instanceOutcome(d: RemediationDecision, view: AppView): string[] {
  if (d.action !== "restart" && d.action !== "replace") return [];
  const i = view.instances.find((x) => x.id === d.target);
  const s = view.services.find((x) => x.name === d.service);
  const count = s ? `${d.service} runs ${s.running} of ${s.instances}` : `${d.service} is gone`;
  if (d.action === "restart")
    return [i ? `pet ${d.target} is ${i.state} again on ${i.node}` : `pet ${d.target} is gone`, count];
  return [i ? `${d.target} still runs (${i.state})` : `${d.target} is gone`, count];
}

/** A throttle is restored after this long at most, whatever the figures say. */
export const MAX_THROTTLE_MS = 10 * 60_000;

/** Past this long after a resume no window reaches back into the paused period (6 × the longest rule window). */
const MAX_SINCE_RESUME_MS = 6 * 3600 * 1000;

/**
 * Figures whose windows start at `since` at the earliest (the resume of a
 * paused app): a longer window is cut to the time since.
 */
export function loadSince(load: LoadFigures, now: number, since: number): LoadFigures {
  const cut = (windowMs: number) => Math.max(1, Math.min(windowMs, now - since));
  return {
    service: (key, windowMs) => load.service(key, cut(windowMs)),
    instances: (key, windowMs) => load.instances(key, cut(windowMs)),
  };
}

/** Services switched to their fallbacks, with one added (or replaced). */
export function mergeDegrades(
  current: readonly Degrade[] | undefined,
  added: Degrade | undefined,
): Degrade[] {
  const kept = (current ?? []).filter((d) => d.service !== added?.service);
  return added ? [...kept, added] : kept;
}

/** Symptoms of load, which a throttle for a more critical service causes on purpose. */
const LOAD_SYMPTOMS = new Set<string>(["saturation", "latency"]);

export class RemediationEngine {
  readonly #o: EngineOptions;
  readonly #rounds = new Rounds(
    () => this.#pass(),
    (err) => this.#o.ctx.logger.warn("remediation pass failed", { err }),
  );

  constructor(options: EngineOptions) {
    this.#o = options;
  }

  start(): void {
    this.#rounds.start(this.#o.intervalMs ?? 1000);
  }

  stop(): Promise<void> {
    return this.#rounds.stop();
  }

  /** One pass over every app; a pass still running is joined rather than doubled. */
  tick(): Promise<void> {
    return this.#rounds.run();
  }

  async #pass(): Promise<void> {
    const { ctx } = this.#o;
    const load: LoadFigures = ctx.load ?? NO_LOAD;
    const now = ctx.clock.now();
    const views = await appViews(
      { store: ctx.store, informer: ctx.informer, machineProvider: ctx.settings.machineProvider },
      load,
      this.#o.alerts?.() ?? [],
      now,
      this.#o.usage,
    );
    const policies = new Map(
      (await ctx.store.list<RemediationPolicy>("remediation")).items.map((o) => [o.key, o]),
    );
    for (const view of views) {
      const stored = policies.get(remediationKey(view.tenant, view.app));
      try {
        await this.#app(view, stored ? { policy: stored.value, revision: stored.revision } : undefined);
      } catch (err) {
        ctx.logger.warn("remediation of an app failed", { err, app: view.app, tenant: view.tenant });
      }
    }
  }

  async #app(
    view: AppView,
    stored: { policy: RemediationPolicy; revision: number } | undefined,
  ): Promise<void> {
    const { ctx } = this.#o;
    const { policy, revision } = stored ?? (await readPolicy(ctx.store, view.tenant, view.app, view.now));
    const rules = policy.rules ?? BUILT_IN_RULES;
    await this.#outcomes(view, policy, revision);
    if (policy.throttles.length > 0) await this.#restoreThrottles(view);
    if ((policy.degraded ?? []).length > 0) await this.#restoreDegrades(view);
    if (policy.paused) return;
    // After a resume: no figure from the paused period (windows cut at the resume, each rule waits a whole window).
    const resumedAt = policy.resumedAt ? Date.parse(policy.resumedAt) : Number.NEGATIVE_INFINITY;
    if (view.now - resumedAt < MAX_SINCE_RESUME_MS)
      view = { ...view, load: loadSince(view.load, view.now, resumedAt) };
    const decided = new Set<string>();
    for (const rule of rules) {
      if (view.now - resumedAt < windowMsOf(rule)) continue;
      for (const finding of detect(rule, view)) {
        if (decided.has(finding.service)) continue;
        // A rollout in progress is the deploy controller's to judge (its figures mix two releases).
        const state = view.services.find((s) => s.name === finding.service)?.state;
        if (state === "updating" || state === "rolling_back") continue;
        const fresh = await readPolicy(ctx.store, view.tenant, view.app, view.now);
        if (fresh.policy.paused) return;
        // A service throttled for a more critical one is slow on purpose: its load is not a symptom to answer
        // (scaling it out would take the room the critical one needs).
        if (
          LOAD_SYMPTOMS.has(rule.symptom) &&
          fresh.policy.throttles.some((t) => t.service === finding.service)
        )
          continue;
        const cooldownMs = (rule.cooldownS ?? DEFAULT_COOLDOWN_S) * 1000;
        // A change just made to this service needs time to show: no second one on top.
        if (recentChange(fresh.policy.decisions, finding.service, view.now, cooldownMs)) continue;
        if (view.releases.length === 0) view.releases = await releasesOf(ctx.store, view.tenant, view.app);
        if (rule.actions.includes("degrade") && view.calls.length === 0 && this.#o.calls) {
          const toUs = view.now * 1000;
          const fromUs = Math.max(toUs - 60_000_000, resumedAt * 1000);
          view.calls = await this.#o.calls(view.tenant, fromUs, toUs).catch(() => []);
        }
        const plan = decide(finding, view, (fresh.policy.releaseWindowS ?? DEFAULT_RELEASE_WINDOW_S) * 1000);
        if (coolingDown(fresh.policy.decisions, rule, finding.service, plan.action, view.now)) continue;
        decided.add(finding.service);
        // Services this decision throttles get no decision of their own in this pass.
        if (plan.change.kind === "scale-out" || plan.change.kind === "throttle")
          for (const t of plan.change.throttle) decided.add(t.service);
        const dryRun = fresh.policy.dryRun || rule.dryRun === true;
        const budget = budgetLeft(fresh.policy, view.now);
        const held = !dryRun && plan.action !== "none" && budget.left === 0;
        const decision: RemediationDecision = {
          id: timeOrderedId(view.now),
          at: new Date(view.now).toISOString(),
          rule: rule.name,
          symptom: rule.symptom,
          service: finding.service,
          action: plan.action,
          target: plan.target,
          reason: plan.reason,
          evidence: plan.evidence,
          dryRun,
          ...(held ? { applied: `held back: budget of ${budget.limit} changes per hour used` } : {}),
          ...(plan.action !== "none" && !held && !dryRun ? { applied: "pending" } : {}),
          ...(plan.action !== "none"
            ? {
                checkAt: new Date(
                  view.now + (fresh.policy.outcomeAfterS ?? DEFAULT_OUTCOME_AFTER_S) * 1000,
                ).toISOString(),
              }
            : {}),
        };
        // Stored before the change: a crash between the two leaves a decision marked pending, never a silent change.
        let revisionNow: number;
        try {
          revisionNow = await this.#save(view, fresh.revision, (p) => ({
            ...p,
            decisions: [...p.decisions, decision].slice(-KEEP_DECISIONS),
          }));
        } catch {
          continue; // the policy changed under us (a pause?): look again next pass
        }
        if (decision.applied === "pending") {
          let applied = "applied";
          let made: Applied = { throttles: [] };
          try {
            made = await applyChange(
              ctx,
              this.#o.act,
              view.tenant,
              view.app,
              plan.change,
              `${rule.name}: ${plan.reason}`,
            );
            if (plan.change.kind === "throttle")
              made = { ...made, throttles: made.throttles.map((t) => ({ ...t, for: finding.service })) };
          } catch (err) {
            applied = `failed: ${(err as Error).message}`;
          }
          decision.applied = applied;
          await this.#update(view, revisionNow, (p) => {
            const degraded = mergeDegrades(p.degraded, made.degraded);
            const next: RemediationPolicy = {
              ...p,
              decisions: p.decisions.map((d) => (d.id === decision.id ? { ...d, applied } : d)),
              throttles: mergeThrottles(p.throttles, made.throttles),
            };
            if (degraded.length > 0) next.degraded = degraded;
            return next;
          });
        }
        await this.#record(view, decision);
      }
    }
  }

  /** Checks the outcome of decisions that are due. */
  async #outcomes(view: AppView, policy: RemediationPolicy, revision: number): Promise<void> {
    const due = policy.decisions.filter((d) => d.checkAt && !d.outcome && Date.parse(d.checkAt) <= view.now);
    if (due.length === 0) return;
    const rules = policy.rules ?? BUILT_IN_RULES;
    const outcomes = new Map<string, "cleared" | "persists">();
    const after = (policy.outcomeAfterS ?? DEFAULT_OUTCOME_AFTER_S) * 1000;
    const since = (d: RemediationDecision) => {
      const rule = rules.find((r) => r.name === d.rule);
      const s = view.services.find((x) => x.name === d.service);
      return rule && s ? detectOne(outcomeRule(rule, after), view, s) : undefined;
    };
    for (const d of due) outcomes.set(d.id, since(d) ? "persists" : "cleared");
    try {
      await this.#save(view, revision, (p) => ({
        ...p,
        decisions: p.decisions.map((d) => (outcomes.has(d.id) ? { ...d, outcome: outcomes.get(d.id) } : d)),
      }));
    } catch {
      return;
    }
    for (const d of due) {
      const outcome = outcomes.get(d.id)!;
      const now = since(d);
      await this.#o.ctx.events.record({
        tenant: view.tenant,
        app: view.app,
        service: d.service,
        reason: "RemediationOutcome",
        type: outcome === "cleared" ? "normal" : "warning",
        message: `${d.rule}: ${d.action}${d.dryRun ? " (dry run)" : ""} ${d.target}: the ${d.symptom} ${outcome === "cleared" ? "cleared" : "persists"} ${Math.round((view.now - Date.parse(d.at)) / 1000)} s later`,
        details: [`decision ${d.id}`, ...instanceOutcome(d, view), ...(now ? now.evidence : [])],
      });
    }
  }

  /** Restores throttles whose service's capacity serves again and whose overload is gone. */
  async #restoreThrottles(view: AppView): Promise<void> {
    const { ctx } = this.#o;
    const { policy, revision } = await readPolicy(ctx.store, view.tenant, view.app, view.now);
    const rules = (policy.rules ?? BUILT_IN_RULES).filter(
      (r) => r.symptom === "saturation" || r.symptom === "latency",
    );
    const done = policy.throttles.filter((t) => {
      if (view.now - Date.parse(t.since) > MAX_THROTTLE_MS) return true;
      const s = view.services.find((x) => x.name === t.for);
      if (!s) return true;
      // Lifted as soon as the new capacity serves and no queue shows now, not once a 10 s average forgets it.
      return s.running >= s.instances && !rules.some((r) => overloadedNow(r, view, s));
    });
    if (done.length === 0) return;
    for (const t of done) await restoreThrottle(ctx, view.tenant, view.app, t);
    await this.#update(view, revision, (p) => ({
      ...p,
      throttles: p.throttles.filter((t) => !done.some((d) => d.service === t.service)),
    }));
    for (const t of done) {
      await ctx.events.record({
        tenant: view.tenant,
        app: view.app,
        service: t.service,
        reason: "RemediationRestored",
        message: `${t.service}'s concurrency is back to ${"concurrency" in t.previous ? (t.previous.concurrency ?? "off") : "herd.yaml's"}: ${t.for || "the overloaded service"} serves again`,
      });
    }
  }

  /** Switches degraded services back once their calls succeed again (or after MAX_DEGRADE_MS). */
  async #restoreDegrades(view: AppView): Promise<void> {
    const { ctx } = this.#o;
    const { policy, revision } = await readPolicy(ctx.store, view.tenant, view.app, view.now);
    const degraded = policy.degraded ?? [];
    if (degraded.length === 0) return;
    const done: { d: Degrade; why: string; undo: boolean }[] = [];
    for (const d of degraded) {
      const s = view.services.find((x) => x.name === d.service);
      if (!s) done.push({ d, why: "the service is gone", undo: false });
      else if (!s.degraded) done.push({ d, why: "its fallback switch was turned off by hand", undo: false });
      else {
        const from = recoveryFrom(d, view.now);
        const calls = this.#o.calls
          ? await this.#o.calls(view.tenant, from * 1000, view.now * 1000).catch(() => [])
          : [];
        const why = degradeOver(d, calls, view.now);
        if (why) done.push({ d, why, undo: true });
      }
    }
    if (done.length === 0) return;
    for (const x of done) if (x.undo) await restoreDegrade(ctx, view.tenant, view.app, x.d);
    await this.#update(view, revision, (p) => {
      const next: RemediationPolicy = {
        ...p,
        degraded: (p.degraded ?? []).filter((d) => !done.some((x) => x.d.service === d.service)),
      };
      if (next.degraded?.length === 0) delete next.degraded;
      return next;
    });
    for (const { d, why } of done) {
      await ctx.events.record({
        tenant: view.tenant,
        app: view.app,
        service: d.service,
        reason: "RemediationRestored",
        message: `${d.service}'s routes are served by ${d.service} again, no longer their fallback: ${why}`,
        details: [`degraded since ${d.since} for ${d.dependencies.join(", ")}`],
      });
    }
  }

  async #record(view: AppView, d: RemediationDecision): Promise<void> {
    const what = d.action === "none" ? "no action" : `${d.action} ${d.target}`;
    const state = d.dryRun
      ? " (dry run: nothing changed)"
      : d.applied && d.applied !== "applied"
        ? ` (${d.applied})`
        : "";
    await this.#o.ctx.events.record({
      tenant: view.tenant,
      app: view.app,
      service: d.service,
      reason: "Remediation",
      type: d.action === "none" || d.dryRun ? "normal" : "warning",
      message: `${d.rule}: ${what}${state}: ${d.reason}`,
      details: [`decision ${d.id}`, ...d.evidence],
    });
  }

  /** Writes a change of the policy read at `revision`; throws conflict when it moved. Returns the new revision. */
  async #save(
    view: AppView,
    revision: number,
    change: (p: RemediationPolicy) => RemediationPolicy,
  ): Promise<number> {
    const { ctx } = this.#o;
    const { policy } = await readPolicy(ctx.store, view.tenant, view.app, view.now);
    const o = await ctx.store.put("remediation", remediationKey(view.tenant, view.app), change(policy), {
      expectRevision: revision,
    });
    return o.revision;
  }

  /** Like #save, but retried on a concurrent write (for what must not be lost: an applied change). */
  async #update(
    view: AppView,
    revision: number,
    change: (p: RemediationPolicy) => RemediationPolicy,
  ): Promise<void> {
    let rev = revision;
    for (let i = 0; i < 5; i++) {
      try {
        await this.#save(view, rev, change);
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== "conflict") throw err;
        rev = (await readPolicy(this.#o.ctx.store, view.tenant, view.app, view.now)).revision;
      }
    }
  }
}
