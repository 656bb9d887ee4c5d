/**
 * When a degraded service comes back: its routes answer their fallback
 * (Service.traffic.fallback) while its calls to a dependency fail, and switch
 * back once spans show those calls succeed again. The gateway still sends one
 * request a second per process to a degraded service (its probe), so its
 * calls keep showing in spans. Pure: the degrade and the calls in, a reason to
 * switch back (or none) out.
 *
 *   calls since max(switch, now − RECOVERY_WINDOW_MS) from the service to each dependency
 *     ≥ MIN_RECOVERED_CALLS, failing < RECOVERED_ERROR_RATE, for every dependency ─► switch back
 *   MAX_DEGRADE_MS after the switch ─► switch back whatever the spans say (the next failure degrades again)
 */

import type { Degrade } from "../../model/remediation.ts";
import { isService } from "./decide.ts";
import { pct } from "./symptoms.ts";
import type { CallEdge } from "./view.ts";

/** The calls looked at to tell whether a dependency answers again. */
export const RECOVERY_WINDOW_MS = 10_000;
/** At least this many calls to each dependency in the window, failing less than RECOVERED_ERROR_RATE. */
export const MIN_RECOVERED_CALLS = 3;
export const RECOVERED_ERROR_RATE = 0.1;
/** A degrade is ended after this long at most. */
export const MAX_DEGRADE_MS = 30 * 60_000;

/** Where the calls to look at start (ms): not before the switch, not before the recovery window. */
export function recoveryFrom(d: Degrade, now: number): number {
  return Math.max(Date.parse(d.since), now - RECOVERY_WINDOW_MS);
}

/** Why the degrade is over (switch back), or undefined while a dependency still fails or too few calls show. */
export function degradeOver(d: Degrade, calls: readonly CallEdge[], now: number): string | undefined {
  const age = now - Date.parse(d.since);
  if (age >= MAX_DEGRADE_MS) return `${Math.round(age / 60_000)} min after the switch (the most it lasts)`;
  const lines: string[] = [];
  for (const dep of d.dependencies) {
    const edges = calls.filter((c) => isService(c.from, d.service) && c.to === dep);
    const total = edges.reduce((n, c) => n + c.calls, 0);
    const errors = edges.reduce((n, c) => n + c.errors, 0);
    if (total < MIN_RECOVERED_CALLS) return undefined;
    if (errors / total >= RECOVERED_ERROR_RATE) return undefined;
    lines.push(`${errors} of ${total} calls to ${dep} failed (${pct(errors / total)})`);
  }
  return lines.length > 0
    ? `its calls succeed again: ${lines.join("; ")}`
    : "it has no dependency left to wait for";
}
