/**
 * A canary's analysis per endpoint: where the app sends spans, the latency of
 * each route of the canary against the same route of the baseline, from
 * traces (observe/traces/endpoint-figures.ts). A release that is slower on one
 * route only — lost in the service-wide figures when that route is a small
 * share of the requests — fails here, naming the route.
 *
 * Pure: figures in, checks out. The bounds are the analysis's own `p50` and
 * `p99` (model/progressive.ts), applied route by route.
 */

import { type AnalysisSpec, LATENCY_SLACK_MS, type Threshold } from "./progressive.ts";

/** One route of one release over an analysis window. */
export interface EndpointFigures {
  route: string;
  release: number;
  requests: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
}

/** One latency check of one route. */
export interface EndpointCheck {
  route: string;
  figure: "p50" | "p99";
  canary: number;
  baseline: number;
  limit: number;
  passed: boolean;
  /** Spans behind each side's figure. */
  canaryRequests: number;
  baselineRequests: number;
}

/** A route is compared only when each side has at least this many spans in the window. */
export const ENDPOINT_MIN_REQUESTS = 10;
/** Checks kept on an analysis: the failed ones first. */
export const KEEP_ENDPOINT_CHECKS = 20;

/** Every route both releases served enough of, checked against the spec's latency bounds. */
export function judgeEndpoints(
  spec: AnalysisSpec,
  figures: readonly EndpointFigures[],
  canary: number,
  baseline: number,
): { checks: EndpointCheck[]; failed: EndpointCheck[] } {
  const checks: EndpointCheck[] = [];
  const base = new Map(figures.filter((f) => f.release === baseline).map((f) => [f.route, f]));
  for (const c of figures
    .filter((f) => f.release === canary)
    .sort((a, b) => a.route.localeCompare(b.route))) {
    const b = base.get(c.route);
    if (!b || c.requests < ENDPOINT_MIN_REQUESTS || b.requests < ENDPOINT_MIN_REQUESTS) continue;
    for (const [figure, threshold, cv, bv] of [
      ["p50", spec.p50, c.p50Ms, b.p50Ms],
      ["p99", spec.p99, c.p99Ms, b.p99Ms],
    ] as const) {
      if (threshold === undefined) continue;
      const limit = limitOf(threshold, bv);
      checks.push({
        route: c.route,
        figure,
        canary: round(cv),
        baseline: round(bv),
        limit: round(limit),
        passed: cv < limit,
        canaryRequests: c.requests,
        baselineRequests: b.requests,
      });
    }
  }
  const failed = checks.filter((c) => !c.passed);
  return { checks, failed };
}

/** "GET /search p99 310ms ≥ 96ms (baseline 80ms)" */
export function describeEndpointCheck(c: EndpointCheck): string {
  return `${c.route} ${c.figure} ${Math.round(c.canary)}ms ${c.passed ? "<" : "≥"} ${Math.round(c.limit)}ms (baseline ${Math.round(c.baseline)}ms)`;
}

function limitOf(t: Threshold, baseline: number): number {
  return "below" in t ? t.below : Math.max(baseline * t.belowBaseline, baseline + LATENCY_SLACK_MS);
}

const round = (n: number) => Math.round(n * 1000) / 1000;
