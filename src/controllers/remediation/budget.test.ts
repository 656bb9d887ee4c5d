import assert from "node:assert/strict";
import { test } from "node:test";
import type { RemediationDecision, RemediationRule } from "../../model/remediation.ts";
import { budgetLeft, coolingDown, recentChange } from "./budget.ts";

const NOW = Date.parse("2026-01-01T12:00:00Z");
const rule: RemediationRule = {
  name: "errors",
  symptom: "error-rate",
  actions: ["rollback"],
  cooldownS: 120,
};
const d = (agoS: number, extra: Partial<RemediationDecision> = {}): RemediationDecision => ({
  id: String(agoS),
  at: new Date(NOW - agoS * 1000).toISOString(),
  rule: "errors",
  symptom: "error-rate",
  service: "web",
  action: "rollback",
  target: "v2 → v1",
  reason: "",
  evidence: [],
  dryRun: false,
  applied: "applied",
  ...extra,
});

test("cooldown: the same rule, service and action within cooldownS, and only that", () => {
  assert.equal(coolingDown([d(119)], rule, "web", "rollback", NOW)?.id, "119");
  assert.equal(coolingDown([d(120)], rule, "web", "rollback", NOW), undefined);
  assert.equal(coolingDown([d(10)], rule, "api", "rollback", NOW), undefined);
  assert.equal(coolingDown([d(10)], rule, "web", "replace", NOW), undefined);
  assert.equal(coolingDown([d(10, { rule: "slow" })], rule, "web", "rollback", NOW), undefined);
  // A dry-run decision cools down too (so it is not repeated every second).
  assert.equal(coolingDown([d(10, { dryRun: true })], rule, "web", "rollback", NOW)?.id, "10");
  // Default cooldown 120 s.
  const { cooldownS: _, ...noCooldown } = rule;
  assert.ok(coolingDown([d(100)], noCooldown, "web", "rollback", NOW));
});

test("a change applied to a service holds off any other on it for the cooldown; dry runs and nones do not", () => {
  assert.ok(recentChange([d(30)], "web", NOW, 60_000));
  assert.equal(recentChange([d(61)], "web", NOW, 60_000), undefined);
  assert.equal(recentChange([d(30, { dryRun: true })], "web", NOW, 60_000), undefined);
  assert.equal(recentChange([d(30, { action: "none", applied: undefined })], "web", NOW, 60_000), undefined);
  assert.equal(recentChange([d(30, { applied: "failed: boom" })], "web", NOW, 60_000), undefined);
  // A throttle made for web changed other services: web's scale-out may follow at once.
  assert.equal(recentChange([d(30, { action: "throttle", target: "batch" })], "web", NOW, 60_000), undefined);
});

test("budget: changes applied in the last hour, not dry runs, nones, failures or older ones", () => {
  const decisions = [
    d(3601),
    d(3000),
    d(2000, { dryRun: true }),
    d(1000, { action: "none", applied: undefined }),
    d(500, { applied: "failed: quota" }),
    d(10, { action: "replace" }),
  ];
  assert.deepEqual(budgetLeft({ decisions }, NOW), { used: 2, limit: 6, left: 4 });
  assert.deepEqual(budgetLeft({ decisions, budgetPerHour: 2 }, NOW), { used: 2, limit: 2, left: 0 });
  assert.deepEqual(budgetLeft({ decisions, budgetPerHour: 1 }, NOW), { used: 2, limit: 1, left: 0 });
});
