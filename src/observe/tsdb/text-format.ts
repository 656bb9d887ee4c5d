/**
 * The Prometheus text exposition format (version 0.0.4), as scraped from
 * `/metrics` and accepted by `POST /api/v1/metrics/write`:
 *
 *   # HELP http_requests_total Requests served.
 *   # TYPE http_requests_total counter
 *   http_requests_total{method="GET",path="/a\"b"} 1027 1395066363000
 *
 * A malformed line is an error naming its line number and the problem; nothing
 * of a malformed text is kept.
 */

import { isLabelName, isMetricName, type Labels, NAME } from "./labels.ts";

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

/** One sample line: labels (`__name__` included), value, optional ms timestamp. */
export interface TextSample {
  labels: Labels;
  value: number;
  timestamp?: number;
}

export interface ParsedText {
  samples: TextSample[];
  /** `# TYPE` declarations by metric family name. */
  types: Map<string, MetricType>;
  /** `# HELP` texts by metric family name (escapes undone). */
  help: Map<string, string>;
}

export class TextFormatError extends Error {
  readonly line: number;
  constructor(line: number, problem: string) {
    super(`line ${line}: ${problem}`);
    this.name = "TextFormatError";
    this.line = line;
  }
}

const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/** A value: a float, or NaN / +Inf / -Inf as Prometheus writes them. */
export function parseValue(s: string): number | undefined {
  switch (s) {
    case "NaN":
      return Number.NaN;
    case "+Inf":
    case "Inf":
      return Number.POSITIVE_INFINITY;
    case "-Inf":
      return Number.NEGATIVE_INFINITY;
  }
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return undefined;
  return Number(s);
}

/** The family a sample belongs to: `x_bucket`/`x_sum`/`x_count` belong to histogram or summary `x`. */
function familyOf(name: string, types: Map<string, MetricType>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const t = types.get(base);
      if (t === "histogram" || (t === "summary" && suffix !== "_bucket")) return base;
    }
  }
  return name;
}

export function parseText(text: string): ParsedText {
  const samples: TextSample[] = [];
  const types = new Map<string, MetricType>();
  const help = new Map<string, string>();
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const raw = lines[n] as string;
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    const lineNo = n + 1;
    if (line.trim() === "") continue;
    if (line.startsWith("#")) {
      const parts = line
        .slice(1)
        .trim()
        .split(/[ \t]+/);
      if (parts[0] === "TYPE") {
        const [, name, type] = parts;
        if (!name || !isMetricName(name))
          throw new TextFormatError(lineNo, `# TYPE needs a valid metric name`);
        if (!type || !TYPES.has(type) || parts.length > 3) {
          throw new TextFormatError(lineNo, `unknown metric type "${parts.slice(2).join(" ")}" for ${name}`);
        }
        if (types.has(name)) throw new TextFormatError(lineNo, `second # TYPE line for ${name}`);
        types.set(name, type as MetricType);
      } else if (parts[0] === "HELP") {
        if (!parts[1] || !isMetricName(parts[1]))
          throw new TextFormatError(lineNo, `# HELP needs a valid metric name`);
        const text = /^#[ \t]*HELP[ \t]+\S+(?:[ \t](.*))?$/.exec(line)?.[1] ?? "";
        help.set(
          parts[1],
          text.replace(/\\(\\|n)/g, (_, c: string) => (c === "n" ? "\n" : "\\")),
        );
      }
      // Any other comment (and OpenMetrics' # EOF) is ignored.
      continue;
    }
    samples.push(parseSampleLine(line, lineNo, types));
  }
  return { samples, types, help };
}

function parseSampleLine(line: string, lineNo: number, types: Map<string, MetricType>): TextSample {
  let i = 0;
  while (line[i] === " " || line[i] === "\t") i++;
  const nameStart = i;
  while (i < line.length && /[a-zA-Z0-9_:]/.test(line[i] as string)) i++;
  const name = line.slice(nameStart, i);
  if (!isMetricName(name)) {
    throw new TextFormatError(
      lineNo,
      `expected a metric name at column ${nameStart + 1}, found "${line.slice(nameStart, nameStart + 10)}"`,
    );
  }
  const labels: Labels = { [NAME]: name };
  if (line[i] === "{") {
    i++;
    for (;;) {
      while (line[i] === " " || line[i] === "\t") i++;
      if (line[i] === "}") {
        i++;
        break;
      }
      const ls = i;
      while (i < line.length && /[a-zA-Z0-9_]/.test(line[i] as string)) i++;
      const label = line.slice(ls, i);
      if (!isLabelName(label)) throw new TextFormatError(lineNo, `invalid label name at column ${ls + 1}`);
      if (label === NAME) throw new TextFormatError(lineNo, `label ${NAME} is not allowed in braces`);
      while (line[i] === " " || line[i] === "\t") i++;
      if (line[i] !== "=") throw new TextFormatError(lineNo, `expected "=" after label ${label}`);
      i++;
      while (line[i] === " " || line[i] === "\t") i++;
      if (line[i] !== '"')
        throw new TextFormatError(lineNo, `label ${label}: value must be in double quotes`);
      i++;
      let value = "";
      for (;;) {
        const c = line[i];
        if (c === undefined) throw new TextFormatError(lineNo, `label ${label}: unterminated value`);
        i++;
        if (c === '"') break;
        if (c === "\\") {
          const e = line[i++];
          if (e === "n") value += "\n";
          else if (e === "\\") value += "\\";
          else if (e === '"') value += '"';
          else throw new TextFormatError(lineNo, `label ${label}: invalid escape "\\${e ?? ""}"`);
        } else value += c;
      }
      if (Object.hasOwn(labels, label)) throw new TextFormatError(lineNo, `label ${label} appears twice`);
      labels[label] = value;
      while (line[i] === " " || line[i] === "\t") i++;
      if (line[i] === ",") {
        i++;
        continue;
      }
      if (line[i] === "}") {
        i++;
        break;
      }
      throw new TextFormatError(lineNo, `expected "," or "}" after label ${label}`);
    }
  }
  const rest = line
    .slice(i)
    .trim()
    .split(/[ \t]+/);
  if (line[i] !== " " && line[i] !== "\t") {
    throw new TextFormatError(lineNo, `expected a space and a value after ${name}`);
  }
  if (rest.length === 0 || rest[0] === "") throw new TextFormatError(lineNo, `missing value for ${name}`);
  if (rest.length > 2) throw new TextFormatError(lineNo, `unexpected text after the timestamp: "${rest[2]}"`);
  const value = parseValue(rest[0] as string);
  if (value === undefined) throw new TextFormatError(lineNo, `invalid value "${rest[0]}" for ${name}`);
  const sample: TextSample = { labels, value };
  if (rest[1] !== undefined) {
    if (!/^-?\d+$/.test(rest[1]))
      throw new TextFormatError(lineNo, `invalid timestamp "${rest[1]}" (integer milliseconds)`);
    sample.timestamp = Number(rest[1]);
  }
  const family = familyOf(name, types);
  const type = types.get(family);
  if (type === "histogram" && name === `${family}_bucket` && labels.le === undefined) {
    throw new TextFormatError(lineNo, `histogram bucket ${name} has no "le" label`);
  }
  if (type === "summary" && name === family && labels.quantile === undefined) {
    throw new TextFormatError(lineNo, `summary ${name} has no "quantile" label`);
  }
  if (labels.le !== undefined && type === "histogram" && parseValue(labels.le) === undefined) {
    throw new TextFormatError(lineNo, `invalid "le" value "${labels.le}"`);
  }
  return sample;
}
