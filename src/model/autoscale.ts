/**
 * herd.yaml's `autoscale:`: its schema, the checks TypeBox cannot make
 * (min ≤ max, exactly one target, durations read, the query parses), and the
 * normalised AutoscaleSpec (manifest.ts) a release stores.
 *
 *   autoscale:
 *     min: 1
 *     max: 10
 *     target: { rps: 50 }          # or { concurrency: 10 } | { cpu: 70% } | { p99: 300ms } | { query: "…", value: 5 }
 *     scaleDownDelay: 5m           # durations: 300ms, 6s, 5m, 1h, or a number of seconds
 */

import { type Static, Type as T } from "@sinclair/typebox";
import type { FieldProblem } from "../common/errors.ts";
import { PromqlError, parsePromql } from "../observe/promql/parser.ts";
import type { AutoscaleMetric, AutoscaleSpec } from "./manifest.ts";

export const AUTOSCALE_DURATION_HELP = "a duration like 300ms, 6s, 5m or 1h, or a number of seconds";

const Duration = T.Union([T.Number({ minimum: 0 }), T.String()], { description: AUTOSCALE_DURATION_HELP });

/** The figures a target may name, in the order the docs list them. */
export const AUTOSCALE_METRICS = ["rps", "concurrency", "cpu", "p99", "query"] as const;

export const AutoscaleManifestSchema = T.Object(
  {
    min: T.Optional(
      T.Integer({
        minimum: 0,
        maximum: 1000,
        description: "fewest instances (default 1; 0 scales to zero when idle)",
      }),
    ),
    max: T.Integer({ minimum: 1, maximum: 1000, description: "most instances, at most 1000" }),
    target: T.Object(
      {
        rps: T.Optional(T.Number({ exclusiveMinimum: 0, description: "requests per second per instance" })),
        concurrency: T.Optional(
          T.Number({ exclusiveMinimum: 0, description: "requests in flight per instance" }),
        ),
        cpu: T.Optional(
          T.Union([T.Number(), T.String()], {
            description: "CPU share per instance: 70% (or 70) of its CPU",
          }),
        ),
        p99: T.Optional(Duration),
        query: T.Optional(
          T.String({ minLength: 1, maxLength: 4096, description: "a PromQL expression (with value)" }),
        ),
        value: T.Optional(
          T.Number({ exclusiveMinimum: 0, description: "with query: the query's value one instance takes" }),
        ),
      },
      {
        additionalProperties: false,
        description: "exactly one of rps, concurrency, cpu, p99, or query with value",
      },
    ),
    scaleDownDelay: T.Optional(Duration),
    maxStep: T.Optional(
      T.Integer({ minimum: 1, maximum: 1000, description: "most instances one decision adds or removes" }),
    ),
    idleAfter: T.Optional(Duration),
    stableWindow: T.Optional(Duration),
    panicWindow: T.Optional(Duration),
  },
  { additionalProperties: false },
);

export type AutoscaleManifest = Static<typeof AutoscaleManifestSchema>;

/** Defaults of the optional fields, as Knative and the HPA have them. */
export const AUTOSCALE_DEFAULTS = {
  min: 1,
  scaleDownDelayMs: 5 * 60_000,
  idleAfterMs: 5 * 60_000,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
} as const;

/** A decision may add up to this many times the current count (Knative's max scale-up rate 1000, the HPA's 100 % per 15 s). */
export const DEFAULT_MAX_STEP = 1000;

/** `300ms`, `6s`, `5m`, `1h`, or a number of seconds → ms; undefined when it is none of those. */
export function parseAutoscaleDuration(value: string | number): number | undefined {
  if (typeof value === "number")
    return Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : undefined;
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/.exec(value.trim());
  if (!m) return undefined;
  return Math.round(
    Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3600_000 }[m[2] as "ms" | "s" | "m" | "h"],
  );
}

/** `70%`, `70` or `"70"` → 0.7; undefined outside (0, 100] %. */
export function parseCpuShare(value: string | number): number | undefined {
  const text = typeof value === "number" ? String(value) : value.trim().replace(/%$/, "");
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text)) return undefined;
  const percent = Number(text);
  return percent > 0 && percent <= 100 ? percent / 100 : undefined;
}

/** Ranges of the durations, ms. */
const RANGES: Record<"scaleDownDelay" | "idleAfter" | "stableWindow" | "panicWindow", [number, number]> = {
  scaleDownDelay: [0, 24 * 3600_000],
  idleAfter: [1000, 7 * 24 * 3600_000],
  stableWindow: [1000, 3600_000],
  panicWindow: [1000, 3600_000],
};

/**
 * What the schema cannot check, each naming its field under `at` (e.g.
 * `services.web.autoscale.`): min ≤ max, exactly one target, durations and
 * the CPU share read, the panic window no longer than the stable one, the
 * query parses and comes with its value.
 */
export function autoscaleProblems(a: AutoscaleManifest, at: string): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const min = a.min ?? AUTOSCALE_DEFAULTS.min;
  if (min > a.max) {
    const field = `${at}${a.min === undefined ? "max" : "min"}`;
    problems.push({ field, message: `min (${min}) must not be more than max (${a.max})` });
  }
  const named = AUTOSCALE_METRICS.filter((m) => a.target[m] !== undefined);
  if (named.length !== 1) {
    problems.push({
      field: `${at}target`,
      message:
        named.length === 0
          ? "needs one of rps, concurrency, cpu, p99, or query with value"
          : `names ${named.join(" and ")}: exactly one target, please`,
    });
  }
  const t = a.target;
  if (t.cpu !== undefined && parseCpuShare(t.cpu) === undefined)
    problems.push({
      field: `${at}target.cpu`,
      message: `must be a share like 70% (above 0, at most 100%); got ${t.cpu}`,
    });
  if (t.p99 !== undefined) {
    const ms = parseAutoscaleDuration(t.p99);
    if (ms === undefined || ms < 1)
      problems.push({
        field: `${at}target.p99`,
        message: `must be ${AUTOSCALE_DURATION_HELP}, above 0; got ${t.p99}`,
      });
  }
  if (t.query !== undefined) {
    if (t.value === undefined)
      problems.push({
        field: `${at}target.value`,
        message: "required with query: the query's value one instance takes",
      });
    try {
      parsePromql(t.query);
    } catch (err) {
      if (!(err instanceof PromqlError)) throw err;
      problems.push({ field: `${at}target.query`, message: `does not parse: ${err.message}` });
    }
  } else if (t.value !== undefined) {
    problems.push({
      field: `${at}target.value`,
      message: "goes with query only (rps, concurrency, cpu and p99 carry their own)",
    });
  }
  for (const [name, [lo, hi]] of Object.entries(RANGES) as [keyof typeof RANGES, [number, number]][]) {
    const value = a[name];
    if (value === undefined) continue;
    const ms = parseAutoscaleDuration(value);
    if (ms === undefined || ms < lo || ms > hi) {
      problems.push({
        field: `${at}${name}`,
        message: `must be ${AUTOSCALE_DURATION_HELP}, from ${lo / 1000}s to ${hi / 3600_000}h; got ${value}`,
      });
    }
  }
  const stable =
    a.stableWindow === undefined ? AUTOSCALE_DEFAULTS.stableWindowMs : parseAutoscaleDuration(a.stableWindow);
  const panic =
    a.panicWindow === undefined ? AUTOSCALE_DEFAULTS.panicWindowMs : parseAutoscaleDuration(a.panicWindow);
  if (
    stable !== undefined &&
    panic !== undefined &&
    panic > stable &&
    !problems.some((p) => p.field.endsWith("Window"))
  ) {
    problems.push({
      field: `${at}${a.panicWindow === undefined ? "stableWindow" : "panicWindow"}`,
      message: `the panic window (${panic / 1000}s) must not be longer than the stable window (${stable / 1000}s)`,
    });
  }
  return problems;
}

/** The normalised spec; `a` passed autoscaleProblems. */
export function normalizeAutoscale(a: AutoscaleManifest): AutoscaleSpec {
  const ms = (v: string | number | undefined, fallback: number) =>
    v === undefined ? fallback : (parseAutoscaleDuration(v) ?? fallback);
  const t = a.target;
  const metric = AUTOSCALE_METRICS.find((m) => t[m] !== undefined) as AutoscaleMetric;
  const value =
    metric === "rps"
      ? t.rps!
      : metric === "concurrency"
        ? t.concurrency!
        : metric === "cpu"
          ? parseCpuShare(t.cpu!)!
          : metric === "p99"
            ? parseAutoscaleDuration(t.p99!)!
            : t.value!;
  return {
    min: a.min ?? AUTOSCALE_DEFAULTS.min,
    max: a.max,
    target: { metric, value, ...(metric === "query" ? { query: t.query } : {}) },
    scaleDownDelayMs: ms(a.scaleDownDelay, AUTOSCALE_DEFAULTS.scaleDownDelayMs),
    maxStep: a.maxStep ?? DEFAULT_MAX_STEP,
    idleAfterMs: ms(a.idleAfter, AUTOSCALE_DEFAULTS.idleAfterMs),
    stableWindowMs: ms(a.stableWindow, AUTOSCALE_DEFAULTS.stableWindowMs),
    panicWindowMs: ms(a.panicWindow, AUTOSCALE_DEFAULTS.panicWindowMs),
  };
}
