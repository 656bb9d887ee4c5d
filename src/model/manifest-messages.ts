/**
 * herd.yaml's error messages for people: a YAML syntax error with the line to
 * fix, and a schema error with what the field takes (and, for a size written
 * as other tools write it, what was probably meant). model/manifest.ts and
 * model/live-config.ts say their errors with these.
 */

import type { YAMLError } from "yaml";

/** What a memory quantity may be, as herd.yaml's errors say it (parseBytes reads it). */
export const QUANTITY_RULE =
  "a number of bytes, or one with a unit: Ki, Mi, Gi (powers of 1024) or K, M, G (powers of 1000), e.g. 128Mi";

/**
 * A YAML syntax error said for a person: where (the line to fix, which for
 * an indentation mistake is often the one after the parser's) and what.
 */
export function yamlProblem(e: YAMLError, text: string): { line?: number; message: string } {
  const at = e.linePos?.[0];
  // The parser's own words, without its position and excerpt (said apart here).
  const own = e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
  const lines = text.split(/\r?\n/);
  const source = (n: number) => (lines[n - 1] ?? "").trim();
  switch (e.code) {
    case "TAB_AS_INDENT":
      return { line: at?.line, message: "a tab indents this line: YAML indents with spaces only" };
    case "BAD_INDENT":
      if (!source(at?.line ?? 0)) break;
      return {
        line: at?.line,
        message: `bad indentation: "${source(at?.line ?? 0)}" must start in the same column as the keys it belongs with`,
      };
    case "BLOCK_AS_IMPLICIT_KEY":
    case "MULTILINE_IMPLICIT_KEY": {
      // `port: 3000` then a deeper `instances: 2`: the deeper line is the mistake.
      const keyLine = at?.line ?? 0;
      let next = keyLine + 1;
      while (next <= lines.length && source(next) === "") next++;
      if (next > lines.length) break;
      const key = source(keyLine).replace(/:.*$/, ":");
      return {
        line: next,
        message: `bad indentation: "${source(next)}" is indented more than "${source(keyLine)}", which already has a value; start it in the same column as "${key}"`,
      };
    }
  }
  return { line: at?.line, message: `not valid YAML${at ? ` (column ${at.col})` : ""}: ${own}` };
}

export function unescapePointer(s: string): string {
  return s.replace(/~1/g, "/").replace(/~0/g, "~");
}

export function describeError(
  message: string,
  schema: { description?: string; anyOf?: unknown[] },
  value?: unknown,
): string {
  // A quantity (memory): what it may be, and what was probably meant.
  if (schema.description === QUANTITY_RULE) return `must be ${QUANTITY_RULE}${quantityHint(value)}`;
  // A union of literals (severity, op, mode…): say which values it takes.
  const literals = schema.anyOf?.every((s) => typeof s === "object" && s !== null && "const" in s)
    ? schema.anyOf.map((s) => String((s as { const: unknown }).const))
    : undefined;
  const text =
    literals && message === "Expected union value" ? `Expected one of ${literals.join(", ")}` : message;
  return schema.description ? `${text} (${schema.description})` : text;
}

/** `; 128MB: did you mean 128Mi …?` for a size written as other tools write it; "" otherwise. */
function quantityHint(value: unknown): string {
  const m = typeof value === "string" ? /^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmg])(i?)b?\s*$/i.exec(value) : null;
  if (!m) return "";
  const [, n, u, i] = m;
  const unit = u.toUpperCase();
  return i
    ? `; "${value}": did you mean ${n}${unit}i?`
    : `; "${value}": did you mean ${n}${unit}i (powers of 1024) or ${n}${unit} (powers of 1000)?`;
}
