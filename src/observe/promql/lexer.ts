/**
 * PromQL's tokens: identifiers (metric names may hold colons, so `:1m` in
 * `[5m:1m]` is one), numbers (also Inf, NaN, hex), durations, strings with
 * Go's escapes (unknown escapes kept, for regexes), operators and punctuation.
 */

/** A parse problem, naming the position (1-based in the message). */
export class PromqlError extends Error {
  readonly pos: number;
  constructor(pos: number, message: string) {
    super(`parse error at position ${pos + 1}: ${message}`);
    this.name = "PromqlError";
    this.pos = pos;
  }
}

export type TokKind = "ident" | "number" | "duration" | "string" | "op" | "punct" | "eof";
export interface Token {
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

export function lex(input: string): Token[] {
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
    if (c === "@") {
      out.push({ kind: "punct", text: c, pos: start });
      i++;
      continue;
    }
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
