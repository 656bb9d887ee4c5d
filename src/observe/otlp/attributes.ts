/** OTLP KeyValue lists (JSON form, or protobuf turned into it) → plain values. */

import type { Problems } from "../traces/problems.ts";

export type Json = Record<string, unknown>;

export const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** One AnyValue as text: strings as they are, numbers and booleans printed, arrays and maps as JSON. */
export function anyValueText(v: unknown): string | undefined {
  if (!isObject(v)) return undefined;
  if (typeof v.stringValue === "string") return v.stringValue;
  if (typeof v.boolValue === "boolean") return String(v.boolValue);
  if (v.intValue !== undefined) return String(v.intValue);
  if (typeof v.doubleValue === "number") return String(v.doubleValue);
  if (typeof v.bytesValue === "string") return v.bytesValue;
  if (isObject(v.arrayValue)) {
    const values = Array.isArray(v.arrayValue.values) ? v.arrayValue.values : [];
    return JSON.stringify(values.map(anyValueJson));
  }
  if (isObject(v.kvlistValue)) return JSON.stringify(anyValueJson(v));
  return undefined;
}

/** One AnyValue as a JSON value (maps as objects, 64-bit integers as numbers when exact). */
export function anyValueJson(v: unknown): unknown {
  if (!isObject(v)) return null;
  if (isObject(v.kvlistValue)) {
    const obj: Record<string, unknown> = {};
    for (const kv of Array.isArray(v.kvlistValue.values) ? v.kvlistValue.values : []) {
      if (isObject(kv) && typeof kv.key === "string") obj[kv.key] = anyValueJson(kv.value);
    }
    return obj;
  }
  if (isObject(v.arrayValue))
    return (Array.isArray(v.arrayValue.values) ? v.arrayValue.values : []).map(anyValueJson);
  if (v.intValue !== undefined) {
    const n = Number(v.intValue);
    return Number.isSafeInteger(n) ? n : String(v.intValue);
  }
  if (
    typeof v.stringValue === "string" ||
    typeof v.boolValue === "boolean" ||
    typeof v.doubleValue === "number"
  )
    return v.stringValue ?? v.boolValue ?? v.doubleValue;
  return v.bytesValue ?? null;
}

/**
 * A KeyValue list → key → `read(value)` (entries it reads as undefined are
 * left out); a problem for each entry without a string key.
 */
export function keyValues<T>(
  raw: unknown,
  path: string,
  problems: Problems,
  read: (value: unknown) => T | undefined,
): Record<string, T> {
  const out: Record<string, T> = {};
  if (raw === undefined || raw === null) return out;
  if (!Array.isArray(raw)) {
    problems.add(path, "must be an array of {key, value}");
    return out;
  }
  for (let i = 0; i < raw.length; i++) {
    const kv = raw[i];
    if (!isObject(kv) || typeof kv.key !== "string") {
      problems.add(`${path}[${i}].key`, "must be a string");
      continue;
    }
    const value = read(kv.value);
    if (value !== undefined) out[kv.key] = value;
  }
  return out;
}

/** A KeyValue list → key → text; a problem for each entry without a string key. */
export function attributeTexts(raw: unknown, path: string, problems: Problems): Record<string, string> {
  return keyValues(raw, path, problems, anyValueText);
}

/** An array field that may be absent; a problem when it is something else. */
export function listAt(o: Json, key: string, path: string, problems: Problems): unknown[] {
  const v = o[key];
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v;
  problems.add(`${path}.${key}`, "must be an array");
  return [];
}

const DIGITS = /^\d+$/;

/** Nanoseconds since the epoch (decimal string or number) → ms; undefined when absent or 0. */
export function nanosToMs(raw: unknown): number | undefined {
  if (typeof raw === "string") {
    if (raw.length > 20 || !DIGITS.test(raw)) return undefined;
    return raw.length <= 6 ? undefined : Number(raw.slice(0, -6)) || undefined;
  }
  if (typeof raw === "number" && Number.isFinite(raw) && raw > 0) return Math.floor(raw / 1e6);
  return undefined;
}
