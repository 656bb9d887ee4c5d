/**
 * The PromQL parser (Prometheus 2.x's language): selectors with matchers,
 * ranges, offset and `@`; subqueries `expr[range:step]`; function calls;
 * aggregations with by/without; binary operators with bool, on/ignoring and
 * group_left/group_right; unary minus.
 *
 *   text ─► tokens ─► Expr (ast below) ─► engine.ts
 *
 * A problem is a PromqlError naming the position (1-based character) and what
 * was expected.
 */

import type { Matcher, MatchOp } from "../tsdb/labels.ts";
import { lex, PromqlError, parseDuration, type Token } from "./lexer.ts";

export { PromqlError, parseDuration } from "./lexer.ts";

/** An `@` time: ms since the epoch, or the query's start() / end(). */
export type At = number | "start" | "end";

/** How two vectors' samples pair up: on(…)/ignoring(…), and group_left/group_right(extra labels). */
export interface Matching {
  on: boolean;
  labels: string[];
  /** group_left: many on the left to one on the right; group_right the other way. */
  card?: "left" | "right";
  /** Labels copied from the "one" side (group_left(…) / group_right(…)). */
  include?: string[];
}

export type Expr =
  | { type: "number"; value: number }
  | { type: "string"; value: string }
  | { type: "selector"; matchers: Matcher[]; rangeMs?: number; offsetMs: number; at?: At; pos: number }
  | {
      type: "subquery";
      expr: Expr;
      rangeMs: number;
      /** Undefined: the query's step (a range query) or 1 minute (Prometheus' default evaluation interval). */
      stepMs?: number;
      offsetMs: number;
      at?: At;
      pos: number;
    }
  | { type: "call"; func: string; args: Expr[]; pos: number }
  | {
      type: "aggregate";
      op: string;
      param?: Expr;
      expr: Expr;
      grouping: string[];
      without: boolean;
      pos: number;
    }
  | {
      type: "binary";
      op: string;
      lhs: Expr;
      rhs: Expr;
      bool: boolean;
      matching?: Matching;
      pos: number;
    }
  | { type: "neg"; expr: Expr };

export const AGGREGATIONS = new Set([
  "sum",
  "avg",
  "min",
  "max",
  "count",
  "group",
  "stddev",
  "stdvar",
  "topk",
  "bottomk",
  "quantile",
  "count_values",
]);

/** Binary operators by precedence, lowest first; `^` is right-associative. */
const PRECEDENCE: string[][] = [
  ["or"],
  ["and", "unless"],
  ["==", "!=", "<=", "<", ">=", ">"],
  ["+", "-"],
  ["*", "/", "%", "atan2"],
  ["^"],
];
const POW_LEVEL = PRECEDENCE.length - 1;
const COMPARISONS = new Set(["==", "!=", "<=", "<", ">=", ">"]);
export const isComparison = (op: string): boolean => COMPARISONS.has(op);

class Parser {
  readonly #t: Token[];
  #i = 0;
  constructor(tokens: Token[]) {
    this.#t = tokens;
  }
  get #peek(): Token {
    return this.#t[this.#i] as Token;
  }
  #next(): Token {
    return this.#t[this.#i++] as Token;
  }
  #is(text: string): boolean {
    const t = this.#peek;
    return (t.kind === "punct" || t.kind === "op" || t.kind === "ident") && t.text === text;
  }
  #expect(text: string, what: string): Token {
    if (!this.#is(text))
      throw new PromqlError(this.#peek.pos, `expected ${what}, found ${describe(this.#peek)}`);
    return this.#next();
  }

  parseAll(): Expr {
    const e = this.#binary(0);
    if (this.#peek.kind !== "eof") {
      throw new PromqlError(this.#peek.pos, `unexpected ${describe(this.#peek)}`);
    }
    return e;
  }

  #binaryOp(level: number): string | undefined {
    const t = this.#peek;
    if ((t.kind === "op" || t.kind === "ident") && (PRECEDENCE[level] as string[]).includes(t.text))
      return t.text;
    return undefined;
  }

  #binary(level: number): Expr {
    if (level >= PRECEDENCE.length) return this.#unary();
    let lhs = this.#binary(level + 1);
    for (;;) {
      const op = this.#binaryOp(level);
      if (!op) return lhs;
      const pos = this.#next().pos;
      let bool = false;
      if (this.#is("bool")) {
        if (!isComparison(op))
          throw new PromqlError(this.#peek.pos, `bool is only allowed after a comparison`);
        this.#next();
        bool = true;
      }
      let matching: Matching | undefined;
      if (this.#is("on") || this.#is("ignoring")) {
        const on = this.#next().text === "on";
        matching = { on, labels: this.#labelList() };
      }
      if (this.#is("group_left") || this.#is("group_right")) {
        const g = this.#next();
        if (op === "and" || op === "or" || op === "unless")
          throw new PromqlError(g.pos, `no grouping allowed for "${op}" operation`);
        matching ??= { on: false, labels: [] };
        matching.card = g.text === "group_left" ? "left" : "right";
        matching.include = this.#is("(") ? this.#labelList() : [];
        const both = matching.on ? matching.include.filter((l) => matching?.labels.includes(l)) : [];
        if (both.length > 0)
          throw new PromqlError(g.pos, `label "${both[0]}" must not occur in ON and GROUP clause at once`);
      }
      // `^` binds to the right: a^b^c = a^(b^c).
      const rhs = op === "^" ? this.#binary(level) : this.#binary(level + 1);
      lhs = { type: "binary", op, lhs, rhs, bool, pos, ...(matching ? { matching } : {}) };
      if (op === "^") return lhs;
    }
  }

  #unary(): Expr {
    if (this.#is("-") || this.#is("+")) {
      const neg = this.#next().text === "-";
      // Unary minus binds less tightly than `^`: -2^2 = -(2^2), as in Prometheus.
      const e = this.#binary(POW_LEVEL);
      if (!neg) return e;
      return e.type === "number" ? { type: "number", value: -e.value } : { type: "neg", expr: e };
    }
    return this.#postfix(this.#primary());
  }

  #postfix(e: Expr): Expr {
    let expr = e;
    for (;;) {
      if (this.#is("[")) {
        expr = this.#range(expr, this.#next());
        continue;
      }
      if (this.#is("offset")) {
        const t = this.#next();
        if (expr.type !== "selector" && expr.type !== "subquery")
          throw new PromqlError(t.pos, "offset must follow a selector or a subquery");
        let sign = 1;
        if (this.#is("-")) {
          this.#next();
          sign = -1;
        }
        const d = this.#next();
        if (d.kind !== "duration")
          throw new PromqlError(d.pos, `expected a duration after offset, found ${describe(d)}`);
        expr = { ...expr, offsetMs: sign * (d.value as number) };
        continue;
      }
      if (this.#is("@")) {
        const t = this.#next();
        if (expr.type !== "selector" && expr.type !== "subquery")
          throw new PromqlError(t.pos, "@ must follow a selector or a subquery");
        if (expr.at !== undefined) throw new PromqlError(t.pos, "@ may be used only once");
        expr = { ...expr, at: this.#at() };
        continue;
      }
      return expr;
    }
  }

  /** `[5m]` after a selector, or a subquery `[5m:]` / `[5m:30s]` after any instant vector. */
  #range(expr: Expr, open: Token): Expr {
    const d = this.#next();
    if (d.kind !== "duration")
      throw new PromqlError(d.pos, `expected a duration such as 5m, found ${describe(d)}`);
    if ((d.value as number) <= 0) throw new PromqlError(d.pos, "range must be positive");
    // `[5m:1m]` lexes `:1m` as one identifier (metric names may hold colons).
    if (this.#peek.kind === "ident" && this.#peek.text.startsWith(":")) {
      const colon = this.#next();
      let stepMs: number | undefined;
      if (colon.text !== ":") {
        stepMs = parseDuration(colon.text.slice(1));
        if (stepMs === undefined || stepMs <= 0)
          throw new PromqlError(colon.pos + 1, `expected a step duration, found "${colon.text.slice(1)}"`);
      } else if ((this.#peek as Token).kind === "duration") {
        stepMs = this.#next().value as number;
        if (stepMs <= 0) throw new PromqlError(colon.pos + 1, "step must be positive");
      }
      this.#expect("]", '"]"');
      if (typeOfExpr(expr) !== "vector")
        throw new PromqlError(open.pos, "a subquery needs an instant vector expression before [range:step]");
      return {
        type: "subquery",
        expr,
        rangeMs: d.value as number,
        ...(stepMs !== undefined ? { stepMs } : {}),
        offsetMs: 0,
        pos: open.pos,
      };
    }
    this.#expect("]", '"]" (or ":" for a subquery)');
    if (
      expr.type !== "selector" ||
      expr.rangeMs !== undefined ||
      expr.offsetMs !== 0 ||
      expr.at !== undefined
    )
      throw new PromqlError(
        open.pos,
        "a range [..] must follow a metric selector (or use a subquery [range:step])",
      );
    return { ...expr, rangeMs: d.value as number };
  }

  /** After `@`: a Unix time in seconds, start() or end(). */
  #at(): At {
    const t = this.#next();
    if (t.kind === "ident" && (t.text === "start" || t.text === "end")) {
      this.#expect("(", '"("');
      this.#expect(")", '")"');
      return t.text;
    }
    let sign = 1;
    let n = t;
    if (t.kind === "op" && (t.text === "-" || t.text === "+")) {
      sign = t.text === "-" ? -1 : 1;
      n = this.#next();
    }
    if (n.kind !== "number" || !Number.isFinite(n.value as number))
      throw new PromqlError(n.pos, `expected a timestamp, start() or end() after @, found ${describe(n)}`);
    return Math.round(sign * (n.value as number) * 1000);
  }

  #primary(): Expr {
    const t = this.#peek;
    if (t.kind === "number") {
      this.#next();
      return { type: "number", value: t.value as number };
    }
    if (t.kind === "string") {
      this.#next();
      return { type: "string", value: t.value as string };
    }
    if (t.kind === "punct" && t.text === "(") {
      this.#next();
      const e = this.#binary(0);
      this.#expect(")", '")"');
      return e;
    }
    if (t.kind === "punct" && t.text === "{") {
      const matchers = this.#matchers();
      if (
        !matchers.some((m) =>
          m.op === "=" ? m.value !== "" : m.op === "=~" ? !new RegExp(`^(?:${m.value})$`).test("") : false,
        )
      ) {
        throw new PromqlError(
          t.pos,
          "a selector needs at least one matcher that does not match the empty string",
        );
      }
      return { type: "selector", matchers, offsetMs: 0, pos: t.pos };
    }
    if (t.kind === "ident") {
      this.#next();
      if (AGGREGATIONS.has(t.text) && (this.#is("(") || this.#is("by") || this.#is("without"))) {
        return this.#aggregate(t);
      }
      if (this.#is("(")) return this.#call(t);
      const matchers: Matcher[] = [{ name: "__name__", op: "=", value: t.text }];
      if (this.#is("{")) matchers.push(...this.#matchers());
      return { type: "selector", matchers, offsetMs: 0, pos: t.pos };
    }
    throw new PromqlError(t.pos, `unexpected ${describe(t)}`);
  }

  #matchers(): Matcher[] {
    this.#expect("{", '"{"');
    const out: Matcher[] = [];
    while (!this.#is("}")) {
      const name = this.#next();
      if (name.kind !== "ident" || !/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name.text)) {
        throw new PromqlError(name.pos, `expected a label name, found ${describe(name)}`);
      }
      const op = this.#next();
      if (op.kind !== "op" || !["=", "!=", "=~", "!~"].includes(op.text)) {
        throw new PromqlError(op.pos, `expected =, !=, =~ or !~ after ${name.text}, found ${describe(op)}`);
      }
      const value = this.#next();
      if (value.kind !== "string")
        throw new PromqlError(value.pos, `expected a quoted string, found ${describe(value)}`);
      if (op.text === "=~" || op.text === "!~") {
        try {
          new RegExp(value.value as string);
        } catch (err) {
          throw new PromqlError(value.pos, `invalid regular expression: ${(err as Error).message}`);
        }
      }
      out.push({ name: name.text, op: op.text as MatchOp, value: value.value as string });
      if (this.#is(",")) this.#next();
      else if (!this.#is("}"))
        throw new PromqlError(this.#peek.pos, `expected "," or "}", found ${describe(this.#peek)}`);
    }
    this.#next();
    return out;
  }

  #labelList(): string[] {
    this.#expect("(", '"(" and a list of labels');
    const out: string[] = [];
    while (!this.#is(")")) {
      const t = this.#next();
      if (t.kind !== "ident") throw new PromqlError(t.pos, `expected a label name, found ${describe(t)}`);
      out.push(t.text);
      if (this.#is(",")) this.#next();
      else if (!this.#is(")"))
        throw new PromqlError(this.#peek.pos, `expected "," or ")", found ${describe(this.#peek)}`);
    }
    this.#next();
    return out;
  }

  #args(): Expr[] {
    this.#expect("(", '"("');
    const args: Expr[] = [];
    while (!this.#is(")")) {
      args.push(this.#binary(0));
      if (this.#is(",")) this.#next();
      else if (!this.#is(")"))
        throw new PromqlError(this.#peek.pos, `expected "," or ")", found ${describe(this.#peek)}`);
    }
    this.#next();
    return args;
  }

  #call(name: Token): Expr {
    return { type: "call", func: name.text, args: this.#args(), pos: name.pos };
  }

  #aggregate(op: Token): Expr {
    let grouping: string[] = [];
    let without = false;
    let grouped = false;
    if (this.#is("by") || this.#is("without")) {
      without = this.#next().text === "without";
      grouping = this.#labelList();
      grouped = true;
    }
    const args = this.#args();
    if (!grouped && (this.#is("by") || this.#is("without"))) {
      without = this.#next().text === "without";
      grouping = this.#labelList();
    }
    const needsParam = PARAM_AGGREGATIONS.has(op.text);
    if (args.length !== (needsParam ? 2 : 1)) {
      throw new PromqlError(
        op.pos,
        `${op.text} takes ${needsParam ? "2 arguments" : "1 argument"}, got ${args.length}`,
      );
    }
    const expr = args[args.length - 1] as Expr;
    return {
      type: "aggregate",
      op: op.text,
      expr,
      grouping,
      without,
      pos: op.pos,
      ...(needsParam ? { param: args[0] as Expr } : {}),
    };
  }
}

const PARAM_AGGREGATIONS = new Set(["topk", "bottomk", "quantile", "count_values"]);

/** Whether an expression gives an instant vector, a range vector, a scalar or a string. */
export function typeOfExpr(e: Expr): "scalar" | "string" | "vector" | "matrix" {
  switch (e.type) {
    case "number":
      return "scalar";
    case "string":
      return "string";
    case "selector":
      return e.rangeMs !== undefined ? "matrix" : "vector";
    case "subquery":
      return "matrix";
    case "neg":
      return typeOfExpr(e.expr);
    case "aggregate":
      return "vector";
    case "binary":
      return typeOfExpr(e.lhs) === "scalar" && typeOfExpr(e.rhs) === "scalar" ? "scalar" : "vector";
    case "call":
      return e.func === "time" || e.func === "scalar" || e.func === "pi" ? "scalar" : "vector";
  }
}

function describe(t: Token): string {
  return t.kind === "eof" ? "end of input" : `"${t.text}"`;
}

/** Parses a PromQL expression; throws PromqlError naming the position. */
export function parsePromql(input: string): Expr {
  if (input.trim() === "") throw new PromqlError(0, "empty query");
  return new Parser(lex(input)).parseAll();
}
