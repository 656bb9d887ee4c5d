/**
 * What the engine sees of one app at one moment: its services, instances and
 * releases (from the store), the firing alerts and the failing calls seen in
 * traces. The live traffic figures are read through `LoadFigures` itself.
 * evidence.ts builds it; symptoms.ts and decide.ts only read it.
 */

import type { LoadFigures } from "../../model/load.ts";
import type { ServiceSpec } from "../../model/manifest.ts";
import type { InstanceState, NodeState, ServiceState } from "../../model/objects.ts";

export interface ServiceView {
  name: string;
  /** Its desired release. */
  release: number;
  /** Desired instance count. */
  instances: number;
  /** Instances running (healthy, in the gateway). */
  running: number;
  state: ServiceState;
  crashes: number;
  spec: Pick<ServiceSpec, "mode" | "criticality" | "autoscale" | "routes" | "concurrency"> & {
    resources?: ServiceSpec["resources"];
  };
  /** The concurrency override in force (Service.traffic), when one is. */
  concurrencyOverride?: number | null;
  /** Its routes answer their fallback now (Service.traffic.fallback). */
  degraded?: boolean;
}

export interface InstanceView {
  id: string;
  service: string;
  release: number;
  node: string | null;
  state: InstanceState;
  mode: "cattle" | "pet";
  /** CPU cores it used lately (agents' heartbeats), when known. */
  cpuCores?: number;
  /** Of its runnable time lately, the share it waited for a CPU (agents' heartbeats), when known. */
  cpuWaitShare?: number;
  /** When its process started (ms since the epoch), when it has. */
  startedAt?: number;
}

export interface NodeView {
  name: string;
  state: NodeState;
  schedulable: boolean;
}

export interface ReleaseView {
  version: number;
  /** ms since the epoch. */
  createdAt: number;
  rollbackOf?: number;
}

/** An alert firing for the app (from the alert evaluator). */
export interface FiringAlert {
  rule: string;
  service?: string;
  value: number;
  since: number;
}

/** Calls from one service to another seen in spans over the window. */
export interface CallEdge {
  from: string;
  to: string;
  calls: number;
  errors: number;
  errorRate: number;
}

export interface AppView {
  tenant: string;
  app: string;
  /** ms since the epoch. */
  now: number;
  /** The release that serves (App.release). */
  appRelease: number | null;
  releases: ReleaseView[];
  services: ServiceView[];
  instances: InstanceView[];
  /** The nodes the app's instances are on. */
  nodes: NodeView[];
  alerts: FiringAlert[];
  calls: CallEdge[];
  load: LoadFigures;
  /**
   * Why `count` instances of a service could not all be placed on today's
   * nodes ("1 of 2 instances cannot be placed: needs …"), or undefined when
   * they fit. Absent where a machine provider adds nodes for what does not
   * fit (then a scale-out that does not fit is still worth asking for).
   */
  shortfall?: (service: string, count: number) => string | undefined;
}

export const serviceKeyOf = (view: Pick<AppView, "tenant" | "app">, service: string): string =>
  `${view.tenant}/${view.app}/${service}`;
