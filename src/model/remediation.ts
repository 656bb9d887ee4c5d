/**
 * The remediation engine's policy per app (an API object, kind `remediation`,
 * key `<tenant>/<app>`): its rules, dry-run and pause switches, budget, and
 * the decisions it took (with their evidence and outcome). The engine lives in
 * controllers/remediation/; this is the wire contract the API and CLI share.
 */

import { type Static, Type as T } from "@sinclair/typebox";

/** What a rule watches. `alert`: an alert rule (herd alerts) firing for the app. */
export const SYMPTOMS = ["error-rate", "latency", "saturation", "crash-loop", "alert"] as const;
export type Symptom = (typeof SYMPTOMS)[number];

/** What a rule may do; the engine picks one (or scale-out + throttle) from the evidence. */
export const ACTIONS = [
  "rollback",
  "scale-out",
  "throttle",
  "replace",
  "restart",
  "degrade",
  "cordon",
] as const;
export type Action = (typeof ACTIONS)[number];

const Name = T.String({
  pattern: "^[a-z][a-z0-9-]{0,39}$",
  description: "lowercase letters, digits, dashes",
});

export const RemediationRuleSchema = T.Object(
  {
    name: Name,
    symptom: T.Union(
      SYMPTOMS.map((s) => T.Literal(s)),
      { description: SYMPTOMS.join(", ") },
    ),
    /** For symptom alert: the alert rule's name (its `alertname`). */
    alert: T.Optional(
      T.String({ minLength: 1, maxLength: 100, description: "symptom alert: the alert rule's name" }),
    ),
    /** Only this service of the app (absent: every service). */
    service: T.Optional(Name),
    threshold: T.Optional(
      T.Number({
        minimum: 0,
        description:
          "error-rate: share of failed requests (0.1); latency: p99 ms (1000); saturation: in-flight per instance (8); crash-loop: consecutive crashes (3)",
      }),
    ),
    windowS: T.Optional(T.Integer({ minimum: 2, maximum: 3600, description: "seconds the figures cover" })),
    actions: T.Array(
      T.Union(
        ACTIONS.map((a) => T.Literal(a)),
        { description: ACTIONS.join(", ") },
      ),
      { minItems: 1, uniqueItems: true },
    ),
    dryRun: T.Optional(T.Boolean({ description: "decide and record, change nothing" })),
    cooldownS: T.Optional(
      T.Integer({ minimum: 0, maximum: 86400, description: "per action and service (default 120)" }),
    ),
  },
  { additionalProperties: false },
);
export type RemediationRule = Static<typeof RemediationRuleSchema>;

/** The body of `PUT /apps/:app/remediation`: every field optional; absent ones keep their value. */
export const RemediationBodySchema = T.Object(
  {
    rules: T.Optional(T.Array(RemediationRuleSchema, { maxItems: 50 })),
    builtIn: T.Optional(T.Literal(true, { description: "true: back to the built-in rules (drops `rules`)" })),
    dryRun: T.Optional(T.Boolean({ description: "every rule decides but changes nothing" })),
    paused: T.Optional(T.Boolean()),
    budgetPerHour: T.Optional(
      T.Integer({ minimum: 0, maximum: 1000, description: "actions per hour (default 6)" }),
    ),
    releaseWindowS: T.Optional(
      T.Integer({
        minimum: 10,
        maximum: 86400,
        description: "a release this recent may be rolled back (default 600)",
      }),
    ),
    outcomeAfterS: T.Optional(
      T.Integer({
        minimum: 5,
        maximum: 3600,
        description: "when a decision's outcome is checked (default 60)",
      }),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type RemediationBody = Static<typeof RemediationBodySchema>;

/** One decision, as kept on the policy (the last 50) and recorded as a `Remediation` event. */
export interface RemediationDecision {
  id: string;
  /** ISO time. */
  at: string;
  rule: string;
  symptom: Symptom;
  service: string;
  /** What was done (or would have been, in dry-run); `none` when no allowed action fits the evidence. */
  action: Action | "none";
  /** What it was done to: a release (`v2 → v1`), a count (`2 → 4`), an instance id, services, a node. */
  target: string;
  /** Why this action: the evidence in words. */
  reason: string;
  /** The figures and the instances, releases or traces that showed it, one line each. */
  evidence: string[];
  dryRun: boolean;
  /** What happened when it was applied: `applied`, or the error. */
  applied?: string;
  /** When the outcome is due (ISO), then the outcome itself. */
  checkAt?: string;
  outcome?: "cleared" | "persists";
}

/** A throttle in force: a low-criticality service's concurrency lowered while another's capacity comes. */
export interface Throttle {
  service: string;
  /** For whose capacity (the scaled service) it waits. */
  for: string;
  /** The override there was before (absent field: none), restored afterwards. */
  previous: { concurrency?: number | null };
  since: string;
}

/** A degrade in force: the service's routes with a fallback answer it while its calls to `dependencies` fail. */
export interface Degrade {
  service: string;
  /** The services its calls to failed (spans), which must answer again before the routes come back. */
  dependencies: string[];
  since: string;
}

/** The stored object. */
export interface RemediationPolicy {
  tenant: string;
  app: string;
  /** Absent: the built-in rules. */
  rules?: RemediationRule[];
  dryRun: boolean;
  paused: boolean;
  budgetPerHour?: number;
  releaseWindowS?: number;
  outcomeAfterS?: number;
  /** Newest last; at most 50. */
  decisions: RemediationDecision[];
  throttles: Throttle[];
  /** Services switched to their routes' fallbacks (absent: none). */
  degraded?: Degrade[];
  /** When the app was last resumed (ISO): figures from before it are not acted on. */
  resumedAt?: string;
  updatedAt: string;
}

export const remediationKey = (tenant: string, app: string): string => `${tenant}/${app}`;

export const DEFAULT_BUDGET_PER_HOUR = 6;
export const DEFAULT_RELEASE_WINDOW_S = 600;
export const DEFAULT_OUTCOME_AFTER_S = 60;
export const DEFAULT_COOLDOWN_S = 120;
export const KEEP_DECISIONS = 50;

/**
 * The rules an app has when it sets none: on, not dry-run. Each action they
 * allow only fires on evidence that names a cause (a recent release, one bad
 * instance, one bad node, rising load), so the defaults act where a person
 * would do the same thing; the budget caps the rest (docs/remediation.md).
 */
export const BUILT_IN_RULES: readonly RemediationRule[] = [
  {
    name: "errors",
    symptom: "error-rate",
    threshold: 0.1,
    windowS: 10,
    actions: ["rollback", "replace", "restart", "cordon", "degrade"],
  },
  {
    name: "slow",
    symptom: "latency",
    threshold: 1000,
    windowS: 30,
    actions: ["rollback", "replace", "restart", "scale-out", "throttle"],
  },
  { name: "saturated", symptom: "saturation", threshold: 8, windowS: 10, actions: ["scale-out", "throttle"] },
  { name: "crash-loop", symptom: "crash-loop", threshold: 3, actions: ["rollback", "cordon"] },
];

/** The policy an app has before anyone set one. */
export function defaultPolicy(tenant: string, app: string, now: string): RemediationPolicy {
  return { tenant, app, dryRun: false, paused: false, decisions: [], throttles: [], updatedAt: now };
}
