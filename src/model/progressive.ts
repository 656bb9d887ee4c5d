/**
 * Progressive delivery of one service (herd.yaml `rollout.strategy`): a
 * canary that takes growing shares of the requests while its figures are
 * compared with the release it replaces, or a blue/green switch with a
 * preview host. The spec (normalised from herd.yaml), the state a rolling-out
 * Service carries (`Service.progressive`, read by the gateway for the split)
 * and the pure analysis. docs/releases.md.
 */

import type { EndpointCheck } from "./endpoint-analysis.ts";

import type { StickySpec } from "./service-spec.ts";

/** One canary step: the new release's share of requests, held for `pauseMs` while its analysis passes. */
export interface CanaryStep {
  /** Percent of requests to the new release (1..100). */
  weight: number;
  pauseMs: number;
}

/** A bound on one figure: an absolute value, or a factor of the baseline's figure. */
export type Threshold = { below: number } | { belowBaseline: number };

/** What each analysis of a step checks, canary against baseline. */
export interface AnalysisSpec {
  /** How often a step is analysed, over the requests of the last interval. */
  intervalMs: number;
  /** Fewer canary requests than this in an interval: no verdict yet (the step waits). */
  minRequests: number;
  /** A fraction (0.01 = 1 %), or a factor of the baseline's error rate. */
  errorRate?: Threshold;
  /** Milliseconds, or a factor of the baseline's p50. */
  p50?: Threshold;
  /** Milliseconds, or a factor of the baseline's p99. */
  p99?: Threshold;
}

/** herd.yaml's `rollout:` with defaults filled in (the strategy is absent for a rolling update). */
export interface RolloutSpec {
  /** The progress deadline (model/rollout.ts); absent: the default. */
  deadlineMs?: number;
  strategy?: "canary" | "bluegreen";
  /** Canary: the steps, in order; promotion follows the last. */
  steps?: CanaryStep[];
  /** Canary: the analysis of every step. */
  analysis?: AnalysisSpec;
  /** Canary: a client stays on one release (by address, header or cookie). */
  sticky?: StickySpec;
  /** Blue/green: promote by itself this long after the new release runs in full (absent: wait for `herd rollout promote`). */
  autoPromoteMs?: number;
}

export const DEFAULT_STEPS: CanaryStep[] = [
  { weight: 10, pauseMs: 60_000 },
  { weight: 50, pauseMs: 60_000 },
];
export const DEFAULT_ANALYSIS: AnalysisSpec = {
  intervalMs: 10_000,
  minRequests: 20,
  errorRate: { below: 0.01 },
  p99: { belowBaseline: 1.2 },
};
/** A latency difference under this never fails a check: the histogram cannot tell such times apart near zero. */
export const LATENCY_SLACK_MS = 10;

/** Where a progressive rollout is. */
export type ProgressivePhase =
  /** canary: stepping through `steps` */
  | "steps"
  /** blue/green: the new release runs in full beside the old, reached only at its preview host */
  | "preview"
  /** the new release is brought to its full count; then it takes every request */
  | "promoting"
  /** the new release takes every request; the old instances drain */
  | "promoted"
  /** the analysis failed or `herd rollout abort`: no request to the new release while its instances stop */
  | "aborted";

/** A progressive rollout in flight, kept on its Service (crash-safe: the controller reads it back). */
export interface ProgressiveState {
  strategy: "canary" | "bluegreen";
  /** The release that served before (the baseline). */
  baseline: number;
  /** The new release (the Service's `release` until an abort points it back at the baseline). */
  release: number;
  phase: ProgressivePhase;
  /** Canary: index of the current step. */
  step: number;
  /** Percent of the requests the gateway sends to the new release now. */
  weight: number;
  /** When the current step's weight took effect (its instances running), ISO; absent while they start. */
  stepStartedAt?: string;
  /** When the last analysis ran, ISO. */
  analyzedAt?: string;
  /** `herd rollout pause`: the step does not advance (analysis still runs and can abort). */
  paused?: boolean;
  /** Canary: a client stays on one release (the gateway hashes this key). */
  sticky?: StickySpec;
  /** Analyses of this rollout, oldest first (the last few). */
  analyses: Analysis[];
}

/** A release's figures over an analysis window (from the gateways' live load, per release). */
export interface ReleaseFigures {
  release: number;
  requests: number;
  errors: number;
  /** errors / requests (0 without requests). */
  errorRate: number;
  p50Ms?: number;
  p99Ms?: number;
}

/** One check of one figure. */
export interface AnalysisCheck {
  figure: "errorRate" | "p50" | "p99";
  canary?: number;
  baseline?: number;
  /** The bound the canary's figure had to stay under. */
  limit?: number;
  passed: boolean;
}

/** One analysis of a step. */
export interface Analysis {
  at: string;
  step: number;
  weight: number;
  verdict: "pass" | "fail" | "wait";
  canary: ReleaseFigures;
  baseline: ReleaseFigures;
  checks: AnalysisCheck[];
  /** Where the app sends spans: per-route latency checks from traces (model/endpoint-analysis.ts), failed first. */
  endpoints?: EndpointCheck[];
  /** One line for people: the figures and what they were held to. */
  summary: string;
}

/** Analyses kept on the Service. */
export const KEEP_ANALYSES = 20;

/**
 * Pure: the canary's figures against the baseline's and the spec's bounds.
 * Too few canary requests: `wait`. Any bound exceeded: `fail`. A relative
 * bound with no baseline figure (no baseline requests) is not checked.
 */
export function judgeAnalysis(
  spec: AnalysisSpec,
  canary: ReleaseFigures,
  baseline: ReleaseFigures,
): Pick<Analysis, "verdict" | "checks" | "summary"> {
  const checks: AnalysisCheck[] = [];
  const check = (
    figure: AnalysisCheck["figure"],
    threshold: Threshold | undefined,
    c: number | undefined,
    b: number | undefined,
    slack: number,
  ) => {
    if (threshold === undefined) return;
    let limit: number | undefined;
    if ("below" in threshold) limit = threshold.below;
    else if (b !== undefined) limit = Math.max(b * threshold.belowBaseline, b + slack);
    const passed = c === undefined || limit === undefined || c < limit || (c === 0 && limit === 0);
    checks.push({
      figure,
      ...(c !== undefined ? { canary: round(c) } : {}),
      ...(b !== undefined ? { baseline: round(b) } : {}),
      ...(limit !== undefined ? { limit: round(limit) } : {}),
      passed,
    });
  };
  check(
    "errorRate",
    spec.errorRate,
    canary.errorRate,
    baseline.requests > 0 ? baseline.errorRate : undefined,
    0,
  );
  check("p50", spec.p50, canary.p50Ms, baseline.p50Ms, LATENCY_SLACK_MS);
  check("p99", spec.p99, canary.p99Ms, baseline.p99Ms, LATENCY_SLACK_MS);
  const figures = `canary v${canary.release}: ${describeFigures(canary)}; baseline v${baseline.release}: ${describeFigures(baseline)}`;
  if (canary.requests < spec.minRequests) {
    return {
      verdict: "wait",
      checks,
      summary: `${canary.requests} of ${spec.minRequests} canary requests needed for a verdict (${figures})`,
    };
  }
  const failed = checks.filter((c) => !c.passed);
  if (failed.length > 0) {
    return {
      verdict: "fail",
      checks,
      summary: `${failed.map(describeCheck).join(", ")} (${figures})`,
    };
  }
  return { verdict: "pass", checks, summary: `passed: ${checks.map(describeCheck).join(", ")} (${figures})` };
}

/** "12 requests, 8.3% errors, p50 12ms, p99 48ms" */
export function describeFigures(f: ReleaseFigures): string {
  const parts = [`${f.requests} requests`, `${formatPercent(f.errorRate)} errors`];
  if (f.p50Ms !== undefined) parts.push(`p50 ${Math.round(f.p50Ms)}ms`);
  if (f.p99Ms !== undefined) parts.push(`p99 ${Math.round(f.p99Ms)}ms`);
  return parts.join(", ");
}

/** "error rate 5% ≥ 1%", "p99 92ms < 60ms" */
export function describeCheck(c: AnalysisCheck): string {
  const show = (v: number | undefined) =>
    v === undefined ? "n/a" : c.figure === "errorRate" ? formatPercent(v) : `${Math.round(v)}ms`;
  const name = c.figure === "errorRate" ? "error rate" : c.figure;
  if (c.limit === undefined) return `${name} ${show(c.canary)} (no baseline to compare)`;
  return `${name} ${show(c.canary)} ${c.passed ? "<" : "≥"} ${show(c.limit)}`;
}

function formatPercent(fraction: number): string {
  return `${Math.round(fraction * 1000) / 10}%`;
}

function round(n: number): number {
  return Math.round(n * 10_000) / 10_000;
}

/** Instances of the new release a canary step runs: its share of the service's count, at least one (none of none). */
export function canaryInstances(weight: number, instances: number): number {
  if (instances <= 0) return 0;
  return Math.max(1, Math.min(instances, Math.ceil((instances * weight) / 100)));
}

/**
 * The preview host of a blue/green release: `v<release>.<app>.localhost`
 * for the `web` service, `v<release>-<service>.<app>.localhost` for others.
 */
export function previewHost(app: string, service: string, release: number): string {
  return service === "web" ? `v${release}.${app}.localhost` : `v${release}-${service}.${app}.localhost`;
}

/** A duration in milliseconds, seconds, minutes or hours: `500ms`, `30s`, `2m`, `1h`. */
export const DURATION_PATTERN = "^[0-9]{1,6}(ms|s|m|h)$";
/** DURATION_PATTERN compiled once. */
export const DURATION = new RegExp(DURATION_PATTERN);
export const DURATION_HELP = "a duration like 30s, 2m or 1h (or a number of seconds)";

/** `30s`, `2m`, `1h`, `500ms` or a number of seconds → ms, within [min, max]; undefined when it is none of those. */
export function parseDuration(value: string | number, minMs: number, maxMs: number): number | undefined {
  let ms: number;
  if (typeof value === "number") ms = value * 1000;
  else {
    const m = DURATION.exec(value.trim());
    if (!m) return undefined;
    const unit = m[1] as "ms" | "s" | "m" | "h";
    ms = Number(value.trim().slice(0, -unit.length)) * { ms: 1, s: 1000, m: 60_000, h: 3600_000 }[unit];
  }
  return Number.isFinite(ms) && ms >= minMs && ms <= maxMs ? Math.round(ms) : undefined;
}

/**
 * A threshold as herd.yaml writes it: `< 1%` (error rate), `< 250ms` or
 * `< 0.5s` (latency), `< 1.2x baseline` (either). Returns the threshold, or
 * the reason it is not one.
 */
export function parseThreshold(text: string, figure: "errorRate" | "latency"): Threshold | string {
  const m = /^<\s*([0-9]+(?:\.[0-9]+)?)\s*(%|ms|s|x\s*baseline)$/.exec(text.trim());
  const forms =
    figure === "errorRate" ? "`< 1%` or `< 2x baseline`" : "`< 250ms`, `< 0.5s` or `< 1.2x baseline`";
  if (!m) return `must be ${forms}; got ${JSON.stringify(text)}`;
  const n = Number(m[1]);
  const unit = m[2].replace(/\s+/g, "");
  if (unit === "xbaseline") {
    if (n < 1) return `a factor of the baseline must be at least 1; got ${n}`;
    return { belowBaseline: n };
  }
  if (figure === "errorRate") {
    if (unit !== "%") return `must be ${forms}; got ${JSON.stringify(text)}`;
    if (n > 100) return `a percentage must be at most 100; got ${n}`;
    return { below: n / 100 };
  }
  if (unit === "%") return `must be ${forms}; got ${JSON.stringify(text)}`;
  return { below: unit === "s" ? n * 1000 : n };
}

/** `{below: 0.01}` → "< 1%", `{belowBaseline: 1.2}` → "< 1.2x baseline". */
export function formatThreshold(t: Threshold, figure: "errorRate" | "latency"): string {
  if ("belowBaseline" in t) return `< ${t.belowBaseline}x baseline`;
  return figure === "errorRate" ? `< ${Math.round(t.below * 10_000) / 100}%` : `< ${t.below}ms`;
}

/** 60000 → "1m", 90000 → "90s", 1500 → "1.5s". */
export function formatDuration(ms: number): string {
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${Math.round(ms / 100) / 10}s`;
}
