/**
 * Validation with TypeBox's compiler instead of Fastify's Ajv, for routes
 * whose input has the same schema as herd.yaml: errors then read the same in
 * both places (one per field, with the field's description), and the schemas
 * still reach the OpenAPI document.
 */

import type { TSchema } from "@sinclair/typebox";
import { type TypeCheck, TypeCompiler } from "@sinclair/typebox/compiler";
import { Value } from "@sinclair/typebox/value";
import type { FastifySchemaCompiler } from "fastify";
import { HerdError } from "../common/errors.ts";
import { schemaProblems } from "../model/live-config.ts";

/** The parts of a request a route checks. */
export interface TypeboxParts {
  params?: TSchema;
  querystring?: TSchema;
  body?: TSchema;
}

const PREFIX: Record<string, string> = { params: "params.", querystring: "query.", body: "" };

/**
 * A per-route `validatorCompiler`: params and query strings are converted
 * ("5" → 5) before the check; body fields are named as in herd.yaml (no prefix).
 */
export function typeboxValidator(parts: TypeboxParts): FastifySchemaCompiler<unknown> {
  return ({ httpPart }) => {
    const part = (httpPart ?? "body") as keyof TypeboxParts;
    const schema = parts[part];
    if (schema === undefined) return (data: unknown) => ({ value: data });
    const convert = part !== "body";
    // Compiled at the route's first request, not at start (as lazy-compilers.ts does for Fastify's).
    let compiled: TypeCheck<typeof schema> | undefined;
    return (data: unknown) => {
      compiled ??= TypeCompiler.Compile(schema);
      const check = compiled;
      const value = convert ? Value.Convert(schema, data ?? {}) : data;
      if (check.Check(value)) return { value };
      const details = schemaProblems(check as TypeCheck<never>, value, PREFIX[part] ?? "");
      return {
        error: new HerdError("invalid", `${details[0].field}: ${details[0].message}`, details),
      };
    };
  };
}
