/** Shapes of API replies the CLI reads that src/model does not name. */

import type { DeployState } from "../model/objects.ts";
import type { LogLine } from "../model/protocol.ts";

/** One entry of `GET /apps/:app/logs` (NDJSON): an instance line or (stream `event`) a platform event. */
export type LogEntry = Omit<LogLine, "stream"> & {
  app: string;
  service: string;
  seq: number;
  stream: LogLine["stream"] | "event";
  node?: string;
  level?: string;
  msg?: string;
  traceId?: string;
  fields?: Record<string, unknown>;
  reason?: string;
};

/** One line of `GET /apps/:app/deploys/:id/log` (NDJSON). */
export interface DeployLogEntry {
  time: string;
  /** health: an outcome of a new instance's health check during the rollout. */
  type: "build" | "step" | "health" | "done";
  message: string;
  state?: DeployState;
}

/** A list reply: `{items: T[]}`. */
export interface Items<T> {
  items: T[];
}

/** `GET /whoami`: who a token stands for and its roles. */
export interface WhoAmI {
  /** `user alice`, `service account ci`, `agent n1`, … */
  name: string;
  kind: string;
  user?: string;
  node?: string;
  admin: boolean;
  /** A platform admin's role is `admin` in every tenant. */
  tenants: { tenant: string; role: string }[];
  token: { id: string; name: string; expiresAt?: string };
}

/** One entry of `GET /audit`: a write, who made it, from where, and its result. */
export type { AuditEntry } from "../api/audit.ts";
