import assert from "node:assert/strict";
import { test } from "node:test";
import { dependencyOrder } from "./dependencies.ts";

test("dependencyOrder: each service after the same app's services it depends on; other apps' are ignored", () => {
  const order = dependencyOrder("shop", {
    web: { dependsOn: ["api", "auth/login"] },
    api: { dependsOn: ["db", "cache"] },
    worker: {},
    db: {},
    cache: { dependsOn: ["shop/db"] },
  });
  assert.deepEqual(order, ["db", "cache", "api", "web", "worker"]);
  for (const [name, deps] of [
    ["web", ["api"]],
    ["api", ["db", "cache"]],
    ["cache", ["db"]],
  ] as const)
    for (const dep of deps) assert.ok(order.indexOf(dep) < order.indexOf(name), `${dep} before ${name}`);
});
