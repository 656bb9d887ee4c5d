// A broker's parameters typed into a form as JSON (docs/addons.md): the
// object the API's `parameters` field takes, or an error that names the field.

/** `text` as a JSON object; undefined when empty. */
export function parametersOf(text: string): Record<string, unknown> | undefined {
  if (text.trim() === "") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`parameters: not JSON (${(err as Error).message})`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new Error('parameters: must be a JSON object, e.g. {"size": 10}');
  return value as Record<string, unknown>;
}
