/**
 * `herd restart` (POST /apps/{app}/restart): stamps the services' restartedAt,
 * and the service controller does the rest as it does a rollout: cattle made
 * before the stamp are replaced (the new ones run before the old ones go,
 * within the service's minAvailable), pets started before it restart in place
 * one at a time. Nothing is stopped here, so a restart never drops below what
 * serves, and one that cannot place its new instances leaves the old ones be.
 */

import { HerdError, notFound } from "../common/errors.ts";
import { type App, appKey, type Service, serviceKey } from "../model/objects.ts";
import { type Store, updateObject } from "../store/store.ts";
import type { EventRecorder } from "./events.ts";

export interface RestartRequest {
  tenant: string;
  app: string;
  /** The services to restart; absent or empty: every service of the app. */
  services?: string[];
  /** Who asked, for the events. */
  by: string;
  /** The stamp, ISO (the caller's clock). */
  now: string;
}

export interface RestartResult {
  restartedAt: string;
  services: string[];
}

/**
 * Stamps each service; throws `not_found` for an unknown app, `invalid` naming an unknown service,
 * `conflict` when one is in a canary or blue/green rollout (which chooses what runs until it ends).
 */
export async function restartServices(
  deps: { store: Store; events: EventRecorder },
  req: RestartRequest,
): Promise<RestartResult> {
  const { store, events } = deps;
  const { tenant, app } = req;
  if (!(await store.get<App>("app", appKey(tenant, app)))) throw notFound(`app ${app} does not exist`);
  const listed = (await store.list<Service>("service", { prefix: `${appKey(tenant, app)}/` })).items;
  const all = listed.map((o) => o.value.name);
  const names = req.services?.length ? [...new Set(req.services)] : all;
  const unknown = names.filter((n) => !all.includes(n));
  if (unknown.length > 0 || names.length === 0) {
    throw new HerdError(
      "invalid",
      all.length === 0
        ? `app ${app} has no services: deploy first`
        : `app ${app} has no service ${unknown.join(", ")} (it has ${all.join(", ")})`,
      unknown.map((n) => ({ field: `services`, message: `no service ${n}` })),
    );
  }
  // A canary or blue/green rollout decides which instances run; a restart would wait behind it, unseen.
  for (const s of listed) {
    const p = s.value.progressive;
    if (!p || !names.includes(s.value.name)) continue;
    const where =
      p.strategy === "canary"
        ? `a canary of v${p.release} (${p.weight}% of requests)`
        : `a blue/green rollout of v${p.release}`;
    throw new HerdError(
      "conflict",
      `service ${s.value.name} of app ${app} is in ${where}: restart it once the rollout ends, or end it now with herd rollout promote (or abort) --app ${app}`,
    );
  }
  for (const name of names) {
    await updateObject<Service>(store, "service", serviceKey(tenant, app, name), (s) => {
      if (!s) throw notFound(`service ${name} of app ${app} was removed during the restart`);
      return { ...s.value, restartedAt: req.now };
    });
    await events.record({
      tenant,
      app,
      service: name,
      reason: "RestartRequested",
      message: `${name}: restart asked by ${req.by}: its instances are replaced (pets restart in place), the new ones serving before the old ones go`,
    });
  }
  return { restartedAt: req.now, services: names };
}
