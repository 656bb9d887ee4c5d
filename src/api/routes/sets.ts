/**
 * Version sets (herd.set.yaml; controllers/set-controller.ts):
 *
 *   POST /sets                         apply a set: 202 with the new version, applying (deployer)
 *   POST /sets/diff                    per app: the version it serves and the one the set pins (viewer)
 *   GET  /sets/:name                   every version of the set, oldest first (viewer)
 *   GET  /sets/:name/versions/:version one version, with its steps (viewer)
 *   POST /sets/:name/rollback          apply again an earlier applied version (?version=, default the one before) (deployer)
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { SetManifestSchema, validateSetManifest } from "../../model/version-set.ts";
import type { ApiDeps } from "../deps.ts";
import { Name, TenantQuery, tenantOf } from "../schemas.ts";

const SetParams = T.Object({ name: Name });
const VersionParams = T.Object({ name: Name, version: T.Integer({ minimum: 1 }) });
const RollbackQuery = T.Object({ tenant: T.Optional(Name), version: T.Optional(T.Integer({ minimum: 1 })) });

export function setRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const sets = deps.controllers.sets;
  api.post(
    "/sets",
    {
      schema: {
        summary: "Apply a version set: its apps move to their pinned releases, dependencies first",
        tags: ["sets"],
        querystring: TenantQuery,
        body: SetManifestSchema,
      },
    },
    async (req, reply) => {
      const set = await sets.apply(tenantOf(req), validateSetManifest(req.body, "body"));
      reply.code(202);
      return set;
    },
  );
  api.post(
    "/sets/diff",
    {
      schema: {
        summary: "What applying a set would change: per app the version it serves and the one pinned",
        tags: ["sets"],
        querystring: TenantQuery,
        body: SetManifestSchema,
      },
    },
    async (req) => ({ items: await sets.diff(tenantOf(req), validateSetManifest(req.body, "body")) }),
  );
  api.get(
    "/sets/:name",
    {
      schema: {
        summary: "Every version of a set, oldest first",
        tags: ["sets"],
        params: SetParams,
        querystring: TenantQuery,
      },
    },
    async (req) => ({ items: await sets.history(tenantOf(req), (req.params as { name: string }).name) }),
  );
  api.get(
    "/sets/:name/versions/:version",
    {
      schema: {
        summary: "One version of a set and its steps",
        tags: ["sets"],
        params: VersionParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const { name, version } = req.params as { name: string; version: number };
      return sets.get(tenantOf(req), name, version);
    },
  );
  api.post(
    "/sets/:name/rollback",
    {
      schema: {
        summary: "Apply again an earlier applied version of the set (default: the one before the current)",
        tags: ["sets"],
        params: SetParams,
        querystring: RollbackQuery,
      },
    },
    async (req, reply) => {
      const { name } = req.params as { name: string };
      const { version } = req.query as { version?: number };
      const set = await sets.rollback(tenantOf(req), name, version);
      reply.code(202);
      return set;
    },
  );
}
