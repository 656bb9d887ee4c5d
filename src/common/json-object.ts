/**
 * A JSON object typed by a person (a broker's parameters: the CLI's
 * `--params FILE`, the console's form): the object, or an Error that says
 * what is wrong ("not JSON: …", "must be a JSON object"); the caller names
 * the field. No Node built-ins: the console uses it too.
 */
export function parseJsonObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`not JSON (${(err as Error).message})`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new Error('must be a JSON object, e.g. {"size": 10}');
  return value as Record<string, unknown>;
}
