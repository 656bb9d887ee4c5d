/**
 * `GET /apps/:app/autoscale`: per autoscaled service its count, bounds,
 * target, the figures over the stable and panic windows, the mode (stable,
 * panic, idle) and the last decisions with why (controllers/autoscale.ts).
 * Permission `apps:read`.
 */

import type { FastifyInstance } from "fastify";
import type { ApiDeps } from "../deps.ts";
import { AppParams, TenantQuery, tenantOf } from "../schemas.ts";
import { existingApp } from "./existing-app.ts";

export function autoscaleRoutes(api: FastifyInstance, deps: ApiDeps): void {
  api.get(
    "/apps/:app/autoscale",
    {
      schema: {
        summary: "Autoscaling of an app's services: figures, target, mode and the last decisions",
        description:
          "Only services with `autoscale:` in herd.yaml are listed. Figures are in the target's unit " +
          "(rps, requests in flight, CPU share, p99 ms, the query's value) over the stable and panic windows; " +
          "decisions are the last changes of the count (or refusals), oldest first, kept in memory.",
        tags: ["apps"],
        params: AppParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      await existingApp(deps.store, tenant, app);
      return { items: await deps.controllers.autoscaler.status(tenant, app) };
    },
  );
}
