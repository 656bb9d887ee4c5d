/**
 * An app's deploy history: every deploy and rollback, newest first, with who
 * started it, how long it took and, for a failed one, why. Each deploy's log
 * (build output and rollout steps) is read at /apps/:app/deploys/:id/log
 * (apps.ts) while it is kept: the last `keepPerApp` finished deploys of an app.
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { appKey, type Deploy } from "../../model/objects.ts";
import type { ApiDeps } from "../deps.ts";
import { AppParams, Name, tenantOf } from "../schemas.ts";
import { existingApp } from "./existing-app.ts";

/** One line of the history. */
export type DeployView = Deploy & {
  /** From start to finish (absent while it runs). */
  durationMs?: number;
  /** Whether its log is still kept (older deploys' logs are removed). */
  log: boolean;
};

const DeploysQuery = T.Object({
  tenant: T.Optional(Name),
  limit: T.Optional(T.Integer({ minimum: 1, maximum: 1000, description: "newest first; default 50" })),
});

export function deployRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store, deployLogs } = deps;
  api.get(
    "/apps/:app/deploys",
    {
      schema: {
        summary: "An app's deploys and rollbacks, newest first: state, release, who, when, duration, error",
        tags: ["deploys"],
        params: AppParams,
        querystring: DeploysQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      const limit = (req.query as { limit?: number }).limit ?? 50;
      await existingApp(store, tenant, app);
      const deploys = (await store.list<Deploy>("deploy", { prefix: `${appKey(tenant, app)}/` })).items
        .map((o) => o.value)
        .sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id));
      const items: DeployView[] = deploys.slice(0, limit).map((d) => ({
        ...d,
        ...(d.finishedAt ? { durationMs: Date.parse(d.finishedAt) - Date.parse(d.createdAt) } : {}),
        log: deployLogs.has(d.id),
      }));
      return { items, total: deploys.length, logsKept: deployLogs.keepPerApp };
    },
  );
}
