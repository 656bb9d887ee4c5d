/**
 * Fastify's own schema compilers (Ajv for validation, fast-json-stringify for
 * replies), each route's schemas compiled at its first request instead of at
 * start-up. Fastify compiles every route's validators and serializers when the
 * routes are registered: a few hundred generated functions, their source and
 * Ajv's state for each, held for the life of a control plane that calls a
 * handful of them when idle (docs/benchmarks.md, Footprint).
 *
 *   route registered ─► a stand-in per schema (nothing compiled)
 *   first request    ─► the real compiler, once ─► the compiled function, kept
 *
 * A schema Ajv cannot compile is now an error at the route's first request
 * (a 500) rather than at start-up; the API's tests call every route.
 */

import { createRequire } from "node:module";
import type { FastifyServerOptions } from "fastify";

const require = createRequire(import.meta.url);

/** What Fastify hands a compiler: the route, its part and the schema. */
type RouteSchema = unknown;
type CompilersFactory = NonNullable<
  NonNullable<FastifyServerOptions["schemaController"]>["compilersFactory"]
>;
type Validate = ((this: unknown, data: unknown) => unknown) & { errors?: unknown };
type Serialize = (data: unknown) => string;
type Factory<F> = (externalSchemas: unknown, options: unknown) => (route: RouteSchema) => F;

/** Fastify's `schemaController.compilersFactory`, with its default compilers made lazy. */
export function lazyCompilers(): CompilersFactory {
  const buildValidator = (require("@fastify/ajv-compiler") as () => Factory<Validate>)();
  const buildSerializer = (require("@fastify/fast-json-stringify-compiler") as () => Factory<Serialize>)();
  const lazy: { buildValidator: Factory<Validate>; buildSerializer: Factory<Serialize> } = {
    buildValidator: (externalSchemas, options) => {
      const compile = buildValidator(externalSchemas, options);
      return (route) => lazyValidator(() => compile(route));
    },
    buildSerializer: (externalSchemas, options) => {
      const compile = buildSerializer(externalSchemas, options);
      return (route) => {
        let serialize: Serialize | undefined;
        return (data) => {
          serialize ??= compile(route);
          return serialize(data);
        };
      };
    },
  };
  return lazy as unknown as CompilersFactory;
}

/** A validator compiled at its first call; Fastify reads a failed call's `errors` from it, as from Ajv's. */
function lazyValidator(compile: () => Validate): Validate {
  let real: Validate | undefined;
  const validate: Validate = function (this: unknown, data: unknown) {
    real ??= compile();
    const result = real.call(this, data);
    validate.errors = real.errors;
    return result;
  };
  validate.errors = null;
  return validate;
}
