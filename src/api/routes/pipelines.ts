/**
 * Pipelines and promotion (model/pipeline.ts, controllers/environments.ts):
 *
 *   POST   /pipelines                  create {name, stages: [{name, app}]} (deployer)
 *   GET    /pipelines                  list (viewer)
 *   GET    /pipelines/:name            one, with each stage's serving release and slug (viewer)
 *   DELETE /pipelines/:name            delete the grouping; the apps stay (deployer)
 *   POST   /pipelines/:name/promote    {from, to, version?}: the same slug to the next stage (deployer)
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { conflict, invalid, notFound } from "../../common/errors.ts";
import { promote } from "../../controllers/environments.ts";
import { type App, appKey, type Release, releaseKey } from "../../model/objects.ts";
import { type Pipeline, pipelineKey, validateStages } from "../../model/pipeline.ts";
import type { ApiDeps } from "../deps.ts";
import { Name, TenantQuery, tenantOf } from "../schemas.ts";
import { actorOf } from "./secrets.ts";

const PipelineParams = T.Object({ name: Name });
const CreateBody = T.Object(
  {
    name: Name,
    stages: T.Array(T.Object({ name: Name, app: Name }, { additionalProperties: false }), {
      minItems: 2,
      maxItems: 10,
      description: "the environments in promotion order, e.g. staging then production",
    }),
  },
  { additionalProperties: false },
);
const PromoteBody = T.Object(
  {
    from: Name,
    to: Name,
    version: T.Optional(
      T.Integer({ minimum: 1, description: "the source's release (default: the serving one)" }),
    ),
  },
  { additionalProperties: false },
);

export function pipelineRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store } = deps;
  const getPipeline = async (tenant: string, name: string) => {
    const o = await store.get<Pipeline>("pipeline", pipelineKey(tenant, name));
    if (!o) throw notFound(`pipeline ${name} does not exist (herd pipelines lists them)`);
    return o;
  };

  api.post(
    "/pipelines",
    {
      schema: {
        summary: "Create a pipeline of environments",
        tags: ["pipelines"],
        querystring: TenantQuery,
        body: CreateBody,
      },
    },
    async (req, reply) => {
      const tenant = tenantOf(req);
      const body = req.body as { name: string; stages: Pipeline["stages"] };
      const problems = validateStages(body.stages);
      if (problems.length > 0) throw invalid(`${problems[0]!.field}: ${problems[0]!.message}`, problems);
      const pipeline: Pipeline = {
        tenant,
        name: body.name,
        stages: body.stages,
        createdAt: new Date().toISOString(),
      };
      try {
        await store.put("pipeline", pipelineKey(tenant, body.name), pipeline, { expectRevision: 0 });
      } catch (err) {
        if ((err as { code?: string }).code === "conflict")
          throw conflict(`pipeline ${body.name} already exists`);
        throw err;
      }
      reply.code(201);
      return pipeline;
    },
  );

  api.get(
    "/pipelines",
    { schema: { summary: "List pipelines", tags: ["pipelines"], querystring: TenantQuery } },
    async (req) => ({
      items: (await store.list<Pipeline>("pipeline", { prefix: `${tenantOf(req)}/` })).items.map(
        (o) => o.value,
      ),
    }),
  );

  api.get(
    "/pipelines/:name",
    {
      schema: {
        summary: "One pipeline: each stage's app, serving release and slug digest",
        tags: ["pipelines"],
        params: PipelineParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const p = (await getPipeline(tenant, (req.params as { name: string }).name)).value;
      const stages = [];
      for (const s of p.stages) {
        const app = (await store.get<App>("app", appKey(tenant, s.app)))?.value;
        const release =
          app?.release != null
            ? (await store.get<Release>("release", releaseKey(tenant, s.app, app.release)))?.value
            : undefined;
        stages.push({
          ...s,
          exists: app !== undefined,
          release: release?.version ?? null,
          slug: release?.slug ?? null,
          ...(release?.promotedFrom ? { promotedFrom: release.promotedFrom } : {}),
        });
      }
      return { ...p, stages };
    },
  );

  api.delete(
    "/pipelines/:name",
    {
      schema: {
        summary: "Delete a pipeline (its apps stay)",
        tags: ["pipelines"],
        params: PipelineParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const o = await getPipeline(tenantOf(req), (req.params as { name: string }).name);
      await store.delete("pipeline", o.key);
      return { deleted: o.value.name };
    },
  );

  api.post(
    "/pipelines/:name/promote",
    {
      schema: {
        summary: "Promote: ship a stage's release (same slug, no build) to a later stage's app",
        description:
          "The target keeps its own env values, secrets, config, instance counts and real-domain routes; `<source>.localhost` hosts become `<target>.localhost`. Follow the deploy at /apps/{target}/deploys/{id}/log.",
        tags: ["pipelines"],
        params: PipelineParams,
        querystring: TenantQuery,
        body: PromoteBody,
      },
    },
    async (req, reply) => {
      const body = req.body as { from: string; to: string; version?: number };
      const result = await promote(deps, deps.controllers.deploys, {
        tenant: tenantOf(req),
        pipeline: (req.params as { name: string }).name,
        ...body,
        createdBy: actorOf(req),
      });
      reply.code(202);
      return result;
    },
  );
}
