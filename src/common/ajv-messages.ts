/**
 * What an Ajv validation error says, in herd's words (as herd.yaml's errors
 * say it, model/manifest-messages.ts): "is missing", "must be a whole
 * number", "must be at least 0" instead of Ajv's "must have required
 * property 'x'", "must be integer", "must be >= 0". Used by the API's error
 * handler (api/app.ts) and a broker's parameter check (addons/parameters.ts).
 */

/** The part of an Ajv ErrorObject these messages read. */
export interface AjvError {
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

const TYPES: Record<string, string> = {
  integer: "a whole number",
  number: "a number",
  string: "a string",
  boolean: "true or false",
  object: "an object",
  array: "a list",
  null: "null",
};

const plural = (n: unknown, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** The message of one error, about its field (the field itself is named by the caller). */
export function ajvMessage(e: AjvError): string {
  const p = e.params;
  switch (e.keyword) {
    case "required":
      return "is missing";
    case "additionalProperties":
      return "is not a known field";
    case "type": {
      const types = String(p.type ?? "")
        .split(",")
        .map((t) => TYPES[t] ?? t);
      return `must be ${types.join(" or ")}`;
    }
    case "enum":
      return `must be one of ${(p.allowedValues as unknown[] | undefined)?.join(", ")}`;
    case "const":
      return `must be ${JSON.stringify(p.allowedValue)}`;
    case "minimum":
      return p.comparison === ">" ? `must be above ${p.limit}` : `must be at least ${p.limit}`;
    case "maximum":
      return p.comparison === "<" ? `must be below ${p.limit}` : `must be at most ${p.limit}`;
    case "exclusiveMinimum":
      return `must be above ${p.limit}`;
    case "exclusiveMaximum":
      return `must be below ${p.limit}`;
    case "minLength":
      return p.limit === 1
        ? "must not be empty"
        : `must be at least ${plural(p.limit, "character", "characters")}`;
    case "maxLength":
      return `must be at most ${plural(p.limit, "character", "characters")}`;
    case "minItems":
      return `must have at least ${plural(p.limit, "item", "items")}`;
    case "maxItems":
      return `must have at most ${plural(p.limit, "item", "items")}`;
    case "minProperties":
      return `must have at least ${plural(p.limit, "entry", "entries")}`;
    case "maxProperties":
      return `must have at most ${plural(p.limit, "entry", "entries")}`;
    case "uniqueItems":
      return `must not repeat an item (items ${p.j} and ${p.i} are the same)`;
    case "pattern":
      return `must match ${p.pattern}`;
    case "format":
      return `must be ${p.format === "date-time" ? "a date and time like 2026-12-31T23:59:00Z" : `a valid ${p.format}`}`;
    case "multipleOf":
      return `must be a multiple of ${p.multipleOf}`;
    default:
      return e.message ?? "is invalid";
  }
}

/** The field an error is about: its path, and the property it misses or should not have. */
export function ajvField(where: string, e: AjvError & { instancePath: string }): string {
  const missing = e.params.missingProperty as string | undefined;
  const extra = e.params.additionalProperty as string | undefined;
  const path = e.instancePath
    .split("/")
    .filter(Boolean)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  return [where, ...path, missing ?? extra].filter(Boolean).join(".");
}
