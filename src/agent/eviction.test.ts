import assert from "node:assert/strict";
import { test } from "node:test";
import { type EvictionCandidate, pickEviction } from "./eviction.ts";

const MiB = 1024 * 1024;
const c = (
  id: string,
  used: number,
  request: number,
  more: Partial<EvictionCandidate> = {},
): EvictionCandidate => ({
  id,
  mode: "cattle",
  resources: { cpu: 0.1, memory: request * MiB, memoryLimit: 4 * request * MiB },
  usedBytes: used * MiB,
  ...more,
});

test("no eviction while available memory is at or above the threshold", () => {
  assert.equal(pickEviction(100 * MiB, 100 * MiB, [c("a", 500, 100)]), undefined);
});

test("under pressure: lowest criticality first, then the furthest over its request", () => {
  const all = [
    c("normal-far", 900, 100),
    c("low-near", 110, 100, { criticality: "low" }),
    c("critical-far", 2000, 100, { criticality: "critical" }),
    c("normal-near", 150, 100),
  ];
  assert.equal(pickEviction(10 * MiB, 100 * MiB, all)?.id, "low-near");
  assert.equal(
    pickEviction(
      10 * MiB,
      100 * MiB,
      all.filter((x) => x.id !== "low-near"),
    )?.id,
    "normal-far",
  );
  assert.equal(pickEviction(10 * MiB, 100 * MiB, [all[2]])?.id, "critical-far");
});

test("burstable before guaranteed (over its request only without cgroups), whatever their criticality", () => {
  const guaranteed = c("guaranteed-low", 900, 100, {
    criticality: "low",
    resources: { cpu: 0.1, cpuLimit: 0.1, memory: 100 * MiB },
  });
  const burstable = c("burstable-critical", 110, 100, { criticality: "critical" });
  const pick = pickEviction(10 * MiB, 100 * MiB, [guaranteed, burstable]);
  assert.equal(pick?.id, "burstable-critical");
  assert.match(pick?.why ?? "", /\(critical, burstable\)$/);
  assert.match(pickEviction(10 * MiB, 100 * MiB, [guaranteed])?.why ?? "", /\(low, guaranteed\)$/);
});

test("within its request, a pet, or usage unknown: never evicted", () => {
  const none = [
    c("within", 90, 100),
    c("pet", 900, 100, { mode: "pet" }),
    c("unknown", 0, 100, { usedBytes: undefined }),
  ];
  assert.equal(pickEviction(0, 100 * MiB, none), undefined);
});

test("the reason names the pressure, the use, the request and the class", () => {
  const why = pickEviction(50 * MiB, 100 * MiB, [c("a", 300, 128, { criticality: "low" })])?.why;
  assert.equal(
    why,
    "evicted for node memory pressure: 50 MiB available, below 100 MiB; it used 300 MiB of a 128 MiB request (low, burstable)",
  );
});
