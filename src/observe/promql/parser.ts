/**
 * A PromQL parser for the subset herd evaluates (see README.md): selectors
 * with matchers, ranges and offset, function calls, aggregations with
 * by/without, binary operators with bool/on/ignoring, unary minus.
 *
 *   text ─► tokens ─► Expr (ast below) ─► engine.ts
 *
 * A problem is a PromqlError naming the position (1-based character) and what
 * was expected.
 */

import type { Matcher, MatchOp } from "../tsdb/labels.ts";

export type Expr =
  | { type: "number"; value: number }
  | { type: "string"; value: string }
  | { type: "selector"; matchers: Matcher[]; rangeMs?: number; offsetMs: number; pos: number }
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
      matching?: { on: boolean; labels: string[] };
      pos: number;
    }
  | { type: "neg"; expr: Expr };

export class PromqlError extends Error {
  readonly pos: number;
  constructor(pos: number, message: string) {
    super(`parse error at position ${pos + 1}: ${message}`);
    this.name = "PromqlError";
    this.pos = pos;
  }
}

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
]);

type TokKind = "ident" | "number" | "duration" | "string" | "op" | "punct" | "eof";
interface Token {
  kind: TokKind;
  text: string;
  pos: number;
  value?: number | string;
}

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  y: 365 * 86_400_000,
};

/** `1h30m`, `5m`, `250ms` → milliseconds, or undefined. */
export function parseDuration(s: string): number | undefined {
  const re = /(\d+)(ms|[smhdwy])/gy;
  let total = 0;
  let at = 0;
  let m: RegExpExecArray | null = re.exec(s);
  if (!m) return undefined;
  while (m) {
    total += Number(m[1]) * (UNITS[m[2] as string] as number);
    at = re.lastIndex;
    m = re.exec(s);
  }
  return at === s.length ? total : undefined;
}

const OPS = ["==", "!=", "=~", "!~", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "^", "="];

function lex(input: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < input.length) {
    const c = input[i] as string;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "#") {
      while (i < input.length && input[i] !== "\n") i++;
      continue;
    }
    const start = i;
    if (/[a-zA-Z_:]/.test(c)) {
      while (i < input.length && /[a-zA-Z0-9_:]/.test(input[i] as string)) i++;
      const text = input.slice(start, i);
      if (/^(inf|nan)$/i.test(text)) {
        out.push({ kind: "number", text, pos: start, value: /^inf$/i.test(text) ? Infinity : Number.NaN });
      } else out.push({ kind: "ident", text, pos: start });
      continue;
    }
    if (/[0-9.]/.test(c)) {
      const dur = /^(\d+(ms|[smhdwy]))+/.exec(input.slice(i));
      if (dur && !/[a-zA-Z0-9_.]/.test(input[i + dur[0].length] ?? "")) {
        i += dur[0].length;
        out.push({ kind: "duration", text: dur[0], pos: start, value: parseDuration(dur[0]) as number });
        continue;
      }
      const num = /^(0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)/.exec(input.slice(i));
      if (!num) throw new PromqlError(start, `unexpected character "${c}"`);
      i += num[0].length;
      out.push({ kind: "number", text: num[0], pos: start, value: Number(num[0]) });
      continue;
    }
    if (c === '"' || c === "'" || c === "`") {
      i++;
      let value = "";
      for (;;) {
        const d = input[i];
        if (d === undefined) throw new PromqlError(start, "unterminated string");
        i++;
        if (d === c) break;
        if (d === "\\" && c !== "`") {
          const e = input[i++];
          const map: Record<string, string> = { n: "\n", t: "\t", r: "\r", "\\": "\\", '"': '"', "'": "'" };
          if (e === undefined || !(e in map)) {
            // Regexes use backslashes (\d, \.): keep unknown escapes as they are.
            value += `\\${e ?? ""}`;
          } else value += map[e];
        } else value += d;
      }
      out.push({ kind: "string", text: input.slice(start, i), pos: start, value });
      continue;
    }
    if ("(){}[],".includes(c)) {
      out.push({ kind: "punct", text: c, pos: start });
      i++;
      continue;
    }
    if (c === "@") throw new PromqlError(start, "the @ modifier is not supported");
    const op = OPS.find((o) => input.startsWith(o, i));
    if (op) {
      out.push({ kind: "op", text: op, pos: start });
      i += op.length;
      continue;
    }
    throw new PromqlError(start, `unexpected character "${c}"`);
  }
  out.push({ kind: "eof", text: "end of input", pos: input.length });
  return out;
}

/** Binary operators by precedence, lowest first; `^` is right-associative. */
const PRECEDENCE: string[][] = [
  ["or"],
  ["and", "unless"],
  ["==", "!=", "<=", "<", ">=", ">"],
  ["+", "-"],
  ["*", "/", "%", "atan2"],
  ["^"],
];
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
      let matching: { on: boolean; labels: string[] } | undefined;
      if (this.#is("on") || this.#is("ignoring")) {
        const on = this.#next().text === "on";
        matching = { on, labels: this.#labelList() };
      }
      if (this.#is("group_left") || this.#is("group_right")) {
        throw new PromqlError(this.#peek.pos, `${this.#peek.text} (many-to-one matching) is not supported`);
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
      const e = this.#unary();
      if (!neg) return e;
      return e.type === "number" ? { type: "number", value: -e.value } : { type: "neg", expr: e };
    }
    return this.#postfix(this.#primary());
  }

  #postfix(e: Expr): Expr {
    let expr = e;
    for (;;) {
      if (this.#is("[")) {
        const open = this.#next();
        if (expr.type !== "selector" || expr.rangeMs !== undefined) {
          throw new PromqlError(
            open.pos,
            "a range [..] must follow a metric selector (subqueries are not supported)",
          );
        }
        const d = this.#next();
        if (d.kind !== "duration")
          throw new PromqlError(d.pos, `expected a duration such as 5m, found ${describe(d)}`);
        // `[5m:1m]` lexes `:1m` as one identifier (metric names may hold colons).
        if (this.#peek.kind === "ident" && this.#peek.text.startsWith(":"))
          throw new PromqlError(this.#peek.pos, "subqueries are not supported");
        this.#expect("]", '"]"');
        if ((d.value as number) <= 0) throw new PromqlError(d.pos, "range must be positive");
        expr = { ...expr, rangeMs: d.value as number };
        continue;
      }
      if (this.#is("offset")) {
        const t = this.#next();
        if (expr.type !== "selector") throw new PromqlError(t.pos, "offset must follow a metric selector");
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
      return expr;
    }
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
    const needsParam = op.text === "topk" || op.text === "bottomk" || op.text === "quantile";
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

function describe(t: Token): string {
  return t.kind === "eof" ? "end of input" : `"${t.text}"`;
}

/** Parses a PromQL expression; throws PromqlError naming the position. */
export function parsePromql(input: string): Expr {
  if (input.trim() === "") throw new PromqlError(0, "empty query");
  return new Parser(lex(input)).parseAll();
}
