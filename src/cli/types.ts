/** Shapes of API replies the CLI reads that src/model does not name. */

import type { DeployState } from "../model/objects.ts";
import type { LogLine } from "../model/protocol.ts";

/** One line of `GET /apps/:app/logs` (NDJSON). */
export type LogEntry = LogLine & { app: string; service: string; seq: number };

/** One line of `GET /apps/:app/deploys/:id/log` (NDJSON). */
export interface DeployLogEntry {
  time: string;
  type: "build" | "step" | "done";
  message: string;
  state?: DeployState;
}

/** A list reply: `{items: T[]}`. */
export interface Items<T> {
  items: T[];
}
