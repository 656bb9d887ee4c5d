// Replies of the API the console reads that have no type in src/model/ (the
// objects themselves come from src/model/objects.ts, the API's own types).

import type { NodeState, Resources } from "../../src/model/objects.ts";

/** GET /alerts (api/routes/alerts.ts alertView). */
export interface ActiveAlertView {
  rule: string;
  state: "pending" | "firing";
  severity: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  value: number;
  since: string;
  firingSince: string | null;
  silencedBy: string | null;
  app?: string;
  fingerprint: string;
}

/** GET /capacity (api/capacity.ts CapacityReport), the parts the console shows. */
export interface Capacity {
  nodes: {
    name: string;
    state: NodeState;
    schedulable: boolean;
    allocatable: Resources;
    requested: Resources;
    used: { cpu?: number; memory?: number };
    instances: number;
  }[];
}

/** GET /apps/:app/routes (api/routes/live-config.ts). */
export interface RouteView {
  source: string;
  service: string;
  route: { host?: string; path?: string; name?: string; [k: string]: unknown };
}

/** GET /audit entries. */
export interface AuditEntry {
  at: string;
  actor: string;
  route: string;
  path: string;
  status: number;
  app?: string;
}

export type { InstanceConfigStatus } from "../../src/config-center/center.ts";
export type { EntryChange } from "../../src/config-center/merge.ts";
export type { LogEntry } from "../../src/observe/log-store.ts";
export type {
  CallStats,
  DependencyMap,
  SpanNode,
  TopN,
  TraceTree,
} from "../../src/observe/traces/analysis.ts";
export type { TraceSummary } from "../../src/observe/traces/span-store.ts";
export type { SecretInfo } from "../../src/secrets/secret-store.ts";
