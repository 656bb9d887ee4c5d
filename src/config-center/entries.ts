/**
 * Checks the entries of a config version before it is stored: names that are
 * safe as file names, sizes, and files that parse in their format. A file
 * that does not parse is refused with a 400 that names it and says where it
 * broke; nothing is stored, so the running version stays.
 */

import { parseDocument } from "yaml";
import { type FieldProblem, invalid } from "../common/errors.ts";
import type { ConfigEntry, ConfigFormat } from "../model/config.ts";

/** An entry's name: a key (`db.pool.size`, `LOG_LEVEL`) or a file name (`app.yaml`); never a path. */
export const ENTRY_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$";
const ENTRY_NAME = new RegExp(ENTRY_NAME_PATTERN);

/** Largest key value. */
export const MAX_VALUE_BYTES = 64 * 1024;
/** Largest file entry. */
export const MAX_FILE_BYTES = 256 * 1024;
/** Most entries in one version. */
export const MAX_ENTRIES = 1000;
/** Most bytes of all entries of one version. */
export const MAX_VERSION_BYTES = 2 * 1024 * 1024;

/** Where a file failed to parse: a message with the line when known. */
export function parseProblem(
  format: ConfigFormat,
  content: string,
): { message: string; line?: number } | undefined {
  if (format === "text") return undefined;
  if (format === "json") {
    try {
      JSON.parse(content);
      return undefined;
    } catch (err) {
      const message = (err as Error).message;
      const at = /position (\d+)/.exec(message);
      // Input that ends too soon ends on its last line that has something on it.
      const end = /end of JSON input/.test(message) ? content.trimEnd().length : undefined;
      const offset = at ? Number(at[1]) : end;
      const line = offset === undefined ? undefined : content.slice(0, offset).split("\n").length;
      // V8 says where as "at position 9 (line 2 column 1)": the line is said once, as for the other formats.
      const what = message
        .replace(/ in JSON at position \d+.*$/, "")
        .replace(/ \(line \d+ column \d+\)$/, "");
      return { message: `not valid JSON: ${what}`, ...(line ? { line } : {}) };
    }
  }
  if (format === "yaml") {
    const doc = parseDocument(content, { prettyErrors: false, uniqueKeys: true });
    const err = doc.errors[0];
    if (!err) return undefined;
    const line = err.linePos?.[0]?.line;
    return { message: `not valid YAML: ${err.message.split("\n")[0]}`, ...(line ? { line } : {}) };
  }
  return propertiesProblem(content);
}

/**
 * Java .properties, a little stricter than java.util.Properties: every
 * logical line that is not blank or a comment (# or !) needs a key and a
 * separator (=, : or white space), and `\u` escapes must be four hex digits.
 */
function propertiesProblem(content: string): { message: string; line: number } | undefined {
  const lines = content.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const first = i + 1;
    let logical = lines[i] ?? "";
    // A line ending in an odd number of backslashes goes on on the next line.
    while (/(^|[^\\])(\\\\)*\\$/.test(logical) && i + 1 < lines.length) {
      logical = `${logical.slice(0, -1)}${(lines[++i] ?? "").trimStart()}`;
    }
    const text = logical.trimStart();
    if (text === "" || text.startsWith("#") || text.startsWith("!")) continue;
    const bad = /\\u(?![0-9a-fA-F]{4})/.exec(text);
    if (bad) return { message: "not valid properties: a \\u escape needs four hex digits", line: first };
    const sep = /(^|[^\\])(\\\\)*[=:\s]/.exec(text);
    if (!sep || sep.index + sep[0].length - 1 === 0)
      return {
        message: `not valid properties: "${text.slice(0, 40)}" has no key and separator (=, : or space)`,
        line: first,
      };
  }
  return undefined;
}

/** Checks entries to be stored; throws a 400 naming every bad entry (`entries.<name>`). */
export function checkEntries(entries: Record<string, ConfigEntry>, field = "entries"): void {
  const problems: FieldProblem[] = [];
  const names = Object.keys(entries);
  if (names.length > MAX_ENTRIES)
    problems.push({ field, message: `${names.length} entries: at most ${MAX_ENTRIES}` });
  let total = 0;
  for (const name of names) {
    const entry = entries[name] as ConfigEntry;
    const at = `${field}.${name}`;
    if (!ENTRY_NAME.test(name)) {
      problems.push({
        field: at,
        message: "a name is letters, digits, _ . and -, starting with a letter or digit, at most 128",
      });
      continue;
    }
    if (entry.kind === "key") {
      const bytes = Buffer.byteLength(entry.value);
      total += bytes;
      if (bytes > MAX_VALUE_BYTES)
        problems.push({ field: at, message: `value of ${bytes} bytes: at most ${MAX_VALUE_BYTES}` });
      if (entry.value.includes("\u0000")) problems.push({ field: at, message: "a value cannot hold NUL" });
      continue;
    }
    const bytes = Buffer.byteLength(entry.content);
    total += bytes;
    if (bytes > MAX_FILE_BYTES) {
      problems.push({ field: at, message: `file of ${bytes} bytes: at most ${MAX_FILE_BYTES}` });
      continue;
    }
    const problem = parseProblem(entry.format, entry.content);
    if (problem)
      problems.push({ field: at, message: problem.message, ...(problem.line ? { line: problem.line } : {}) });
  }
  if (total > MAX_VERSION_BYTES)
    problems.push({ field, message: `${total} bytes in all: at most ${MAX_VERSION_BYTES}` });
  if (problems.length === 0) return;
  const first = problems[0] as FieldProblem;
  const where = first.line ? ` (line ${first.line})` : "";
  throw invalid(
    `${first.field}: ${first.message}${where}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ""}; nothing was changed, the running version stays`,
    problems,
  );
}
