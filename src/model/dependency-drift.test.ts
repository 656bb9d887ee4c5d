import assert from "node:assert/strict";
import { test } from "node:test";
import { type DeclaredService, dependencyDrift, findingKey } from "./dependency-drift.ts";

const services = new Map<string, DeclaredService>([
  ["shop/web", { dependsOn: ["api"], criticality: "critical" }],
  ["shop/api", { dependsOn: ["pay/charge"] }],
  ["pay/charge", {}],
  ["shop/recs", { criticality: "low" }],
]);

test("declared calls are fine; gateway and unknown services are left out", () => {
  const calls = [
    { from: "gateway", to: "shop/web" },
    { from: "shop/web", to: "shop/api" },
    { from: "shop/api", to: "pay/charge" },
    { from: "shop/api", to: "other/x" },
  ];
  assert.deepEqual(dependencyDrift(services, calls), []);
});

test("an undeclared call, an undeclared cycle and a critical service calling a low one are findings", () => {
  const calls = [
    { from: "shop/web", to: "shop/api" },
    { from: "shop/api", to: "pay/charge" },
    { from: "pay/charge", to: "shop/web" },
    { from: "shop/web", to: "shop/recs" },
  ];
  const f = dependencyDrift(services, calls);
  assert.deepEqual(
    f.map((x) => [x.kind, x.from, x.to]),
    [
      ["undeclared", "pay/charge", "shop/web"],
      ["undeclared", "shop/web", "shop/recs"],
      ["undeclared-cycle", "pay/charge", "shop/web"],
      ["critical-on-low", "shop/web", "shop/recs"],
    ],
  );
  const cycle = f.find((x) => x.kind === "undeclared-cycle");
  assert.equal(
    cycle?.message,
    "dependency cycle seen in the traces: pay/charge → shop/web → shop/api → pay/charge (pay/charge → shop/web is not declared)",
  );
  assert.equal(findingKey(f[0]!), "undeclared:pay/charge>shop/web");
});

test("a declared dependency of a critical service on a low one is a finding without any call", () => {
  const s = new Map<string, DeclaredService>([
    ["a/web", { dependsOn: ["cache"], criticality: "critical" }],
    ["a/cache", { criticality: "low" }],
  ]);
  assert.deepEqual(
    dependencyDrift(s, []).map((x) => x.kind),
    ["critical-on-low"],
  );
});
