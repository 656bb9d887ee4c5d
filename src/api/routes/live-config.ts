/**
 * Live configuration: route objects, traffic-policy overrides, and the
 * gateways' reports of what they applied. Changes here reach the gateways
 * through their watch, without a deploy and without a restart.
 *
 *   PUT/GET/DELETE /apps/:app/routes/:name   GET /apps/:app/routes
 *   PATCH /apps/:app/services/:service/traffic
 *   PUT /gateways/:id/status   DELETE /gateways/:id   GET /gateways
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { conflict, HerdError, notFound } from "../../common/errors.ts";
import { checkHostsOwned, checkRouteFree, routeOwners } from "../../controllers/route-owners.ts";
import {
  checkRouteBody,
  checkTrafficBody,
  effectiveTraffic,
  type GatewayReport,
  GatewayReportSchema,
  normalizeRoute,
  patchTraffic,
  type RouteBody,
  RouteBodySchema,
  type RouteObject,
  routeObjectKey,
  routeTargetProblems,
  TrafficBodySchema,
} from "../../model/live-config.ts";
import { type App, appKey, type Service, serviceKey } from "../../model/objects.ts";
import type { StoredObject } from "../../store/store.ts";
import type { ApiDeps } from "../deps.ts";
import { metricsUrlFrom } from "../gateway-book.ts";
import { Name, RevisionQuery, type TenantQ, TenantQuery, tenantOf } from "../schemas.ts";
import { typeboxValidator } from "../validate.ts";
import { existingApp } from "./existing-app.ts";

const AppParams = T.Object({ app: Name });
const RouteParams = T.Object({ app: Name, name: Name });
const ServiceParams = T.Object({ app: Name, service: Name });
const GatewayParams = T.Object({
  id: T.String({ pattern: "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", description: "the gateway's id" }),
});
type Q = TenantQ;

/** One route of an app as GET /apps/:app/routes lists it. */
interface ListedRoute {
  source: "herd.yaml" | "api";
  /** The route object's name (api routes only). */
  name?: string;
  service: string;
  /** Normalised: what the gateway serves. */
  route: ReturnType<typeof normalizeRoute>;
  /** What was PUT (api routes only). */
  spec?: RouteBody;
  revision?: number;
  updatedAt?: string;
}

export function liveConfigRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store, gateways } = deps;
  // Checks and writes of route objects take turns, so two PUTs cannot both claim one host and path.
  let routeWrites: Promise<unknown> = Promise.resolve();
  const serialized = <R>(work: () => Promise<R>): Promise<R> => {
    const run = routeWrites.then(work, work);
    routeWrites = run.catch(() => {});
    return run;
  };

  const liveApp = (tenant: string, name: string): Promise<StoredObject<App>> =>
    existingApp(store, tenant, name);
  const servicesOf = async (tenant: string, app: string) =>
    (await store.list<Service>("service", { prefix: `${appKey(tenant, app)}/` })).items;
  const shown = (o: StoredObject<RouteObject>) => ({ ...o.value, revision: o.revision });

  api.get(
    "/apps/:app/routes",
    {
      schema: {
        summary: "An app's routes: those from herd.yaml (per service) and those set through the API",
        tags: ["routes"],
        params: AppParams,
        querystring: TenantQuery,
      },
      validatorCompiler: typeboxValidator({ params: AppParams, querystring: TenantQuery }),
    },
    async (req) => {
      const tenant = tenantOf(req);
      const app = await liveApp(tenant, (req.params as { app: string }).app);
      const items: ListedRoute[] = [];
      for (const s of await servicesOf(tenant, app.value.name)) {
        for (const route of s.value.spec.routes)
          items.push({ source: "herd.yaml", service: s.value.name, route });
      }
      for (const o of (await store.list<RouteObject>("route", { prefix: `${app.key}/` })).items) {
        let route: ListedRoute["route"];
        try {
          route = normalizeRoute(o.value.app, o.value.spec);
        } catch {
          continue; // damaged (written around the API); GET …/routes/:name still shows it
        }
        items.push({
          source: "api",
          name: o.value.name,
          service: o.value.spec.service,
          route,
          spec: o.value.spec,
          revision: o.revision,
          updatedAt: o.value.updatedAt,
        });
      }
      return { items };
    },
  );

  api.get(
    "/apps/:app/routes/:name",
    {
      schema: {
        summary: "One route object",
        tags: ["routes"],
        params: RouteParams,
        querystring: TenantQuery,
      },
      validatorCompiler: typeboxValidator({ params: RouteParams, querystring: TenantQuery }),
    },
    async (req) => {
      const { app, name } = req.params as { app: string; name: string };
      const o = await store.get<RouteObject>("route", routeObjectKey(tenantOf(req), app, name));
      if (!o) throw notFound(`app ${app} has no route ${name} (herd routes ${app} lists them)`);
      return shown(o);
    },
  );

  api.put(
    "/apps/:app/routes/:name",
    {
      schema: {
        summary: "Create or replace a route: herd.yaml's route fields plus `service`; live, without a deploy",
        description:
          "400 names the field at fault; 409 when another route (of any app, from herd.yaml or the API) serves the same host, path, match, methods and headers, or when `revision` is stale.",
        tags: ["routes"],
        params: RouteParams,
        querystring: RevisionQuery,
        body: RouteBodySchema,
      },
      validatorCompiler: typeboxValidator({
        params: RouteParams,
        querystring: RevisionQuery,
        body: RouteBodySchema,
      }),
    },
    async (req, reply) => {
      const q = req.query as Q;
      const tenant = tenantOf(req);
      const { app, name } = req.params as { app: string; name: string };
      const spec = checkRouteBody(req.body);
      return serialized(async () => {
        const appObj = await liveApp(tenant, app);
        if (appObj.value.destroying) throw conflict(`app ${app} is being destroyed`);
        const services = (await servicesOf(tenant, app)).map((s) => s.value.name);
        if (!services.includes(spec.service)) {
          throw new HerdError(
            "invalid",
            `service: app ${app} has no service ${spec.service} (it has ${services.join(", ") || "none: deploy first"})`,
            [{ field: "service", message: `no service ${spec.service} in app ${app}` }],
          );
        }
        const targets = routeTargetProblems(spec, services);
        if (targets.length > 0) {
          throw new HerdError("invalid", `${targets[0].field}: ${targets[0].message}`, targets);
        }
        const route = normalizeRoute(app, spec);
        const key = routeObjectKey(tenant, app, name);
        const owners = await routeOwners(
          store,
          tenant,
          (o) => o.source === "api" && o.tenant === tenant && o.app === app && o.name === name,
        );
        checkRouteFree(owners, route, "host");
        await checkHostsOwned(store, tenant, [{ host: route.host, field: "host" }]);
        const current = await store.get<RouteObject>("route", key);
        if (q.revision !== undefined && q.revision !== (current?.revision ?? 0)) {
          throw conflict(
            current
              ? `route ${name} changed since revision ${q.revision} (it is at ${current.revision}): read it again`
              : `route ${name} does not exist (expected revision ${q.revision})`,
          );
        }
        const now = new Date().toISOString();
        const value: RouteObject = {
          tenant,
          app,
          name,
          spec,
          createdAt: current?.value.createdAt ?? now,
          updatedAt: now,
        };
        const saved = await store.put("route", key, value, { expectRevision: current?.revision ?? 0 });
        await deps.events.record({
          tenant,
          app,
          service: spec.service,
          reason: current ? "RouteChanged" : "RouteCreated",
          message: `route ${name} (${route.host}${route.path} → ${spec.service}) ${current ? "changed" : "created"}`,
        });
        reply.code(current ? 200 : 201);
        return shown(saved);
      });
    },
  );

  api.delete(
    "/apps/:app/routes/:name",
    {
      schema: {
        summary: "Delete a route object",
        tags: ["routes"],
        params: RouteParams,
        querystring: RevisionQuery,
      },
      validatorCompiler: typeboxValidator({ params: RouteParams, querystring: RevisionQuery }),
    },
    async (req) => {
      const q = req.query as Q;
      const tenant = tenantOf(req);
      const { app, name } = req.params as { app: string; name: string };
      return serialized(async () => {
        const key = routeObjectKey(tenant, app, name);
        const current = await store.get<RouteObject>("route", key);
        if (!current) throw notFound(`app ${app} has no route ${name} (herd routes ${app} lists them)`);
        if (q.revision !== undefined && q.revision !== current.revision) {
          throw conflict(
            `route ${name} changed since revision ${q.revision} (it is at ${current.revision}): read it again`,
          );
        }
        await store.delete("route", key, { expectRevision: current.revision });
        await deps.events.record({
          tenant,
          app,
          service: current.value.spec.service,
          reason: "RouteDeleted",
          message: `route ${name} deleted`,
        });
        return { deleted: shown(current) };
      });
    },
  );

  api.patch(
    "/apps/:app/services/:service/traffic",
    {
      schema: {
        summary:
          "Change a service's traffic policies (breaker, outlier, criticality, concurrency) without a deploy",
        description:
          "Fields as in herd.yaml; `false` turns a policy off, `null` goes back to herd.yaml's. Overrides stay across deploys unless a release changes that policy in herd.yaml.",
        tags: ["routes"],
        params: ServiceParams,
        querystring: RevisionQuery,
        body: TrafficBodySchema,
      },
      validatorCompiler: typeboxValidator({
        params: ServiceParams,
        querystring: RevisionQuery,
        body: TrafficBodySchema,
      }),
    },
    async (req) => {
      const q = req.query as Q;
      const tenant = tenantOf(req);
      const { app, service } = req.params as { app: string; service: string };
      const body = checkTrafficBody(req.body);
      const key = serviceKey(tenant, app, service);
      // The service controller writes services often: retry on its writes unless the caller pinned a revision.
      for (;;) {
        const s = await store.get<Service>("service", key);
        if (!s) throw notFound(`app ${app} has no service ${service}`);
        if (q.revision !== undefined && q.revision !== s.revision) {
          throw conflict(
            `service ${service} changed since revision ${q.revision} (it is at ${s.revision}): read it again`,
          );
        }
        const traffic = patchTraffic(s.value.traffic, body);
        const next: Service = { ...s.value };
        if (Object.keys(traffic).length > 0) next.traffic = traffic;
        else delete next.traffic;
        try {
          const saved = await store.put("service", key, next, { expectRevision: s.revision });
          await deps.events.record({
            tenant,
            app,
            service,
            reason: "TrafficPolicyChanged",
            message: `traffic policies of ${service} set: ${JSON.stringify(body)}`,
          });
          return {
            service: { ...saved.value, revision: saved.revision },
            effective: effectiveTraffic(saved.value),
          };
        } catch (err) {
          if ((err as { code?: string }).code !== "conflict" || q.revision !== undefined) throw err;
        }
      }
    },
  );

  api.put(
    "/gateways/:id/status",
    {
      schema: {
        summary:
          "A gateway reports the config version it applied (ACK) or refused (NACK), and that it is alive",
        tags: ["gateways"],
        params: GatewayParams,
        body: GatewayReportSchema,
      },
      validatorCompiler: typeboxValidator({ params: GatewayParams, body: GatewayReportSchema }),
    },
    async (req) => {
      const body = req.body as GatewayReport;
      const metricsUrl = metricsUrlFrom(body.metricsUrl, req.socket.remoteAddress);
      return gateways.report((req.params as { id: string }).id, {
        ...body,
        ...(metricsUrl ? { metricsUrl } : {}),
      });
    },
  );

  api.delete(
    "/gateways/:id",
    {
      schema: { summary: "A gateway that stops says goodbye", tags: ["gateways"], params: GatewayParams },
      validatorCompiler: typeboxValidator({ params: GatewayParams }),
    },
    async (req, reply) => {
      gateways.remove((req.params as { id: string }).id);
      reply.code(204);
    },
  );

  api.get(
    "/gateways",
    {
      schema: {
        summary: "Gateways: the config version each serves, the control plane's, in sync or not, last error",
        tags: ["gateways"],
      },
    },
    async () => ({ configVersion: gateways.configVersion, items: gateways.list() }),
  );
}
