/**
 * Binary operators: arithmetic (+ - * / % ^ atan2), comparisons (filtering,
 * or 0/1 with bool), set operators (and, or, unless), between scalars and
 * vectors; vector matching one-to-one, on(…)/ignoring(…), and many-to-one /
 * one-to-many with group_left(…)/group_right(…), as Prometheus 2.x.
 */

import { type Labels, labelsKey, NAME } from "../tsdb/labels.ts";
import { evaluate } from "./engine.ts";
import { type Expr, isComparison, type Matching } from "./parser.ts";
import { dropName, type Env, groupLabels, keyOf, QueryError, type Sample, type Value } from "./values.ts";

export function arith(op: string, a: number, b: number): number {
  switch (op) {
    case "+":
      return a + b;
    case "-":
      return a - b;
    case "*":
      return a * b;
    case "/":
      return a / b;
    case "%":
      return a % b;
    case "^":
      return a ** b;
    case "atan2":
      return Math.atan2(a, b);
    case "==":
      return a === b ? 1 : 0;
    case "!=":
      return a !== b ? 1 : 0;
    case "<":
      return a < b ? 1 : 0;
    case "<=":
      return a <= b ? 1 : 0;
    case ">":
      return a > b ? 1 : 0;
    case ">=":
      return a >= b ? 1 : 0;
  }
  throw new QueryError(`unknown operator ${op}`);
}

/** The operators whose results lose the metric name (atan2 keeps it, as in Prometheus 2.x). */
const DROPS_NAME = new Set(["+", "-", "*", "/", "%", "^"]);

/** The labels two samples are matched on. */
function matchKey(labels: Labels, matching: Matching | undefined): string {
  if (!matching) return keyOf(dropName(labels));
  return labelsKey(groupLabels(labels, matching.labels, !matching.on));
}

type Binary = Extract<Expr, { type: "binary" }>;

export function binary(e: Binary, t: number, env: Env): Value {
  const { op } = e;
  const cmp = isComparison(op);
  const l = evaluate(e.lhs, t, env);
  const r = evaluate(e.rhs, t, env);
  if (op === "and" || op === "or" || op === "unless") {
    if (l.type !== "vector" || r.type !== "vector")
      throw new QueryError(`${op} needs instant vectors on both sides`);
    return { type: "vector", samples: setOperation(op, l.samples, r.samples, e.matching) };
  }
  if (l.type === "scalar" && r.type === "scalar") {
    if (cmp && !e.bool) throw new QueryError(`comparisons between scalars need the bool modifier`);
    return { type: "scalar", value: arith(op, l.value, r.value) };
  }
  if (l.type === "vector" && r.type === "scalar") return vectorScalar(l.samples, r.value, op, false, e.bool);
  if (l.type === "scalar" && r.type === "vector") return vectorScalar(r.samples, l.value, op, true, e.bool);
  if (l.type === "vector" && r.type === "vector") {
    return { type: "vector", samples: vectorVector(e, l.samples, r.samples) };
  }
  throw new QueryError(`operator ${op} does not apply to ${l.type} and ${r.type}`);
}

function setOperation(op: string, left: Sample[], right: Sample[], matching: Matching | undefined): Sample[] {
  const rightKeys = new Set(right.map((s) => matchKey(s.labels, matching)));
  if (op === "and") return left.filter((s) => rightKeys.has(matchKey(s.labels, matching)));
  if (op === "unless") return left.filter((s) => !rightKeys.has(matchKey(s.labels, matching)));
  const leftKeys = new Set(left.map((s) => matchKey(s.labels, matching)));
  return [...left, ...right.filter((s) => !leftKeys.has(matchKey(s.labels, matching)))];
}

/** A result's labels (Prometheus' resultMetric): `many` is the sample of the "many" side (the left one when one-to-one). */
function resultLabels(many: Labels, one: Labels, op: string, m: Matching | undefined): Labels {
  const arithmetic = DROPS_NAME.has(op);
  if (!m) return arithmetic ? dropName(many) : many;
  let out: Labels;
  if (!m.card) {
    out = groupLabels(many, m.labels, !m.on);
    // ignoring(…) keeps the metric name for comparisons (groupLabels drops it).
    if (!m.on && !arithmetic && many[NAME] !== undefined) out = { [NAME]: many[NAME], ...out };
  } else {
    out = arithmetic ? { ...dropName(many) } : { ...many };
  }
  for (const name of m.include ?? []) {
    const v = one[name];
    if (v !== undefined && v !== "") out[name] = v;
    else delete out[name];
  }
  return out;
}

function vectorVector(e: Binary, left: Sample[], right: Sample[]): Sample[] {
  const { op, matching } = e;
  const cmp = isComparison(op);
  // The "one" side is indexed; the "many" side is walked (the left one unless group_right).
  const swap = matching?.card === "right";
  const [many, one] = swap ? [right, left] : [left, right];
  const side = swap ? "left" : "right";
  const ones = new Map<string, Sample>();
  for (const s of one) {
    const key = matchKey(s.labels, matching);
    if (ones.has(key)) {
      throw new QueryError(
        matching?.card
          ? `found duplicate series for the match group ${key || "{}"} on the ${side} hand-side of the operation: many-to-many matching not allowed: matching labels must be unique on one side`
          : `found duplicate series for the match group ${key || "{}"} on the right hand-side of the operation: many-to-many matching not allowed: matching labels must be unique on one side`,
      );
    }
    ones.set(key, s);
  }
  const matched = new Map<string, Set<string> | null>();
  const out: Sample[] = [];
  for (const s of many) {
    const key = matchKey(s.labels, matching);
    const other = ones.get(key);
    if (!other) continue;
    const [a, b] = swap ? [other.value, s.value] : [s.value, other.value];
    let value = arith(op, a, b);
    if (cmp) {
      if (!e.bool && value !== 1) continue;
      // A filtering comparison keeps the left side's value (the "many" side's in one-to-many).
      value = e.bool ? value : s.value;
      if (!e.bool && swap) value = other.value;
    }
    let labels = resultLabels(s.labels, other.labels, op, matching);
    if (e.bool) labels = dropName(labels);
    if (!matching?.card) {
      if (matched.has(key)) {
        throw new QueryError(
          "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
        );
      }
      matched.set(key, null);
    } else {
      let inserted = matched.get(key);
      if (!inserted) {
        inserted = new Set();
        matched.set(key, inserted);
      }
      const sig = labelsKey(labels);
      if (inserted.has(sig)) {
        throw new QueryError("multiple matches for labels: grouping labels must ensure unique matches");
      }
      inserted.add(sig);
    }
    out.push({ labels, value });
  }
  return out;
}

function vectorScalar(
  samples: Sample[],
  scalar: number,
  op: string,
  scalarLeft: boolean,
  bool: boolean,
): Value {
  const cmp = isComparison(op);
  const out: Sample[] = [];
  for (const s of samples) {
    const v = scalarLeft ? arith(op, scalar, s.value) : arith(op, s.value, scalar);
    if (cmp && !bool) {
      if (v === 1) out.push(s);
      continue;
    }
    out.push({ labels: DROPS_NAME.has(op) || bool ? dropName(s.labels) : s.labels, value: v });
  }
  return { type: "vector", samples: out };
}
