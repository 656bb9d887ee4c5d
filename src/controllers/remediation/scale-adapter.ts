/**
 * Scale-out for the engine: the same path as `herd scale` (quota check, the
 * count on the Service with the revision it read, a `Scaled` event).
 *
 * An adapter until the autoscale work's shared `scaleServices`
 * (controllers/scale.ts) is merged; then this file becomes one call to it.
 */

import { HerdError } from "../../common/errors.ts";
import { type Service, serviceKey } from "../../model/objects.ts";
import type { Context } from "../context.ts";
import { checkQuota } from "../quota.ts";

/** Sets one service's desired count, as `herd scale` does. */
export async function scaleService(
  ctx: Context,
  tenant: string,
  app: string,
  service: string,
  count: number,
  why: string,
): Promise<void> {
  const key = serviceKey(tenant, app, service);
  const first = await ctx.store.get<Service>("service", key);
  if (!first) throw new HerdError("not_found", `service ${service} of app ${app} is gone`);
  await checkQuota(
    ctx.store,
    ctx.settings.unit,
    tenant,
    app,
    { [service]: { instances: count, resources: first.value.spec.resources } },
    false,
  );
  for (;;) {
    const s = (await ctx.store.get<Service>("service", key))!;
    const busy = s.value.state === "updating" || s.value.state === "rolling_back";
    const next: Service = {
      ...s.value,
      instances: count,
      state: busy ? s.value.state : s.value.instances === count ? s.value.state : "scaling",
      message: busy ? s.value.message : `scaling from ${s.value.instances} to ${count}`,
    };
    try {
      await ctx.store.put("service", key, next, { expectRevision: s.revision });
      await ctx.events.record({
        tenant,
        app,
        service,
        reason: "Scaled",
        message: `${service} scaled from ${s.value.instances} to ${count}: ${why}`,
      });
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== "conflict") throw err;
    }
  }
}
