/**
 * herd.yaml's fields of seconds (health.interval, probe.timeout, a route's
 * timeouts, an aggregation's, breaker.open, outlier.ejection, cors.maxAge): a
 * number of seconds, as they always took, or a duration like 2s, 300ms, 5m or
 * 1h (progressive.ts's DURATION_PATTERN), within the field's range.
 * `Seconds({ minimum, maximum, description })` is such a field's schema:
 * TypeBox's check, wherever the schema is checked (herd.yaml, the API's route
 * objects and traffic overrides, a gateway reading them), reads the form and
 * the range here, and its error says both (describeError). `whole: true` is a
 * field a header carries in whole seconds (cors.maxAge): a whole number, or a
 * duration of whole seconds (10m, 2000ms; not 1500ms). `secondsMs` turns a
 * checked value into milliseconds for the normalised spec.
 */

import { Kind, Type as T, type TSchema, type TUnsafe, TypeRegistry } from "@sinclair/typebox";
import { DURATION, DURATION_PATTERN, parseDuration } from "./progressive.ts";

/** The schema kind of a Seconds field (TypeBox checks it with `secondsIn` below). */
const SECONDS_KIND = "Seconds";

/** A Seconds field's range, in seconds; `whole`: whole seconds only. */
export interface SecondsRange {
  minimum: number;
  maximum: number;
  whole?: boolean;
}

/**
 * A field of seconds: a number in [minimum, maximum], or a duration string in
 * that range (with `whole`, a whole number and a duration of whole seconds).
 * Its JSON Schema (the OpenAPI document's) is the union of the two forms with
 * the number's bounds (an integer's, with `whole`); the string's range is
 * checked here too.
 */
export function Seconds(o: SecondsRange & { description: string }): TUnsafe<number | string> {
  const bounds = { minimum: o.minimum, maximum: o.maximum };
  return T.Unsafe<number | string>({
    [Kind]: SECONDS_KIND,
    anyOf: [o.whole ? T.Integer(bounds) : T.Number(bounds), T.String({ pattern: DURATION_PATTERN })],
    description: `${o.description}; ${secondsRule(o)}`,
  });
}

/** The range of a Seconds schema: its number's bounds, whole when that number is an integer. */
function rangeOf(schema: TSchema): SecondsRange {
  const number = (schema.anyOf as (SecondsRange & { type: string })[])[0];
  return { minimum: number.minimum, maximum: number.maximum, whole: number.type === "integer" };
}

/** Whether `value` is a number of seconds or a duration within the schema's range (whole seconds, when it says so). */
function secondsIn(schema: TSchema, value: unknown): boolean {
  const { minimum, maximum, whole } = rangeOf(schema);
  if (typeof value === "number")
    return (whole ? Number.isInteger(value) : Number.isFinite(value)) && value >= minimum && value <= maximum;
  if (typeof value !== "string" || !DURATION.test(value)) return false;
  const ms = parseDuration(value, Math.round(minimum * 1000), Math.round(maximum * 1000));
  return ms !== undefined && (!whole || ms % 1000 === 0);
}

TypeRegistry.Set(SECONDS_KIND, secondsIn);

/** A checked Seconds value in milliseconds: 2 → 2000, 0.05 → 50, "300ms" → 300, "5m" → 300000. */
export function secondsMs(value: number | string): number {
  const ms = parseDuration(value, 0, Number.POSITIVE_INFINITY);
  if (ms === undefined) throw new Error(`not a number of seconds nor a duration: ${value}`);
  return ms;
}

/** Seconds as a duration herd.yaml takes: 0 → "0s", 0.05 → "50ms", 1 → "1s", 300 → "5m", 86400 → "24h". */
export function formatSeconds(seconds: number): string {
  if (seconds === 0) return "0s";
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/**
 * What a Seconds field takes: "a duration like 300ms, 2s or 1m (or a number
 * of seconds), from 50ms to 5m"; whole: "a duration in whole seconds like 2s,
 * 1m or 1h (or a whole number of seconds), from 0s to 24h".
 */
export function secondsRule({ minimum, maximum, whole }: SecondsRange): string {
  const examples = [0.3, 2, 60, 3600]
    .filter((s) => s >= minimum && s <= maximum && (!whole || Number.isInteger(s)))
    .slice(0, 3)
    .map(formatSeconds);
  const like =
    examples.length > 1
      ? `${examples.slice(0, -1).join(", ")} or ${examples.at(-1)}`
      : (examples[0] ?? formatSeconds(minimum));
  const range = `from ${formatSeconds(minimum)} to ${formatSeconds(maximum)}`;
  return whole
    ? `a duration in whole seconds like ${like} (or a whole number of seconds), ${range}`
    : `a duration like ${like} (or a number of seconds), ${range}`;
}

/** The error of a value a Seconds schema refused, as herd.yaml's messages say it; undefined for another schema. */
export function secondsProblem(schema: unknown, value: unknown): string | undefined {
  if (typeof schema !== "object" || schema === null || (schema as TSchema)[Kind] !== SECONDS_KIND)
    return undefined;
  const given =
    typeof value === "string" || typeof value === "number" ? String(value) : JSON.stringify(value);
  return `must be ${secondsRule(rangeOf(schema as TSchema))}; got ${given}`;
}
