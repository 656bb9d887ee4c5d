/**
 * The choice: from a finding (a rule's symptom on a service) and the evidence
 * around it, the one action that addresses its cause, and why. Pure — the
 * view and the live figures in, a plan out — so every branch is tested with
 * numbers (decide.test.ts).
 *
 * The actions are tried in this order; the first whose evidence holds wins:
 *
 *   rollback   the serving release is recent (within the window), not itself a rollback,
 *              the bad figures sit (≥ 80 %) on its instances, and load has not surged (< ×1.5; ×3 for errors)
 *   cordon     every instance of the service on one ready node is bad while peers elsewhere are fine
 *   replace    one cattle instance far worse (≥ 3×) than the median of its ≥ 2 peers: a new one replaces it
 *   restart    the same for a pet: restarted in place (same id, node and data; a new generation)
 *   degrade    spans show the service's calls to another failing: its routes switch to their fallback
 *   scale-out  load is rising (rps over the window ≥ 1.2 × over 6 windows): more instances,
 *              and with throttle allowed, low-criticality services' concurrency lowered meanwhile
 *   throttle   (without scale-out) low-criticality services' concurrency lowered
 *
 * Only the actions the rule allows are tried; when none holds the plan is
 * `none` with the reasons each was turned down, so a person sees why nothing
 * was done.
 */

import type { InstanceFigures } from "../../model/load.ts";
import type { Action } from "../../model/remediation.ts";
import { loadRise, scaleOut, throttleOnly } from "./load-actions.ts";
import type { Plan } from "./plan.ts";
import { type Finding, pct, round1, thresholdOf, windowMsOf } from "./symptoms.ts";
import { type AppView, type CallEdge, type InstanceView, type ServiceView, serviceKeyOf } from "./view.ts";

/** Share of the bad figures that must sit on the new release's instances for a rollback. */
export const ROLLBACK_SHARE = 0.8;
/** How much worse than its peers' median an instance must be to be replaced. */
export const OUTLIER_FACTOR = 3;
/**
 * Load that rose this much: a symptom is put down to the surge, not to a
 * recent release. Slowness and saturation follow load closely; errors take a
 * bigger surge (a release failing requests under steady load must still be
 * rolled back while traffic grows a little).
 */
export const OVERLOAD_RATIO = { errors: 3, other: 1.5 } as const;
/** Calls to a dependency failing at least this share (and MIN_FAILED_CALLS) make it failing. */
export const DEPENDENCY_ERROR_RATE = 0.5;
export const MIN_FAILED_CALLS = 5;
/** Fewer requests than this on an instance say nothing about it. */
export const MIN_INSTANCE_REQUESTS = 5;

/** Chooses the action for one finding. */
export function decide(finding: Finding, view: AppView, releaseWindowMs: number): Plan {
  const allowed = new Set(finding.rule.actions);
  const service = view.services.find((s) => s.name === finding.service);
  const turnedDown: string[] = [];
  if (!service) return none(finding, [`no service ${finding.service}`]);
  const figures = view.load.instances(serviceKeyOf(view, service.name), windowMsOf(finding.rule));
  const tries: [Action, () => Plan | string][] = [
    ["rollback", () => rollback(finding, view, service, figures, releaseWindowMs)],
    ["cordon", () => cordon(finding, view, service, figures)],
    ["replace", () => outlierPlan("replace", finding, view, service, figures)],
    ["restart", () => outlierPlan("restart", finding, view, service, figures)],
    ["degrade", () => degrade(finding, view, service)],
    ["scale-out", () => scaleOut(finding, view, service, allowed.has("throttle"))],
    ["throttle", () => throttleOnly(finding, view, service)],
  ];
  for (const [action, attempt] of tries) {
    if (!allowed.has(action)) continue;
    const r = attempt();
    // The chosen plan also says why the actions before it were turned down.
    if (typeof r !== "string") return { ...r, evidence: [...r.evidence, ...turnedDown] };
    turnedDown.push(`not ${action}: ${r}`);
  }
  return none(finding, turnedDown);
}

function none(finding: Finding, turnedDown: string[]): Plan {
  return {
    action: "none",
    target: finding.service,
    reason: "no allowed action fits the evidence",
    evidence: [...finding.evidence, ...turnedDown],
    change: { kind: "none" },
  };
}

/** Whether one instance's figures are bad by the finding's own measure. */
function badInstance(finding: Finding, f: InstanceFigures): boolean {
  const t = thresholdOf(finding.rule);
  if (f.requests < MIN_INSTANCE_REQUESTS) return false;
  if (finding.rule.symptom === "latency") return (f.p99Ms ?? 0) >= t;
  return f.errorRate >= (finding.rule.symptom === "error-rate" ? t : 0.1);
}

function rollback(
  finding: Finding,
  view: AppView,
  s: ServiceView,
  figures: InstanceFigures[],
  windowMs: number,
): Plan | string {
  const current = view.appRelease;
  if (current === null) return "the app has no release";
  if (s.state === "updating" || s.state === "rolling_back")
    return `${s.name} is ${s.state}: a deploy is in progress`;
  if (s.release !== current) return `${s.name} is on v${s.release}, not the serving v${current}`;
  const r = view.releases.find((x) => x.version === current);
  if (!r) return `release v${current} not found`;
  const age = view.now - r.createdAt;
  if (age > windowMs)
    return `v${current} is ${Math.round(age / 1000)} s old (window ${Math.round(windowMs / 1000)} s)`;
  if (r.rollbackOf !== undefined) return `v${current} is already a rollback (of v${r.rollbackOf})`;
  const content = r.rollbackOf ?? r.version;
  const target = [...view.releases]
    .sort((a, b) => b.version - a.version)
    .find((x) => x.version < current && (x.rollbackOf ?? x.version) !== content);
  if (!target) return `no release before v${current}`;
  const evidence = [...finding.evidence, `v${current} released ${Math.round(age / 1000)} s ago`];
  if (finding.rule.symptom !== "crash-loop") {
    // Errors or slowness that came with a surge are the surge's, not the release's.
    const rise = loadRise(finding, view, s);
    const limit = finding.rule.symptom === "error-rate" ? OVERLOAD_RATIO.errors : OVERLOAD_RATIO.other;
    if (rise && rise.ratio >= limit)
      return `load rose ×${Number.isFinite(rise.ratio) ? round1(rise.ratio) : "∞"} (${rise.line}): the surge, not the release, is the likely cause`;
    if (rise) evidence.push(rise.line);
  }
  if (finding.rule.symptom === "crash-loop") {
    evidence.push(`${s.name}'s crashes are on v${current}, its desired release`);
  } else {
    const share = newReleaseShare(finding, figures, current);
    if (share === undefined) return "no per-instance figures to tell releases apart";
    if (share.share < ROLLBACK_SHARE)
      return `only ${pct(share.share)} of the bad figures are on v${current}'s instances (needs ${pct(ROLLBACK_SHARE)})`;
    evidence.push(...share.lines);
  }
  return {
    action: "rollback",
    target: `v${current} → v${target.version}`,
    reason: `v${current} is recent and the ${finding.rule.symptom} sits on its instances: roll back to v${target.version}`,
    evidence,
    change: { kind: "rollback", from: current, to: target.version },
  };
}

/** How much of what is bad is on the release's instances, with a line per release. */
function newReleaseShare(
  finding: Finding,
  figures: InstanceFigures[],
  release: number,
): { share: number; lines: string[] } | undefined {
  const measured = figures.filter((f) => f.requests > 0);
  if (measured.length === 0) return undefined;
  const byRelease = new Map<number, { requests: number; errors: number; instances: number; bad: number }>();
  for (const f of measured) {
    const b = byRelease.get(f.release) ?? { requests: 0, errors: 0, instances: 0, bad: 0 };
    b.requests += f.requests;
    b.errors += f.errors;
    b.instances += 1;
    if (badInstance(finding, f)) b.bad += 1;
    byRelease.set(f.release, b);
  }
  const lines = [...byRelease.entries()]
    .sort((a, b) => b[0] - a[0])
    .map(
      ([v, b]) =>
        `v${v}: ${b.instances} instance(s), ${b.errors} of ${b.requests} requests failed (${pct(b.errors / b.requests)}), ${b.bad} bad`,
    );
  // The instances themselves, worst first, so the evidence names what showed it.
  const worst = [...measured].sort((a, b) => b.errorRate - a.errorRate || (b.p99Ms ?? 0) - (a.p99Ms ?? 0));
  for (const f of worst.slice(0, 6)) {
    lines.push(
      `  ${f.instance} (v${f.release}): ${f.errors} of ${f.requests} failed${f.p99Ms !== undefined ? `, p99 ${Math.round(f.p99Ms)} ms` : ""}`,
    );
  }
  const mine = byRelease.get(release);
  let share: number;
  if (finding.rule.symptom === "error-rate") {
    const errors = measured.reduce((n, f) => n + f.errors, 0);
    share = errors === 0 ? 0 : (mine?.errors ?? 0) / errors;
  } else {
    const bad = measured.filter((f) => badInstance(finding, f)).length;
    share = bad === 0 ? 0 : (mine?.bad ?? 0) / bad;
  }
  return { share, lines };
}

function cordon(finding: Finding, view: AppView, s: ServiceView, figures: InstanceFigures[]): Plan | string {
  const byId = new Map(figures.map((f) => [f.instance, f]));
  const bad = (i: InstanceView): boolean => {
    if (i.state === "crashed" || i.state === "failed") return true;
    const f = byId.get(i.id);
    return f !== undefined && badInstance(finding, f);
  };
  const mine = view.instances.filter((i) => i.service === s.name && i.node !== null);
  const nodes = new Map<string, InstanceView[]>();
  for (const i of mine) nodes.set(i.node!, [...(nodes.get(i.node!) ?? []), i]);
  if (nodes.size < 2) return "the service's instances are on one node";
  const refused: string[] = [];
  for (const [node, on] of nodes) {
    if (on.length < 2 || !on.every(bad)) continue;
    // A node that stopped heartbeating is the node controller's (not ready, then lost: its cattle move).
    const n = view.nodes.find((x) => x.name === node);
    if (n?.state !== "ready") {
      refused.push(`${node} is ${n?.state ?? "gone"}: the node controller handles it`);
      continue;
    }
    if (!n.schedulable) {
      refused.push(`${node} is already cordoned`);
      continue;
    }
    const elsewhere = mine.filter((i) => i.node !== node);
    const fine = elsewhere.filter((i) => !bad(i));
    if (fine.length === 0) continue;
    return {
      action: "cordon",
      target: node,
      reason: `all ${on.length} instances of ${s.name} on ${node} are bad while ${fine.length} elsewhere are fine: cordon ${node}`,
      evidence: [
        ...finding.evidence,
        `on ${node}: ${on.map((i) => `${i.id} (${describe(i, byId.get(i.id))})`).join(", ")}`,
        `elsewhere: ${fine.map((i) => `${i.id} on ${i.node} (${describe(i, byId.get(i.id))})`).join(", ")}`,
      ],
      change: { kind: "cordon", node },
    };
  }
  return refused[0] ?? "no node whose instances are all bad while others are fine";
}

const describe = (i: InstanceView, f: InstanceFigures | undefined): string =>
  f
    ? `${i.state}, ${pct(f.errorRate)} of ${f.requests} failed${f.p99Ms !== undefined ? `, p99 ${Math.round(f.p99Ms)} ms` : ""}`
    : i.state;

/**
 * One running instance far worse than its peers: a cattle one is replaced (a
 * new instance, wherever it fits), a pet restarted in place (it keeps its
 * identity and data, and is never moved silently).
 */
function outlierPlan(
  action: "replace" | "restart",
  finding: Finding,
  view: AppView,
  s: ServiceView,
  figures: InstanceFigures[],
): Plan | string {
  if (finding.rule.symptom !== "error-rate" && finding.rule.symptom !== "latency")
    return `${action === "replace" ? "replacing" : "restarting"} needs per-instance error or latency figures`;
  const running = new Map(
    view.instances.filter((i) => i.service === s.name && i.state === "running").map((i) => [i.id, i]),
  );
  const measured = figures.filter((f) => running.has(f.instance) && f.requests >= MIN_INSTANCE_REQUESTS);
  if (measured.length < 3)
    return `${measured.length} instance(s) with figures: an outlier needs at least 2 peers`;
  const measure = (f: InstanceFigures) => (finding.rule.symptom === "latency" ? (f.p99Ms ?? 0) : f.errorRate);
  const worst = measured.reduce((a, b) => (measure(b) > measure(a) ? b : a));
  const peers = measured.filter((f) => f !== worst).map(measure);
  const median = medianOf(peers);
  const t = thresholdOf(finding.rule);
  if (median >= t) return `its peers are bad too (median ${fmt(finding, median)})`;
  // An error rate of 0 among peers: any bad instance is far worse.
  if (measure(worst) < t || measure(worst) < OUTLIER_FACTOR * median)
    return `no instance is ${OUTLIER_FACTOR}× worse than its peers' median (${fmt(finding, median)})`;
  const inst = running.get(worst.instance)!;
  if (action === "replace" && inst.mode !== "cattle")
    return `${worst.instance} is a pet: it is restarted in place, never replaced`;
  if (action === "restart" && inst.mode !== "pet")
    return `${worst.instance} is cattle: it is replaced rather than restarted`;
  return {
    action,
    target: worst.instance,
    reason:
      action === "replace"
        ? `${worst.instance} is far worse than its ${peers.length} peers: replace it`
        : `pet ${worst.instance} is far worse than its ${peers.length} peers: restart it in place (same node and data)`,
    evidence: [
      ...finding.evidence,
      `${worst.instance} on ${inst.node}: ${fmt(finding, measure(worst))} over ${worst.requests} requests`,
      `peers' median: ${fmt(finding, median)} (${peers.length} instances)`,
    ],
    change: { kind: action, service: s.name, instance: worst.instance },
  };
}

const fmt = (finding: Finding, v: number): string =>
  finding.rule.symptom === "latency" ? `p99 ${Math.round(v)} ms` : `${pct(v)} failed`;

export function medianOf(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function degrade(finding: Finding, view: AppView, s: ServiceView): Plan | string {
  if (s.degraded) return `${s.name}'s routes already answer their fallback`;
  const failing = failingCalls(view.calls, s.name);
  if (failing.length === 0) return "spans show no failing calls to another service";
  const fallbacks = s.spec.routes.filter((r) => r.fallback).length;
  if (fallbacks === 0)
    return `${s.name}'s calls to ${failing[0].to} fail, but none of its routes has a fallback`;
  const dependencies = [...new Set(failing.map((c) => c.to))];
  return {
    action: "degrade",
    target: s.name,
    reason: `${s.name}'s calls to ${dependencies.join(", ")} fail: its ${fallbacks} route(s) with a fallback answer it until they succeed again`,
    evidence: [
      ...finding.evidence,
      ...failing.map(
        (c) => `spans ${c.from} → ${c.to}: ${c.errors} of ${c.calls} calls failed (${pct(c.errorRate)})`,
      ),
    ],
    change: { kind: "degrade", service: s.name, dependencies },
  };
}

/** Whether a span's service name (`app/service` or `service`) is this service. */
export const isService = (spanService: string, service: string): boolean =>
  spanService === service || spanService.endsWith(`/${service}`);

/** The service's calls to others that fail (≥ MIN_FAILED_CALLS, ≥ DEPENDENCY_ERROR_RATE). */
export function failingCalls(calls: readonly CallEdge[], service: string): CallEdge[] {
  return calls.filter(
    (c) =>
      isService(c.from, service) &&
      !isService(c.to, service) &&
      c.errors >= MIN_FAILED_CALLS &&
      c.errorRate >= DEPENDENCY_ERROR_RATE,
  );
}
