/**
 * herd.yaml's `rollout:` of a service: its schema, the checks beyond the
 * schema (every problem names its field) and the normalised RolloutSpec
 * (model/progressive.ts). docs/releases.md.
 *
 *   rollout:
 *     deadline: 90s
 *     strategy: canary                # rolling (default) | canary | bluegreen
 *     steps: [{ weight: 5, pause: 1m }, { weight: 25, pause: 2m }, { weight: 50 }]
 *     sticky: ip                      # or { header: x-user } / { cookie: session }
 *     analysis: { interval: 10s, minRequests: 20, errorRate: "< 1%", p99: "< 1.2x baseline" }
 *     promote: 30s                    # bluegreen: promote by itself (default: herd rollout promote)
 */

import { type Static, Type as T } from "@sinclair/typebox";
import type { FieldProblem } from "../common/errors.ts";
import {
  type AnalysisSpec,
  DEFAULT_ANALYSIS,
  DEFAULT_STEPS,
  DURATION_HELP,
  parseDuration,
  parseThreshold,
  type RolloutSpec,
  type Threshold,
} from "./progressive.ts";
import { DEADLINE_HELP, parseDeadline } from "./rollout.ts";
import type { StickySpec } from "./service-spec.ts";

const Duration = T.Union([T.Number({ minimum: 0 }), T.String({ maxLength: 20 })], {
  description: DURATION_HELP,
});

export const RolloutManifestSchema = T.Object(
  {
    deadline: T.Optional(
      // Its form and range are checked by rolloutProblems, which says what is accepted.
      T.Union([T.Number(), T.String()], {
        description: `${DEADLINE_HELP}; a rollout without progress for this long fails its deploy (default 120s)`,
      }),
    ),
    strategy: T.Optional(
      T.Union([T.Literal("rolling"), T.Literal("canary"), T.Literal("bluegreen")], {
        description:
          "rolling (default): new instances replace old ones; canary: growing shares of requests with analysis; bluegreen: the new release in full beside the old, switched at once",
      }),
    ),
    steps: T.Optional(
      T.Array(
        T.Object(
          {
            weight: T.Number({
              minimum: 1,
              maximum: 100,
              description: "percent of requests to the new release",
            }),
            pause: T.Optional(Duration),
          },
          { additionalProperties: false },
        ),
        { minItems: 1, maxItems: 20 },
      ),
    ),
    sticky: T.Optional(
      T.Union([
        T.Literal("ip"),
        T.Object({ header: T.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }) }, { additionalProperties: false }),
        T.Object(
          { cookie: T.String({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$" }) },
          { additionalProperties: false },
        ),
      ]),
    ),
    analysis: T.Optional(
      T.Object(
        {
          interval: T.Optional(Duration),
          minRequests: T.Optional(T.Integer({ minimum: 1, maximum: 1_000_000 })),
          errorRate: T.Optional(T.String({ maxLength: 40, description: '"< 1%" or "< 2x baseline"' })),
          p50: T.Optional(T.String({ maxLength: 40, description: '"< 250ms" or "< 1.2x baseline"' })),
          p99: T.Optional(T.String({ maxLength: 40, description: '"< 500ms" or "< 1.2x baseline"' })),
        },
        { additionalProperties: false },
      ),
    ),
    promote: T.Optional(Duration),
  },
  { additionalProperties: false },
);

export type RolloutManifest = Static<typeof RolloutManifestSchema>;

const MAX_PAUSE_MS = 24 * 3600_000;

/** Problems of a service's `rollout:` beyond its schema; `at` is `services.<name>.rollout.`. */
export function rolloutProblems(r: RolloutManifest, at: string, mode: "cattle" | "pet"): FieldProblem[] {
  const problems: FieldProblem[] = [];
  if (r.deadline !== undefined && parseDeadline(r.deadline) === undefined)
    problems.push({ field: `${at}deadline`, message: `must be ${DEADLINE_HELP}; got ${r.deadline}` });
  const strategy = r.strategy ?? "rolling";
  const only = (field: keyof RolloutManifest, who: string) => {
    if (r[field] !== undefined)
      problems.push({ field: `${at}${field}`, message: `only for strategy ${who} (this is ${strategy})` });
  };
  if (strategy !== "canary") {
    only("steps", "canary");
    only("analysis", "canary");
    only("sticky", "canary");
  }
  if (strategy !== "bluegreen") only("promote", "bluegreen");
  if (strategy !== "rolling" && mode === "pet")
    problems.push({
      field: `${at}strategy`,
      message: `${strategy} runs two releases side by side; pets are updated in place (use rolling)`,
    });
  (r.steps ?? []).forEach((s, n) => {
    if (s.pause !== undefined && parseDuration(s.pause, 0, MAX_PAUSE_MS) === undefined)
      problems.push({
        field: `${at}steps.${n}.pause`,
        message: `must be ${DURATION_HELP}, at most 24h; got ${s.pause}`,
      });
    const before = r.steps?.[n - 1];
    if (before && s.weight <= before.weight)
      problems.push({
        field: `${at}steps.${n}.weight`,
        message: `must be more than the step before (${before.weight}); got ${s.weight}`,
      });
  });
  const a = r.analysis;
  if (a?.interval !== undefined && parseDuration(a.interval, 1000, 3600_000) === undefined)
    problems.push({
      field: `${at}analysis.interval`,
      message: `must be ${DURATION_HELP}, from 1s to 1h; got ${a.interval}`,
    });
  for (const figure of ["errorRate", "p50", "p99"] as const) {
    const text = a?.[figure];
    if (text === undefined) continue;
    const t = parseThreshold(text, figure === "errorRate" ? "errorRate" : "latency");
    if (typeof t === "string") problems.push({ field: `${at}analysis.${figure}`, message: t });
  }
  if (r.promote !== undefined && parseDuration(r.promote, 0, MAX_PAUSE_MS) === undefined)
    problems.push({
      field: `${at}promote`,
      message: `must be ${DURATION_HELP}, at most 24h; got ${r.promote}`,
    });
  return problems;
}

/** The normalised spec of a `rollout:` that passed rolloutProblems; undefined when it sets nothing. */
export function normalizeRollout(r: RolloutManifest | undefined): RolloutSpec | undefined {
  if (r === undefined) return undefined;
  const spec: RolloutSpec = {};
  if (r.deadline !== undefined) spec.deadlineMs = parseDeadline(r.deadline);
  if (r.strategy === "canary") {
    spec.strategy = "canary";
    spec.steps = r.steps
      ? r.steps.map((s) => ({
          weight: s.weight,
          pauseMs: s.pause === undefined ? 0 : (parseDuration(s.pause, 0, MAX_PAUSE_MS) ?? 0),
        }))
      : DEFAULT_STEPS;
    spec.analysis = analysisSpec(r.analysis);
    if (r.sticky !== undefined) spec.sticky = stickySpec(r.sticky);
  } else if (r.strategy === "bluegreen") {
    spec.strategy = "bluegreen";
    if (r.promote !== undefined) spec.autoPromoteMs = parseDuration(r.promote, 0, MAX_PAUSE_MS);
  }
  return Object.keys(spec).length > 0 ? spec : undefined;
}

function analysisSpec(a: RolloutManifest["analysis"]): AnalysisSpec {
  if (a === undefined) return DEFAULT_ANALYSIS;
  const threshold = (text: string | undefined, figure: "errorRate" | "latency"): Threshold | undefined => {
    if (text === undefined) return undefined;
    const t = parseThreshold(text, figure);
    return typeof t === "string" ? undefined : t;
  };
  // Named bounds replace the defaults; with none named, the defaults hold.
  const named = a.errorRate !== undefined || a.p50 !== undefined || a.p99 !== undefined;
  const errorRate = named ? threshold(a.errorRate, "errorRate") : DEFAULT_ANALYSIS.errorRate;
  const p50 = threshold(a.p50, "latency");
  const p99 = named ? threshold(a.p99, "latency") : DEFAULT_ANALYSIS.p99;
  return {
    intervalMs:
      a.interval === undefined
        ? DEFAULT_ANALYSIS.intervalMs
        : (parseDuration(a.interval, 1000, 3600_000) ?? DEFAULT_ANALYSIS.intervalMs),
    minRequests: a.minRequests ?? DEFAULT_ANALYSIS.minRequests,
    ...(errorRate ? { errorRate } : {}),
    ...(p50 ? { p50 } : {}),
    ...(p99 ? { p99 } : {}),
  };
}

function stickySpec(key: NonNullable<RolloutManifest["sticky"]>): StickySpec {
  if (key === "ip") return { on: "ip" };
  return "header" in key
    ? { on: "header", name: key.header.toLowerCase() }
    : { on: "cookie", name: key.cookie };
}
