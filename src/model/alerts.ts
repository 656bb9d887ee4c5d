/**
 * Alerts as configuration: rules (API objects and herd.yaml's `alerts:`),
 * webhook receivers and silences, their schemas and the checks TypeBox
 * cannot make (the PromQL expression parses, durations read).
 *
 * Keys: alert_rule `<tenant>/<name>`, alert_receiver `<tenant>/<name>`,
 * alert_silence `<tenant>/<id>`.
 */

import { type Static, Type as T } from "@sinclair/typebox";
import type { FieldProblem } from "../common/errors.ts";
import { type Expr, PromqlError, parseDuration, parsePromql } from "../observe/promql/parser.ts";
import type { SecretPin } from "./objects.ts";

export const SEVERITIES = ["info", "warning", "critical"] as const;
export type Severity = (typeof SEVERITIES)[number];
export const COMPARISON_OPS = [">", ">=", "<", "<=", "==", "!="] as const;

// additionalProperties: a key the pattern does not match is refused (TypeBox leaves it unchecked otherwise).
const LabelMap = T.Record(T.String({ pattern: "^[a-zA-Z_][a-zA-Z0-9_]*$" }), T.String({ maxLength: 1024 }), {
  additionalProperties: false,
  description: "label names are letters, digits and _",
});

/** One rule's fields (herd.yaml `alerts.<name>` and the body of PUT /alerts/rules/:name). */
export const AlertRuleBodySchema = T.Object(
  {
    expr: T.String({ minLength: 1, maxLength: 4096, description: "a PromQL instant query" }),
    op: T.Optional(
      T.Union(
        COMPARISON_OPS.map((o) => T.Literal(o)),
        { description: "with threshold: fire where `expr op threshold` holds" },
      ),
    ),
    threshold: T.Optional(T.Number({ description: "with op" })),
    for: T.Optional(
      T.String({
        pattern: "^(\\d+(ms|[smhdwy]))+$",
        description: "how long it must hold, e.g. 5m (default 0s)",
      }),
    ),
    severity: T.Optional(
      T.Union(
        SEVERITIES.map((s) => T.Literal(s)),
        { description: "info, warning (default) or critical" },
      ),
    ),
    labels: T.Optional(LabelMap),
    annotations: T.Optional(LabelMap),
    disabled: T.Optional(
      T.Boolean({ description: "true: not evaluated (turns off a default rule by name)" }),
    ),
  },
  { additionalProperties: false },
);
export type AlertRuleBody = Static<typeof AlertRuleBodySchema>;

/** herd.yaml's top-level `alerts:` map: rule name → rule. */
export const AlertsManifestSchema = T.Record(
  T.String({ pattern: "^[a-z][a-z0-9-]{0,62}$" }),
  AlertRuleBodySchema,
  {
    additionalProperties: false,
    description: "alert names are lowercase letters, digits and dashes, starting with a letter",
  },
);

/** A rule as evaluated, from any source. */
export interface AlertRule extends AlertRuleBody {
  name: string;
  /** Tenant of API and herd.yaml rules; absent for the built-in defaults (platform-wide). */
  tenant?: string;
  /** Set for rules deployed with an app's release (herd.yaml). */
  app?: string;
  source: "api" | "herd.yaml" | "default";
}

/** An API rule object as stored. */
export interface AlertRuleObject extends AlertRuleBody {
  tenant: string;
  name: string;
  createdAt: string;
  updatedAt: string;
}

export const ReceiverBodySchema = T.Object(
  {
    url: T.String({ pattern: "^https?://", maxLength: 2048, description: "an http(s) URL to POST to" }),
    headers: T.Optional(LabelMapLoose()),
    severities: T.Optional(
      T.Array(T.Union(SEVERITIES.map((s) => T.Literal(s))), {
        minItems: 1,
        uniqueItems: true,
        description: "only alerts of these severities (default: all)",
      }),
    ),
  },
  { additionalProperties: false },
);
export type ReceiverBody = Static<typeof ReceiverBodySchema>;

function LabelMapLoose() {
  return T.Record(T.String({ pattern: "^[A-Za-z0-9-]+$" }), T.String({ maxLength: 4096 }), {
    additionalProperties: false,
    description: "HTTP header names and values",
  });
}

/** A webhook receiver as stored: its headers' values are secrets (src/secrets/), referred to by name and version. */
export interface Receiver extends Omit<ReceiverBody, "headers"> {
  headers?: Record<string, SecretPin>;
  tenant: string;
  name: string;
  createdAt: string;
  updatedAt: string;
}

export const SilenceBodySchema = T.Object(
  {
    matchers: T.Array(T.String({ minLength: 3, maxLength: 1024 }), {
      minItems: 1,
      maxItems: 20,
      description: 'label matchers such as alertname="x", app=~"shop.*"',
    }),
    until: T.String({ minLength: 1, description: "end time (RFC 3339)" }),
    comment: T.Optional(T.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);
export type SilenceBody = Static<typeof SilenceBodySchema>;

/** One parsed label matcher. */
export interface SilenceMatcher {
  name: string;
  op: "=" | "!=" | "=~" | "!~";
  value: string;
}

/** A silence as stored. */
export interface Silence {
  tenant: string;
  id: string;
  matchers: SilenceMatcher[];
  startsAt: string;
  until: string;
  comment: string;
  createdAt: string;
}

/** `name="value"`, `name=~"re"`, `name!=value` → a matcher, or a message saying what is wrong. */
export function parseMatcher(text: string): SilenceMatcher | string {
  const m = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$/.exec(text);
  if (!m)
    return `${JSON.stringify(text)} is not a matcher (name="value", name!=value, name=~"regex", name!~"regex")`;
  let value = m[3] as string;
  if (/^".*"$/.test(value)) {
    try {
      value = JSON.parse(value) as string;
    } catch {
      return `${JSON.stringify(text)}: the quoted value is not valid`;
    }
  }
  const op = m[2] as SilenceMatcher["op"];
  if (op === "=~" || op === "!~") {
    try {
      new RegExp(`^(?:${value})$`);
    } catch (err) {
      return `${JSON.stringify(text)}: ${(err as Error).message}`;
    }
  }
  return { name: m[1] as string, op, value };
}

/** Whether every matcher holds for the labels (an absent label is ""; regexes are anchored). */
export function matchesAll(matchers: SilenceMatcher[], labels: Record<string, string>): boolean {
  return matchers.every((m) => {
    const v = labels[m.name] ?? "";
    switch (m.op) {
      case "=":
        return v === m.value;
      case "!=":
        return v !== m.value;
      case "=~":
        return anchored(m.value).test(v);
      default:
        return !anchored(m.value).test(v);
    }
  });
}

/** Compiled matcher regexes: silences are matched against every alert every round. */
const REGEX_CACHE = new Map<string, RegExp>();
function anchored(source: string): RegExp {
  let re = REGEX_CACHE.get(source);
  if (!re) {
    if (REGEX_CACHE.size > 1000) REGEX_CACHE.clear();
    re = new RegExp(`^(?:${source})$`);
    REGEX_CACHE.set(source, re);
  }
  return re;
}

/** The expression a rule evaluates: `expr`, or `(expr) op threshold`. */
export function ruleExpr(rule: Pick<AlertRuleBody, "expr" | "op" | "threshold">): Expr {
  const expr = parsePromql(rule.expr);
  if (rule.op === undefined || rule.threshold === undefined) return expr;
  return {
    type: "binary",
    op: rule.op,
    lhs: expr,
    rhs: { type: "number", value: rule.threshold },
    bool: false,
    pos: 0,
  };
}

/** `for` in milliseconds (0 when absent). */
export const forMs = (rule: Pick<AlertRuleBody, "for">): number =>
  rule.for === undefined ? 0 : (parseDuration(rule.for) ?? 0);

/**
 * What the schema cannot check: the expression parses and is an instant
 * vector or scalar query, op and threshold come together, `for` reads. `at`
 * prefixes the field names (e.g. `alerts.high-errors.`).
 */
export function ruleProblems(rule: AlertRuleBody, at = ""): FieldProblem[] {
  const problems: FieldProblem[] = [];
  try {
    const e = parsePromql(rule.expr);
    if (e.type === "selector" && e.rangeMs !== undefined)
      problems.push({ field: `${at}expr`, message: "is a range vector; an alert needs an instant query" });
    else if (e.type === "string") problems.push({ field: `${at}expr`, message: "is a string, not a query" });
  } catch (err) {
    if (!(err instanceof PromqlError)) throw err;
    problems.push({ field: `${at}expr`, message: err.message });
  }
  if ((rule.op === undefined) !== (rule.threshold === undefined))
    problems.push({
      field: `${at}${rule.op === undefined ? "op" : "threshold"}`,
      message: "op and threshold go together",
    });
  if (rule.for !== undefined && parseDuration(rule.for) === undefined)
    problems.push({ field: `${at}for`, message: `${JSON.stringify(rule.for)} is not a duration such as 5m` });
  // herd sets these on every alert: a rule's own would be silently overridden.
  for (const name of ["alertname", "severity"]) {
    if (rule.labels?.[name] !== undefined)
      problems.push({
        field: `${at}labels.${name}`,
        message: `is set by herd (${name === "alertname" ? "the rule's name" : "the rule's severity field"}); use another label`,
      });
  }
  return problems;
}

/** `{{ $labels.x }}` and `{{ $value }}` in an annotation; anything else in braces is left as it is. */
export function expandTemplate(text: string, labels: Record<string, string>, value: number): string {
  return text.replace(
    /\{\{\s*\$(labels\.([a-zA-Z_][a-zA-Z0-9_]*)|value)\s*\}\}/g,
    (_m, what: string, name?: string) =>
      what === "value" ? formatValue(value) : (labels[name as string] ?? ""),
  );
}

/** A value for people: up to 4 significant digits. */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
}
