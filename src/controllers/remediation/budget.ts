/**
 * Cooldowns and the hourly budget, read from the decisions kept on the app's
 * policy (so a restarted server keeps counting). Pure.
 *
 *   cooldown  the same action (or `none`) on the same service by the same rule,
 *             within the rule's cooldownS (default 120 s): not decided again
 *   budget    changes applied for the app in the last hour ≥ budgetPerHour (default 6):
 *             decided, recorded as held back by the budget, not applied
 *
 * Dry-run decisions count for cooldowns (so a dry run is not repeated every
 * second) and never for the budget (they change nothing).
 */

import {
  type Action,
  DEFAULT_BUDGET_PER_HOUR,
  DEFAULT_COOLDOWN_S,
  type RemediationDecision,
  type RemediationPolicy,
  type RemediationRule,
} from "../../model/remediation.ts";

const HOUR_MS = 3_600_000;

/** The last decision that keeps this one cooling down, when there is one. */
export function coolingDown(
  decisions: readonly RemediationDecision[],
  rule: RemediationRule,
  service: string,
  action: Action | "none",
  now: number,
): RemediationDecision | undefined {
  const cooldownMs = (rule.cooldownS ?? DEFAULT_COOLDOWN_S) * 1000;
  for (let i = decisions.length - 1; i >= 0; i--) {
    const d = decisions[i];
    if (now - Date.parse(d.at) >= cooldownMs) break;
    if (d.rule === rule.name && d.service === service && d.action === action) return d;
  }
  return undefined;
}

/**
 * Whether the app is in a cooldown after any change to this service by any
 * rule (a rollback then a replace fight). A throttle made for the service
 * changed other services, not it: its scale-out may still follow.
 */
export function recentChange(
  decisions: readonly RemediationDecision[],
  service: string,
  now: number,
  cooldownMs: number,
): RemediationDecision | undefined {
  for (let i = decisions.length - 1; i >= 0; i--) {
    const d = decisions[i];
    if (now - Date.parse(d.at) >= cooldownMs) break;
    if (
      d.service === service &&
      !d.dryRun &&
      d.action !== "none" &&
      d.action !== "throttle" &&
      d.applied === "applied"
    )
      return d;
  }
  return undefined;
}

/** Changes applied in the last hour, and how many the budget allows. */
export function budgetLeft(
  policy: Pick<RemediationPolicy, "decisions" | "budgetPerHour">,
  now: number,
): {
  used: number;
  limit: number;
  left: number;
} {
  const limit = policy.budgetPerHour ?? DEFAULT_BUDGET_PER_HOUR;
  const used = policy.decisions.filter(
    (d) => !d.dryRun && d.action !== "none" && d.applied === "applied" && now - Date.parse(d.at) < HOUR_MS,
  ).length;
  return { used, limit, left: Math.max(0, limit - used) };
}
