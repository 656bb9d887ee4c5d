/**
 * POST /apps/:app/dependencies/check: the dependsOn of a herd.yaml about to be
 * deployed, checked against the tenant's other apps as they are now
 * (controllers/dependencies.ts). 400 naming an unknown service or the cycle
 * (`a/web → b/api → a/web`); `herd deploy` asks before it uploads, and the
 * deploy checks again when it makes the release.
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { checkDependencies } from "../../controllers/dependencies.ts";
import { DependsOnSchema } from "../../model/dependencies.ts";
import type { ApiDeps } from "../deps.ts";
import { AppParams, Name, TenantQuery, tenantOf } from "../schemas.ts";

const CheckBody = T.Object(
  {
    services: T.Record(Name, T.Object({ dependsOn: T.Optional(DependsOnSchema) }), {
      minProperties: 1,
      maxProperties: 200,
    }),
  },
  { additionalProperties: false },
);

export function dependencyRoutes(api: FastifyInstance, deps: ApiDeps): void {
  api.post(
    "/apps/:app/dependencies/check",
    {
      schema: {
        summary:
          "Check a herd.yaml's dependsOn against the tenant's apps: 400 naming an unknown service or a cycle",
        tags: ["apps"],
        params: AppParams,
        querystring: TenantQuery,
        body: CheckBody,
      },
    },
    async (req) => {
      const { app } = req.params as { app: string };
      const { services } = req.body as { services: Record<string, { dependsOn?: string[] }> };
      await checkDependencies(deps.store, tenantOf(req), app, services);
      return { ok: true };
    },
  );
}
