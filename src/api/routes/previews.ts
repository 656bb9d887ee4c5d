/**
 * Preview apps (model/pipeline.ts): a short-lived copy of an app, named
 * `<app>-<name>`, that the previews controller destroys after its TTL.
 * `herd deploy --preview NAME` creates (or renews) one here, then deploys to it.
 *
 *   POST   /apps/:app/previews           {name, ttl?}: create or renew; 201/200 (deployer)
 *   GET    /previews                     every preview of the tenant, with its deadline (viewer)
 *   DELETE /apps/:app/previews/:name     destroy it now (deployer)
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { conflict, invalid, notFound } from "../../common/errors.ts";
import { type App, appKey } from "../../model/objects.ts";
import {
  PREVIEW_TTL_DEFAULT_MS,
  type Preview,
  parsePreviewTtl,
  previewAppName,
  previewKey,
} from "../../model/pipeline.ts";
import type { ApiDeps } from "../deps.ts";
import { AppParams, Name, TenantQuery, tenantOf } from "../schemas.ts";
import { existingApp } from "./existing-app.ts";

const CreateBody = T.Object(
  {
    name: Name,
    ttl: T.Optional(
      T.String({ maxLength: 20, description: "how long it lives: 30m, 24h … (1s to 30 days; default 24h)" }),
    ),
  },
  { additionalProperties: false },
);
const PreviewParams = T.Object({ app: Name, name: Name });

export function previewRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store } = deps;

  api.post(
    "/apps/:app/previews",
    {
      schema: {
        summary: "Create or renew a preview app of this app; deploy to the `app` it returns",
        tags: ["previews"],
        params: AppParams,
        querystring: TenantQuery,
        body: CreateBody,
      },
    },
    async (req, reply) => {
      const tenant = tenantOf(req);
      const of = (req.params as { app: string }).app;
      const body = req.body as { name: string; ttl?: string };
      const ttlMs = body.ttl === undefined ? PREVIEW_TTL_DEFAULT_MS : parsePreviewTtl(body.ttl);
      if (ttlMs === undefined)
        throw invalid(`ttl ${body.ttl} is not a duration between 1s and 30 days (e.g. 30m, 24h)`, [
          { field: "ttl", message: "must be a duration like 30m or 24h, between 1s and 30 days" },
        ]);
      const app = previewAppName(of, body.name);
      if (typeof app !== "string") throw invalid(`${app.field}: ${app.message}`, [app]);
      const now = Date.now();
      const existing = await store.get<Preview>("preview", previewKey(tenant, app));
      const target = await store.get<App>("app", appKey(tenant, app));
      if (target?.value.destroying)
        throw conflict(`preview app ${app} is being destroyed; try again shortly`);
      if (existing && existing.value.of !== of)
        throw conflict(
          `${app} is preview ${existing.value.name} of ${existing.value.of}; pick another preview name`,
        );
      if (target && !existing)
        throw conflict(`app ${app} exists and is not a preview; pick another preview name`);
      const preview: Preview = {
        tenant,
        app,
        of,
        name: body.name,
        createdAt: existing?.value.createdAt ?? new Date(now).toISOString(),
        expiresAt: new Date(now + ttlMs).toISOString(),
      };
      // The deadline is stored before the app exists: a crash in between leaves a record the controller cleans up.
      await store.put("preview", previewKey(tenant, app), preview, {
        expectRevision: existing?.revision ?? 0,
      });
      if (!target) {
        const created: App = {
          tenant,
          name: app,
          createdAt: preview.createdAt,
          release: null,
          latestVersion: 0,
        };
        await store.put("app", appKey(tenant, app), created, { expectRevision: 0 });
        await deps.events.record({
          tenant,
          app,
          reason: "PreviewCreated",
          message: `preview ${body.name} of ${of} created; destroyed at ${preview.expiresAt}`,
        });
      }
      reply.code(existing ? 200 : 201);
      return preview;
    },
  );

  api.get(
    "/previews",
    { schema: { summary: "Preview apps and their deadlines", tags: ["previews"], querystring: TenantQuery } },
    async (req) => ({
      items: (await store.list<Preview>("preview", { prefix: `${tenantOf(req)}/` })).items.map(
        (o) => o.value,
      ),
    }),
  );

  api.delete(
    "/apps/:app/previews/:name",
    {
      schema: {
        summary: "Destroy a preview app now",
        tags: ["previews"],
        params: PreviewParams,
        querystring: TenantQuery,
      },
    },
    async (req, reply) => {
      const tenant = tenantOf(req);
      const { app: of, name } = req.params as { app: string; name: string };
      const app = `${of}-${name}`;
      const pv = await store.get<Preview>("preview", previewKey(tenant, app));
      if (!pv) throw notFound(`app ${of} has no preview ${name} (herd previews list)`);
      // Due now: the previews controller destroys it within a second, as for an expired one.
      await store.put(
        "preview",
        pv.key,
        { ...pv.value, expiresAt: new Date().toISOString() },
        { expectRevision: pv.revision },
      );
      const o = await existingApp(store, tenant, app).catch(() => undefined);
      reply.code(202);
      return { app, destroying: o !== undefined };
    },
  );
}
