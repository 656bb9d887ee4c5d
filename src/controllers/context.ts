/**
 * What every controller is handed: the store, a clock, the event recorder,
 * the deploy logs, the secret store and the platform's timing settings. No globals.
 */

import type { Clock } from "../common/clock.ts";
import type { Logger } from "../common/log.ts";
import type { LoadFigures } from "../model/load.ts";
import { DEFAULT_RESOURCES } from "../model/manifest.ts";
import type { Resources } from "../model/objects.ts";
import { DEFAULT_DEADLINE_MS } from "../model/rollout.ts";
import type { SecretStore } from "../secrets/secret-store.ts";
import type { Informer } from "../store/informer.ts";
import type { Store } from "../store/store.ts";
import type { DeployLogs } from "./deploy-log.ts";
import type { EventRecorder } from "./events.ts";

export interface Settings {
  /** How long an instance stays out of the gateway, still running, before it is stopped. */
  drainMs: number;
  /** Heartbeat interval agents are told to use. */
  heartbeatMs: number;
  /** No heartbeat for this long: node not ready (nothing new placed there). */
  nodeNotReadyMs: number;
  /** No heartbeat for this long: node lost (its cattle are replaced elsewhere). */
  nodeLostMs: number;
  /** Crashes of a new release's instances that fail its rollout. */
  rolloutCrashLimit: number;
  /** How long a rollout may make no progress before its deploy fails, unless herd.yaml or the deploy says otherwise. */
  rolloutDeadlineMs: number;
  /** Consecutive crashes after which a service is marked failed. */
  crashLoopLimit: number;
  /** Crash-loop backoff: first delay and cap. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Public address of the gateway, for the URLs deploys print. */
  gatewayUrl: string;
  /** One resource unit: what `units: 1` in herd.yaml asks for, and what quotas count in. */
  unit: Resources;
  /**
   * A machine provider can add nodes (controllers/machine-controller.ts): a
   * rollout that does not fit on today's nodes waits for its deadline
   * instead of failing at once.
   */
  machineProvider: boolean;
  /**
   * Several servers share the store (etcd, docs/high-availability.md): a
   * deploy another server builds is not this one's to fail, unless it has
   * been building for longer than any build may (its server died).
   */
  sharedStore?: boolean;
  /**
   * Instance transitions that heartbeats report are recorded as events
   * together within this window (node-controller.ts); 0 or absent: each
   * heartbeat's at once.
   */
  eventBatchMs?: number;
  /** How many releases each app keeps (release-history.ts); 0 keeps every one. Absent: KEPT_RELEASES. */
  keepReleases?: number;
}

export const DEFAULT_SETTINGS: Settings = {
  drainMs: 2000,
  heartbeatMs: 1000,
  nodeNotReadyMs: 3_600,
  nodeLostMs: 9_000,
  rolloutCrashLimit: 3,
  rolloutDeadlineMs: DEFAULT_DEADLINE_MS,
  crashLoopLimit: 8,
  backoffBaseMs: 500,
  backoffMaxMs: 60_000,
  gatewayUrl: "http://127.0.0.1:8080",
  unit: DEFAULT_RESOURCES,
  machineProvider: false,
  eventBatchMs: 500,
};

export interface Context {
  store: Store;
  /**
   * A watch-fed, indexed view of instances, nodes, services and runs
   * (store/informer-kinds.ts): read it instead of listing whole kinds; write to
   * the store, with the revision read.
   */
  informer: Informer;
  clock: Clock;
  logger: Logger;
  events: EventRecorder;
  deployLogs: DeployLogs;
  settings: Settings;
  /** Apps' secrets: releases pin their versions, heartbeat replies carry their values. */
  secrets: SecretStore;
  /** Live traffic figures from the gateways (model/load.ts); absent in unit tests that need none. */
  load?: LoadFigures;
}

/** Crash-loop backoff after `crashes` consecutive crashes: the first is retried at once, then 0.5 s, 1 s, 2 s, … capped. */
export function backoffMs(
  settings: Pick<Settings, "backoffBaseMs" | "backoffMaxMs">,
  crashes: number,
): number {
  if (crashes <= 1) return 0;
  return Math.min(settings.backoffMaxMs, settings.backoffBaseMs * 2 ** (crashes - 2));
}
