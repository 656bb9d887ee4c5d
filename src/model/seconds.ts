/**
 * herd.yaml's fields of seconds (health.interval, probe.timeout, a route's
 * timeouts, an aggregation's): a number of seconds, as they always took, or a
 * duration like 2s, 300ms, 5m or 1h (progressive.ts's DURATION_PATTERN), within
 * the field's range. `Seconds({ minimum, maximum, description })` is such a
 * field's schema: TypeBox's check, wherever the schema is checked (herd.yaml,
 * the API's route objects, a gateway reading them), reads the form and the
 * range here, and its error says both (describeError). `secondsMs` turns a
 * checked value into milliseconds for the normalised spec.
 */

import { Kind, Type as T, type TSchema, type TUnsafe, TypeRegistry } from "@sinclair/typebox";
import { DURATION_PATTERN, parseDuration } from "./progressive.ts";

/** The schema kind of a Seconds field (TypeBox checks it with `secondsIn` below). */
const SECONDS_KIND = "Seconds";

/** A Seconds field's range, in seconds. */
export interface SecondsRange {
  minimum: number;
  maximum: number;
}

/**
 * A field of seconds: a number in [minimum, maximum], or a duration string in
 * that range. Its JSON Schema (the OpenAPI document's) is the union of the two
 * forms with the number's bounds; the string's range is checked here too.
 */
export function Seconds(o: SecondsRange & { description: string }): TUnsafe<number | string> {
  return T.Unsafe<number | string>({
    [Kind]: SECONDS_KIND,
    anyOf: [T.Number({ minimum: o.minimum, maximum: o.maximum }), T.String({ pattern: DURATION_PATTERN })],
    description: `${o.description}; ${secondsRule(o)}`,
  });
}

/** The range of a Seconds schema: its number's bounds. */
function rangeOf(schema: TSchema): SecondsRange {
  const number = (schema.anyOf as SecondsRange[])[0];
  return { minimum: number.minimum, maximum: number.maximum };
}

/** Whether `value` is a number of seconds or a duration within the schema's range. */
function secondsIn(schema: TSchema, value: unknown): boolean {
  const { minimum, maximum } = rangeOf(schema);
  if (typeof value === "number") return Number.isFinite(value) && value >= minimum && value <= maximum;
  if (typeof value !== "string" || !new RegExp(DURATION_PATTERN).test(value)) return false;
  return parseDuration(value, Math.round(minimum * 1000), Math.round(maximum * 1000)) !== undefined;
}

TypeRegistry.Set(SECONDS_KIND, secondsIn);

/** A checked Seconds value in milliseconds: 2 → 2000, 0.05 → 50, "300ms" → 300, "5m" → 300000. */
export function secondsMs(value: number | string): number {
  const ms = parseDuration(value, 0, Number.POSITIVE_INFINITY);
  if (ms === undefined) throw new Error(`not a number of seconds nor a duration: ${value}`);
  return ms;
}

/** Seconds as a duration herd.yaml takes: 0.05 → "50ms", 1 → "1s", 300 → "5m", 86400 → "24h". */
export function formatSeconds(seconds: number): string {
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** What a Seconds field takes: "a duration like 300ms, 2s or 1m (or a number of seconds), from 50ms to 5m". */
export function secondsRule({ minimum, maximum }: SecondsRange): string {
  const examples = [0.3, 2, 60, 3600]
    .filter((s) => s >= minimum && s <= maximum)
    .slice(0, 3)
    .map(formatSeconds);
  const like =
    examples.length > 1
      ? `${examples.slice(0, -1).join(", ")} or ${examples.at(-1)}`
      : (examples[0] ?? formatSeconds(minimum));
  return `a duration like ${like} (or a number of seconds), from ${formatSeconds(minimum)} to ${formatSeconds(maximum)}`;
}

/** The error of a value a Seconds schema refused, as herd.yaml's messages say it; undefined for another schema. */
export function secondsProblem(schema: unknown, value: unknown): string | undefined {
  if (typeof schema !== "object" || schema === null || (schema as TSchema)[Kind] !== SECONDS_KIND)
    return undefined;
  const given =
    typeof value === "string" || typeof value === "number" ? String(value) : JSON.stringify(value);
  return `must be ${secondsRule(rangeOf(schema as TSchema))}; got ${given}`;
}
