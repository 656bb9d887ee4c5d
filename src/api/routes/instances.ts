/**
 * `GET /instances`: every instance of the tenant in one call (the console's
 * overview counts running against desired for every app without a call per app).
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { Instance } from "../../model/objects.ts";
import type { ApiDeps } from "../deps.ts";
import { Name, tenantOf } from "../schemas.ts";

const InstancesQuery = T.Object(
  { tenant: T.Optional(Name), app: T.Optional(Name) },
  { additionalProperties: false },
);

export function instanceRoutes(api: FastifyInstance, deps: ApiDeps): void {
  api.get(
    "/instances",
    {
      schema: {
        summary: "The tenant's instances (all apps, or ?app=), by app, service and age",
        tags: ["apps"],
        querystring: InstancesQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.query as { app?: string };
      const items = (await deps.store.list<Instance>("instance")).items
        .map((o) => o.value)
        .filter((i) => i.tenant === tenant && (app === undefined || i.app === app))
        .sort(
          (a, b) =>
            a.app.localeCompare(b.app) ||
            a.service.localeCompare(b.service) ||
            a.createdAt.localeCompare(b.createdAt),
        );
      return { items };
    },
  );
}
