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

/** GET /apps/:app/secrets: names and versions, never values. */
export interface SecretView {
  name: string;
  version?: number;
  updatedAt?: string;
  [k: string]: unknown;
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

/** One entry of the log stream (observe/log-store.ts LogEntry). */
export interface LogEntry {
  seq: number;
  time: string;
  app: string;
  service: string;
  instance: string;
  node?: string;
  stream: "stdout" | "stderr" | "event";
  line: string;
  level?: string;
  traceId?: string;
  reason?: string;
}

/** Calls, errors and latency (µs) of a service, route or call (observe/traces/analysis.ts CallStats). */
export interface CallStats {
  calls: number;
  rate: number;
  errors: number;
  errorRate: number;
  p50: number;
  p99: number;
  totalTime: number;
}

/** GET /traces/map. */
export interface DependencyMap {
  from: number;
  to: number;
  nodes: (CallStats & { service: string; inCycle: boolean })[];
  edges: (CallStats & { from: string; to: string; inCycle: boolean })[];
  cycles: string[][];
}

/** GET /traces/top. */
export interface TopN {
  by: "calls" | "latency" | "time";
  services: (CallStats & { service: string })[];
  routes: (CallStats & { service: string; route?: string })[];
}

/** One trace of GET /traces (µs). */
export interface TraceSummary {
  traceId: string;
  start: number;
  duration: number;
  rootService: string;
  rootName: string;
  spans: number;
  errors: number;
  services: string[];
}

/** A span of GET /traces/:id, with its place in the tree (µs). */
export interface SpanNode {
  traceId: string;
  spanId: string;
  parentId: string | null;
  service: string;
  name: string;
  kind: string;
  start: number;
  duration: number;
  status: "ok" | "error";
  statusCode: number | null;
  statusMessage?: string;
  attributes: Record<string, string | number | boolean>;
  app?: string;
  offset: number;
  depth: number;
  children: SpanNode[];
}

/** GET /traces/:id. */
export interface TraceTree {
  traceId: string;
  start: number;
  duration: number;
  spans: number;
  errors: number;
  services: string[];
  roots: SpanNode[];
}
