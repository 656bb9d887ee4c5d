/**
 * Service discovery's registry API (service-endpoints.ts, docs/service-discovery.md):
 *
 *   GET /api/v1/apps/:app/services/:svc/endpoints[?tenant=]               {app, service, version, endpoints}
 *   GET /api/v1/apps/:app/services/:svc/endpoints?since=V[&timeoutMs=N]   the same, once version > V
 *                                                                         (or after N ms, same version)
 *
 * `apps:read` in the service's tenant: a viewer of another tenant gets 403,
 * an unknown service 404.
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { notFound } from "../../common/errors.ts";
import type { ApiDeps } from "../deps.ts";
import { Name, tenantOf } from "../schemas.ts";
import { ServiceEndpoints } from "../service-endpoints.ts";

/** How long one watch stays open at most (and by default): below common 30 s read timeouts. */
const MAX_WAIT_MS = 25_000;

const EndpointParams = T.Object({ app: Name, svc: Name });
const EndpointQuery = T.Object(
  {
    tenant: T.Optional(Name),
    since: T.Optional(
      T.Integer({ minimum: 0, description: "the version the last answer gave: wait for a newer one" }),
    ),
    timeoutMs: T.Optional(T.Integer({ minimum: 0, maximum: MAX_WAIT_MS })),
  },
  { additionalProperties: false },
);

export function discoveryRoutes(api: FastifyInstance, deps: ApiDeps): void {
  let registry: ServiceEndpoints | undefined;
  api.get(
    "/apps/:app/services/:svc/endpoints",
    {
      schema: {
        summary: "A service's healthy endpoints with weights and metadata; watch them with since",
        description:
          "Running instances on ready nodes: address, port, weight (the release's share of traffic split over its endpoints) and metadata (node, release, node labels). With `since` (the last answer's version) the answer waits until the list changes, or `timeoutMs` (at most and by default 25 s) passes with the same version.",
        tags: ["apps"],
        params: EndpointParams,
        querystring: EndpointQuery,
      },
    },
    async (req, reply) => {
      const { app, svc } = req.params as { app: string; svc: string };
      const { since, timeoutMs } = req.query as { since?: number; timeoutMs?: number };
      const tenant = tenantOf(req);
      registry ??= new ServiceEndpoints(deps.store, deps.shutdown, (message, err) =>
        api.log.warn({ err }, message),
      );
      const gone = new AbortController();
      reply.raw.once("close", () => gone.abort());
      const list = await registry.get(tenant, app, svc, since, timeoutMs ?? MAX_WAIT_MS, gone.signal);
      if (list === undefined) throw notFound(`app ${app} has no service ${svc} in tenant ${tenant}`);
      return list;
    },
  );
}
