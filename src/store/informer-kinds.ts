/**
 * The control plane's informer: the kinds controllers, the scheduler and the
 * heartbeat read on every pass, with the indexes they look things up by.
 *
 *   instance  by node · by service (`<tenant>/<app>/<service>`) · by app (`<tenant>/<app>`)
 *   service   by tenant · by app
 *   node      (all of them: the scheduler looks at every node)
 *   run       by node
 *   config_head  (the heartbeat's config versions: config-center/center.ts forInstances)
 *   app_tombstone  (the heartbeat's orphan pet volumes: controllers/orphan-volumes.ts)
 */

import type { Logger } from "../common/log.ts";
import type { Run } from "../model/job.ts";
import type { Instance, Service } from "../model/objects.ts";
import { Informer } from "./informer.ts";
import type { Store } from "./store.ts";

const ofInstance = (f: (i: Instance) => readonly string[]) => f as (value: never) => readonly string[];

/** The informer the controllers read (Context.informer): started by its first `sync()`. */
export function controlPlaneInformer(store: Store, logger?: Logger): Informer {
  return new Informer(store, {
    kinds: ["instance", "node", "service", "run", "config_head", "app_tombstone"],
    indexes: [
      { kind: "instance", name: "node", values: ofInstance((i) => (i.node ? [i.node] : [])) },
      {
        kind: "instance",
        name: "service",
        values: ofInstance((i) => [`${i.tenant}/${i.app}/${i.service}`]),
      },
      { kind: "instance", name: "app", values: ofInstance((i) => [`${i.tenant}/${i.app}`]) },
      {
        kind: "service",
        name: "tenant",
        values: ((s: Service) => [s.tenant]) as (value: never) => readonly string[],
      },
      {
        kind: "service",
        name: "app",
        values: ((s: Service) => [`${s.tenant}/${s.app}`]) as (value: never) => readonly string[],
      },
      {
        kind: "run",
        name: "node",
        values: ((r: Run) => (r.node ? [r.node] : [])) as (value: never) => readonly string[],
      },
    ],
    ...(logger ? { logger: logger.child("informer") } : {}),
  });
}
