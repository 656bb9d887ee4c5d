/**
 * A controller Context for unit tests: a memory store, a manual clock, no log
 * output, deploy logs and the secrets' keyring in `dir` (the test removes it).
 */

import { ManualClock } from "../common/clock.ts";
import { silentLogger } from "../common/log.ts";
import { Keyring } from "../secrets/keyring.ts";
import { SecretStore } from "../secrets/secret-store.ts";
import { controlPlaneInformer } from "../store/informer-kinds.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { type Context, DEFAULT_SETTINGS } from "./context.ts";
import { DeployLogs } from "./deploy-log.ts";
import { EventRecorder } from "./events.ts";

/** The Context, with its store and clock typed as what they are; `extra` sets more (e.g. `load`). */
export function testContext(
  dir: string,
  extra: Partial<Context> = {},
): { ctx: Context; store: MemoryStore; clock: ManualClock } {
  const store = new MemoryStore();
  const clock = new ManualClock();
  const ctx: Context = {
    store,
    informer: controlPlaneInformer(store),
    clock,
    logger: silentLogger,
    events: new EventRecorder(store, clock, silentLogger),
    deployLogs: new DeployLogs(dir),
    // Events at once: tests read them right after the heartbeat that made them.
    settings: { ...DEFAULT_SETTINGS, eventBatchMs: 0 },
    secrets: new SecretStore(store, Keyring.open(dir)),
    ...extra,
  };
  return { ctx, store, clock };
}
