// A broker's parameters typed into a form as JSON (docs/addons.md): the
// object the API's `parameters` field takes, or an error that names the field.

import { parseJsonObject } from "../../src/common/json-object.ts";

/** `text` as a JSON object; undefined when empty. */
export function parametersOf(text: string): Record<string, unknown> | undefined {
  if (text.trim() === "") return undefined;
  try {
    return parseJsonObject(text);
  } catch (err) {
    throw new Error(`parameters: ${(err as Error).message}`);
  }
}
