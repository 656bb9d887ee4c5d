/**
 * Progressive rollouts (canary, blue/green; controllers/rollout-controller.ts):
 *
 *   GET  /apps/:app/rollout                 each service's strategy, phase, step, weight, analyses (viewer)
 *   POST /apps/:app/rollout/promote         skip the remaining steps / switch blue to green (deployer)
 *   POST /apps/:app/rollout/pause|resume    hold the current step (analysis still aborts) (deployer)
 *   POST /apps/:app/rollout/abort           weight 0, the new release stops, the deploy fails (deployer)
 *
 * `?service=` narrows an action to one service; without it every service of
 * the app in a progressive rollout is acted on.
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { RolloutAction } from "../../controllers/rollout-controller.ts";
import type { Service } from "../../model/objects.ts";
import { DEFAULT_STEPS, previewHost } from "../../model/progressive.ts";
import type { ApiDeps } from "../deps.ts";
import { AppParams, Name, tenantOf } from "../schemas.ts";
import { existingApp } from "./existing-app.ts";

const RolloutQuery = T.Object({ tenant: T.Optional(Name), service: T.Optional(Name) });

/** One service's rollout as `herd rollout status` shows it. */
function rolloutView(s: Service) {
  const p = s.progressive;
  const spec = s.spec.rollout;
  return {
    service: s.name,
    strategy: spec?.strategy ?? "rolling",
    release: s.release,
    state: s.state,
    message: s.message,
    ...(p
      ? {
          progressive: {
            ...p,
            steps: p.strategy === "canary" ? (spec?.steps ?? DEFAULT_STEPS) : [],
            ...(p.strategy === "bluegreen" ? { previewHost: previewHost(s.app, s.name, p.release) } : {}),
          },
        }
      : {}),
  };
}

export function rolloutRoutes(api: FastifyInstance, deps: ApiDeps): void {
  api.get(
    "/apps/:app/rollout",
    {
      schema: {
        summary: "Each service's rollout strategy and, while one runs, its phase, step, weight and analyses",
        tags: ["apps"],
        params: AppParams,
        querystring: RolloutQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      const { service } = req.query as { service?: string };
      await existingApp(deps.store, tenant, app);
      const services = (await deps.store.list<Service>("service", { prefix: `${tenant}/${app}/` })).items
        .map((o) => o.value)
        .filter((s) => service === undefined || s.name === service);
      return { items: services.map(rolloutView) };
    },
  );

  const summaries: Record<RolloutAction, string> = {
    promote: "Promote: skip the remaining canary steps, or switch every request to the blue/green release",
    pause: "Pause: the current step is held (its analysis still runs and can abort)",
    resume: "Resume a paused rollout",
    abort:
      "Abort: no request to the new release, its instances stop, the deploy fails; the old release serves",
  };
  for (const action of ["promote", "pause", "resume", "abort"] as const) {
    api.post(
      `/apps/:app/rollout/${action}`,
      {
        schema: { summary: summaries[action], tags: ["apps"], params: AppParams, querystring: RolloutQuery },
      },
      async (req) => {
        const tenant = tenantOf(req);
        const { app } = req.params as { app: string };
        const { service } = req.query as { service?: string };
        await existingApp(deps.store, tenant, app);
        const changed = await deps.controllers.rollouts.act(tenant, app, action, {
          ...(service ? { service } : {}),
          by: req.herd.principal.label,
        });
        return { items: changed.map(rolloutView) };
      },
    );
  }
}
