/**
 * Provision and update parameters of a broker's add-on, checked against the
 * JSON Schema the broker's catalog gives for the plan (OSB `schemas.
 * service_instance.create|update.parameters`) before the broker is asked.
 * A refusal is a 400 whose fields name the parameter: `parameters.size`.
 *
 *   catalog ─► compileSchema (a schema that does not compile is the broker's error, at registration)
 *   create/update {parameters} ─► checkParameters ─► 400 details [{field: "parameters.x", message}]
 */

import { Ajv, type ValidateFunction } from "ajv";
import { ajvField, ajvMessage } from "../common/ajv-messages.ts";
import { HerdError, invalid } from "../common/errors.ts";

const ajv = new Ajv({ allErrors: true, strict: false, validateSchema: false });
/** Compiled validators by the schema's JSON: a catalog has few schemas, and ajv's own cache is by object. */
const compiled = new Map<string, ValidateFunction>();
const MAX_COMPILED = 500;

/** A validator of the schema; throws naming `where` when the broker's schema does not compile. */
export function compileSchema(schema: Record<string, unknown>, where: string): ValidateFunction {
  // Brokers often declare draft-04; the keywords herd checks read the same in ajv's draft-07.
  const { $schema: _, ...rest } = schema;
  const key = JSON.stringify(rest);
  let v = compiled.get(key);
  if (v) return v;
  try {
    v = ajv.compile(rest);
  } catch (err) {
    throw new HerdError(
      "unavailable",
      `the broker's catalog: the parameters schema of ${where} does not compile: ${(err as Error).message}`,
    );
  }
  if (compiled.size >= MAX_COMPILED) compiled.clear();
  compiled.set(key, v);
  return v;
}

/** Throws 400 naming each parameter `params` gets wrong against `schema` (none: any object passes). */
export function checkParameters(
  schema: Record<string, unknown> | undefined,
  params: Record<string, unknown>,
  where: string,
): void {
  if (!schema) return;
  const validate = compileSchema(schema, where);
  if (validate(params)) return;
  const details = (validate.errors ?? []).map((e) => ({
    field: ajvField("parameters", e),
    message: ajvMessage(e),
  }));
  throw invalid(
    `the parameters do not meet ${where}'s schema: ${details.map((d) => `${d.field} ${d.message}`).join("; ")}`,
    details,
  );
}
