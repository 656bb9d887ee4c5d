/**
 * Live load figures (docs/load-figures.md): gateways report each second,
 * people and `herd autoscale status` read an app's figures.
 *
 *   PUT /gateways/:id/load   a gateway process's last interval (LoadReport, model/load.ts) ─► LiveLoad
 *   GET /apps/:app/load      each service's figures over ?window= (default 60s), and per instance
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { HerdError } from "../../common/errors.ts";
import { LATENCY_BUCKETS_MS, type LoadReport } from "../../model/load.ts";
import { appKey, type Service, serviceKey } from "../../model/objects.ts";
import { parseDuration } from "../../observe/promql/parser.ts";
import type { ApiDeps } from "../deps.ts";
import { Name, tenantOf } from "../schemas.ts";
import { typeboxValidator } from "../validate.ts";
import { existingApp } from "./existing-app.ts";

/** Most services one report may name, and instances per service. */
export const MAX_REPORTED_SERVICES = 2000;
export const MAX_REPORTED_INSTANCES = 500;
/** The longest window GET /apps/:app/load answers for (what LiveLoad keeps). */
const MAX_WINDOW_MS = 10 * 60_000;

const Count = T.Integer({ minimum: 0, maximum: 1e9, description: "per interval and reporter" });
const Histogram = T.Array(Count, {
  minItems: LATENCY_BUCKETS_MS.length + 1,
  maxItems: LATENCY_BUCKETS_MS.length + 1,
  description: `counts per latency bound (${LATENCY_BUCKETS_MS.join(", ")} ms), then slower`,
});

const InstanceLoadSchema = T.Object(
  {
    instance: T.String({ minLength: 1, maxLength: 128 }),
    release: T.Integer({ minimum: 0 }),
    requests: Count,
    errors: Count,
    inflight: Count,
    latency: Histogram,
  },
  { additionalProperties: false },
);

const ServiceLoadSchema = T.Object(
  {
    service: T.String({
      pattern: "^[a-z0-9-]+/[a-z0-9-]+/[a-z0-9-]+$",
      maxLength: 200,
      description: "the service key: tenant/app/service",
    }),
    requests: Count,
    errors: Count,
    shed: Count,
    inflight: Count,
    waiting: Count,
    lastRequestAt: T.Optional(T.Integer({ minimum: 0 })),
    latency: Histogram,
    instances: T.Array(InstanceLoadSchema, { maxItems: MAX_REPORTED_INSTANCES }),
  },
  { additionalProperties: false },
);

/** `PUT /gateways/:id/load`: the body, as model/load.ts LoadReport. */
export const LoadReportSchema = T.Object(
  {
    at: T.Integer({
      minimum: 0,
      description: "end of the interval, ms since the epoch (the gateway's clock)",
    }),
    intervalMs: T.Integer({ minimum: 1, maximum: 600_000 }),
    services: T.Array(ServiceLoadSchema, { maxItems: MAX_REPORTED_SERVICES }),
  },
  { additionalProperties: false },
);

const ReporterParams = T.Object({
  id: T.String({
    pattern: "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
    description: "the reporting gateway process's id",
  }),
});
const AppParams = T.Object({ app: Name });
const LoadQuery = T.Object({
  tenant: T.Optional(Name),
  window: T.Optional(
    T.String({
      pattern: "^[0-9]{1,6}(ms|s|m)$",
      description: "how far back the figures look: 250ms … 10m (default 60s)",
    }),
  ),
});

export function loadRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store, load } = deps;

  api.put(
    "/gateways/:id/load",
    {
      schema: {
        summary:
          "A gateway process reports its last interval's traffic per service and instance (every second)",
        tags: ["gateways"],
        params: ReporterParams,
        body: LoadReportSchema,
      },
      validatorCompiler: typeboxValidator({ params: ReporterParams, body: LoadReportSchema }),
    },
    async (req, reply) => {
      const report = req.body as LoadReport;
      for (let i = 0; i < report.services.length; i++) {
        const s = report.services[i];
        if (s.errors > s.requests) {
          throw new HerdError("invalid", `services.${i}.errors: more errors than requests`, [
            { field: `services.${i}.errors`, message: "more errors than requests" },
          ]);
        }
      }
      load.record((req.params as { id: string }).id, report);
      reply.code(204);
    },
  );

  api.get(
    "/apps/:app/load",
    {
      schema: {
        summary:
          "Live load of an app's services over a window: rate, errors, latency, in flight, per instance",
        tags: ["apps"],
        params: AppParams,
        querystring: LoadQuery,
      },
      validatorCompiler: typeboxValidator({ params: AppParams, querystring: LoadQuery }),
    },
    async (req) => {
      const tenant = tenantOf(req);
      const app = (req.params as { app: string }).app;
      const query = req.query as { window?: string };
      const windowMs = query.window === undefined ? 60_000 : (parseDuration(query.window) ?? 0);
      if (windowMs < 250 || windowMs > MAX_WINDOW_MS) {
        throw new HerdError("invalid", "querystring.window: between 250ms and 10m", [
          { field: "querystring.window", message: "between 250ms and 10m" },
        ]);
      }
      await existingApp(store, tenant, app);
      const services = (await store.list<Service>("service", { prefix: `${appKey(tenant, app)}/` })).items;
      return {
        app,
        tenant,
        windowMs,
        services: services.map(({ value }) => {
          const key = serviceKey(tenant, app, value.name);
          return {
            service: value.name,
            figures: load.service(key, windowMs) ?? null,
            instances: load.instances(key, windowMs),
          };
        }),
      };
    },
  );
}
