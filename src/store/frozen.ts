/**
 * Freezing what the stores hand out. Objects read from a store are shared by
 * every reader and watcher, so none of them may be able to change another's view.
 */

import { HerdError } from "../common/errors.ts";

/** Freezes `value` and everything reachable from it; returns it for chaining. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** The JSON text of a value to store; throws when the value has no JSON form (e.g. undefined). */
export function toJson(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined)
    throw new HerdError("invalid", "a stored value must have a JSON form; got undefined");
  return text;
}

/** A fresh, deep-frozen copy of stored JSON text. */
export function fromJson<T>(text: string): T {
  return deepFreeze(JSON.parse(text) as T);
}
