/**
 * A plan: the action decide.ts chose, what it acts on, why, and the change
 * as data for act.ts to apply.
 */

import type { Action } from "../../model/remediation.ts";

/** What to change, as data; act.ts applies it. */
export type Change =
  | { kind: "rollback"; from: number; to: number }
  | { kind: "scale-out"; service: string; from: number; to: number; throttle: ThrottleChange[] }
  | { kind: "throttle"; throttle: ThrottleChange[] }
  | { kind: "replace"; service: string; instance: string }
  | { kind: "restart"; service: string; instance: string }
  | { kind: "degrade"; service: string; dependencies: string[] }
  | { kind: "cordon"; node: string }
  | { kind: "none" };

/** One low-criticality service's concurrency lowered for another's sake. */
export interface ThrottleChange {
  service: string;
  concurrency: number;
  /** The override before (undefined: none; null: off). */
  previous: number | null | undefined;
}

export interface Plan {
  action: Action | "none";
  /** What it acts on, in words: `v2 → v1`, `web 2 → 4`, an instance id, a node. */
  target: string;
  reason: string;
  /** The finding's figures, then the evidence of the choice. */
  evidence: string[];
  change: Change;
}
