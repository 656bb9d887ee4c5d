/**
 * herd.yaml's error messages for people: a YAML syntax error with the line to
 * fix, and a schema error with what the field takes (and, for a size written
 * as other tools write it, what was probably meant; for seconds, the forms and
 * the range). model/manifest.ts and model/live-config.ts say their errors
 * with these.
 */

import type { YAMLError } from "yaml";
import { secondsProblem } from "./seconds.ts";

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
  // Seconds (health.interval, a route's timeouts…): the forms, the range, and what was given.
  const seconds = secondsProblem(schema, value);
  if (seconds) return seconds;
  // A union of literals (severity, op, mode…): say which values it takes.
  const literals = schema.anyOf?.every((s) => typeof s === "object" && s !== null && "const" in s)
    ? schema.anyOf.map((s) => String((s as { const: unknown }).const))
    : undefined;
  const text =
    literals && message === "Expected union value"
      ? `Expected one of ${literals.join(", ")}`
      : plain(message);
  return schema.description ? `${text} (${schema.description})` : text;
}

/** TypeBox's words for a bound or a type, as a person says them ("must be a whole number of at least 0"). */
const PLAIN: [RegExp, (...m: string[]) => string][] = [
  [/^Expected integer to be greater or equal to (\S+)$/, (n) => `must be a whole number of at least ${n}`],
  [/^Expected integer to be less or equal to (\S+)$/, (n) => `must be a whole number of at most ${n}`],
  [/^Expected integer to be greater than (\S+)$/, (n) => `must be a whole number above ${n}`],
  [/^Expected number to be greater or equal to (\S+)$/, (n) => `must be a number of at least ${n}`],
  [/^Expected number to be less or equal to (\S+)$/, (n) => `must be a number of at most ${n}`],
  [/^Expected number to be greater than (\S+)$/, (n) => `must be a number above ${n}`],
  [/^Expected integer$/, () => "must be a whole number"],
  [/^Expected number$/, () => "must be a number"],
  [/^Expected boolean$/, () => "must be true or false"],
  [/^Expected string$/, () => "must be a string"],
  [/^Expected array$/, () => "must be a list"],
  [/^Expected object$/, () => "must be a mapping (key: value lines)"],
  [/^Expected string length greater or equal to 1$/, () => "must not be empty"],
];

function plain(message: string): string {
  for (const [pattern, say] of PLAIN) {
    const m = pattern.exec(message);
    if (m) return say(...m.slice(1));
  }
  return message;
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

/** The schema shapes walked to find where a field belongs (TypeBox's JSON Schema). */
export interface SchemaNode {
  properties?: Record<string, SchemaNode>;
  patternProperties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  anyOf?: SchemaNode[];
}

/**
 * A field the schema does not take, said for a person: the field it was
 * probably meant to be (a typo), or where it goes instead (`routes:` at the
 * top belongs under services.NAME), and the fields this place takes.
 */
export function unexpectedField(key: string, parent: SchemaNode, root: SchemaNode): string {
  const here = Object.keys(parent.properties ?? {});
  const near =
    here.find((k) => k.toLowerCase() !== key.toLowerCase() && distance(k, key) <= 2) ??
    here.find((k) => k.toLowerCase() === key.toLowerCase());
  const elsewhere = near ? undefined : placesOf(key, root).find((p) => p !== "");
  if (near) return `not a field here; did you mean ${near}?`;
  const takes = here.length ? `the fields here: ${here.join(", ")}` : "no fields here";
  return elsewhere
    ? `not a field here; it goes under ${elsewhere} (${takes})`
    : `not a field here (${takes})`;
}

/** The places (dotted, NAME for any name) where the schema takes `key`, shallowest first. */
function placesOf(key: string, root: SchemaNode): string[] {
  const found: string[] = [];
  let level: [SchemaNode, string][] = [[root, ""]];
  for (let depth = 0; depth < 5 && level.length > 0; depth++) {
    const next: [SchemaNode, string][] = [];
    const at = (path: string, part: string) => (path ? `${path}.${part}` : part);
    for (const [node, path] of level) {
      for (const alt of node.anyOf ?? []) next.push([alt, path]);
      for (const [k, child] of Object.entries(node.properties ?? {})) {
        if (k === key) found.push(path);
        next.push([child, at(path, k)]);
      }
      for (const child of Object.values(node.patternProperties ?? {})) next.push([child, at(path, "NAME")]);
      if (node.items) next.push([node.items, at(path, "[]")]);
    }
    level = next;
  }
  return found;
}

/** Levenshtein distance, case-insensitive (short field names only). */
function distance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  let row = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const next = [i];
    for (let j = 1; j <= y.length; j++)
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1));
    row = next;
  }
  return row[y.length];
}
