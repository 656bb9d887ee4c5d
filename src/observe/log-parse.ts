/**
 * What herd reads out of one log line: a level, a trace id and, for a line
 * that is a JSON object, its fields and message. Pure; used at ingest (level
 * and trace id are stored so they can be filtered on) and at read (fields).
 *
 *   {"level":"warn","msg":"slow","trace_id":"4bf9…"} ─► level warn, msg "slow", traceId 4bf9…, fields {…}
 *   "2026-01-01T12:00:00Z ERROR db down"             ─► level error (an obvious prefix), no fields
 *   "something failed with ERROR"                    ─► no level (only a prefix counts)
 */

import { parseTraceparent } from "./traces/trace-context.ts";

/** Levels on pino's and bunyan's scale, so their numeric `level` reads as is. */
export const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
export type LogLevel = keyof typeof LEVELS;

const LEVEL_WORDS: Record<string, LogLevel> = {
  trace: "trace",
  debug: "debug",
  dbug: "debug",
  verbose: "debug",
  info: "info",
  information: "info",
  notice: "info",
  warn: "warn",
  warning: "warn",
  error: "error",
  err: "error",
  fatal: "fatal",
  critical: "fatal",
  crit: "fatal",
  panic: "fatal",
  dpanic: "fatal",
  alert: "fatal",
  emerg: "fatal",
  emergency: "fatal",
};

/** The level a word or number names (`WARNING`, `warn`, `40`, `E`rror-ish words), or undefined. */
export function levelOf(value: unknown): LogLevel | undefined {
  if (typeof value === "number") return levelOfNumber(value);
  if (typeof value !== "string") return undefined;
  const word = value.trim().toLowerCase();
  if (/^\d+$/.test(word)) return levelOfNumber(Number(word));
  // slog writes levels between the named ones as `WARN+2`.
  return LEVEL_WORDS[word] ?? LEVEL_WORDS[word.replace(/[+-]\d+$/, "")];
}

function levelOfNumber(n: number): LogLevel | undefined {
  if (n < 5 || n > 100) return undefined;
  if (n < 15) return "trace";
  if (n < 25) return "debug";
  if (n < 35) return "info";
  if (n < 45) return "warn";
  if (n < 55) return "error";
  return "fatal";
}

/** The name of a stored level rank. */
export function levelName(rank: number): LogLevel {
  return levelOfNumber(rank) ?? "info";
}

/**
 * An obvious level at the start of a plain line: the word in capitals, or
 * in any case inside brackets, after an optional ISO-like timestamp —
 * `ERROR …`, `WARN: …`, `[info] …`, `2026-01-01T12:00:00Z INFO …`,
 * `2026-01-01 12:00:00,123 [WARNING] …`. Nothing else is guessed.
 */
const PREFIX =
  /^(?:\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\s+)?(?:\[([A-Za-z]{3,11})\]|(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|CRITICAL|PANIC)\b)/;

const TRACE_ID = /^[0-9a-f]{16}$|^[0-9a-f]{32}$/;
const TRACE_KEYS = ["trace_id", "traceId", "traceID", "trace.id", "otelTraceID", "dd.trace_id"];

/** What `parseLine` found; `json` says the line is a JSON object (its fields are read again on output). */
export interface ParsedLine {
  level?: LogLevel;
  traceId?: string;
  json: boolean;
}

/** Level and trace id of a line, and whether it is a JSON object. Never throws. */
export function parseLine(line: string): ParsedLine {
  const object = jsonObjectOf(line);
  if (object) return { json: true, level: jsonLevel(object), traceId: jsonTraceId(object) };
  const m = PREFIX.exec(line);
  const level = m ? levelOf(m[1] ?? m[2]) : undefined;
  return level ? { json: false, level } : { json: false };
}

/** The line as an object when it is one JSON object (`{…}`), else undefined. */
export function jsonObjectOf(line: string): Record<string, unknown> | undefined {
  // Cheap test first: most plain lines never reach JSON.parse.
  if (line.length < 2 || line.charCodeAt(0) !== 123 /* { */) return undefined;
  const end = line.trimEnd();
  if (end.charCodeAt(end.length - 1) !== 125 /* } */) return undefined;
  try {
    const v = JSON.parse(end) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The message of a JSON line: `msg`, `message` or `@message` when it is a string. */
export function jsonMessage(object: Record<string, unknown>): string | undefined {
  for (const key of ["msg", "message", "@message"]) {
    const v = object[key];
    if (typeof v === "string") return v;
  }
  return undefined;
}

function jsonLevel(object: Record<string, unknown>): LogLevel | undefined {
  for (const key of ["level", "severity", "lvl", "log.level", "levelname", "@level"]) {
    const level = levelOf(object[key]);
    if (level) return level;
  }
  // ECS and OpenTelemetry nest it: {"log":{"level":"warn"}}.
  const log = object.log;
  if (typeof log === "object" && log !== null) return levelOf((log as Record<string, unknown>).level);
  return undefined;
}

function jsonTraceId(object: Record<string, unknown>): string | undefined {
  for (const key of TRACE_KEYS) {
    const id = traceIdOf(object[key]);
    if (id) return id;
  }
  const trace = object.trace;
  if (typeof trace === "object" && trace !== null) {
    const id = traceIdOf((trace as Record<string, unknown>).id);
    if (id) return id;
  } else {
    const id = traceIdOf(trace);
    if (id) return id;
  }
  // A traceparent under any name (`traceparent`, `w3c`, `parent`…): the value's shape decides.
  for (const v of Object.values(object)) {
    if (typeof v === "string" && v.length === 55) {
      const ctx = parseTraceparent(v);
      if (ctx) return ctx.traceId;
    }
  }
  return undefined;
}

/** A trace id as the span store keeps it (32 lower-case hex; 16 are left-padded), or undefined. */
function traceIdOf(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  const id = value.trim().toLowerCase();
  if (id.length === 55) return parseTraceparent(id)?.traceId;
  if (!TRACE_ID.test(id) || /^0+$/.test(id)) return undefined;
  return id.padStart(32, "0");
}
