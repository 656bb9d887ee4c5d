/**
 * Scale to zero, the control plane's half: a gateway holding requests for a
 * service with no instance asks for one.
 *
 *   gateway (hold.ts) ──POST /apps/:app/services/:svc/wake?tenant=──► scaleServices: 0 → max(1, min)
 *                                                                     (quota, event Woken; the service
 *                                                                      controller places it, the agent
 *                                                                      hears at once)
 *
 * Only services that scale to zero (`autoscale.min: 0`) are woken; one that
 * already has instances is left as it is, so a burst from many gateways (or
 * workers) is one scale.
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { conflict, notFound } from "../../common/errors.ts";
import { scaleServices } from "../../controllers/scale.ts";
import { type Service, serviceKey } from "../../model/objects.ts";
import type { ApiDeps } from "../deps.ts";
import { Name, TenantQuery } from "../schemas.ts";

const WakeParams = T.Object({ app: Name, svc: Name });

/** What a wake call did. */
export interface WakeReply {
  service: string;
  /** The service's instances now. */
  instances: number;
  /** True when this call raised them from 0; false when it had instances already. */
  woken: boolean;
}

export function wakeRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store } = deps;

  api.post(
    "/apps/:app/services/:svc/wake",
    {
      schema: {
        summary: "Wake a service scaled to zero: a gateway holds requests for it",
        description:
          "Sets the instances of a service with `autoscale.min: 0` from 0 to max(1, min) at once; a no-op when it has instances. 409 when the service does not scale to zero. For gateways (gateway:sync).",
        tags: ["gateways"],
        params: WakeParams,
        querystring: TenantQuery,
      },
    },
    async (req): Promise<WakeReply> => {
      const { app, svc } = req.params as { app: string; svc: string };
      // A gateway serves every tenant: it names the service's tenant.
      const tenant = (req.query as { tenant?: string }).tenant ?? "default";
      const key = serviceKey(tenant, app, svc);
      for (;;) {
        const o = await store.get<Service>("service", key);
        if (!o) throw notFound(`app ${app} has no service ${svc} in tenant ${tenant}`);
        const service = o.value;
        const autoscale = service.spec.autoscale;
        if (autoscale?.min !== 0) {
          throw conflict(
            `${app}/${svc} does not scale to zero (its herd.yaml has no autoscale with min: 0): it is not woken by requests`,
          );
        }
        if (service.instances > 0) return { service: key, instances: service.instances, woken: false };
        const count = Math.max(1, autoscale.min);
        try {
          // The shared scale path (quota, event Woken, unplaced instances); based on the revision read
          // above, so two gateways waking at once make one scale.
          await scaleServices(
            {
              store,
              events: deps.events,
              unit: deps.settings.unit,
              informer: deps.controllers.informer,
              cluster: () => deps.controllers.services.clusterState(),
            },
            {
              tenant,
              app,
              services: { [svc]: count },
              revisions: { [svc]: o.revision },
              reason: "Woken",
              why: "a request arrived while it had no instance",
            },
          );
        } catch (err) {
          // Another gateway (or a scale) wrote it meanwhile: look again.
          if ((err as { code?: string }).code === "conflict") continue;
          throw err;
        }
        return { service: key, instances: count, woken: true };
      }
    },
  );
}
