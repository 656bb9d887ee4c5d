// Degradation: a route's fallback answers when its service cannot.

import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Service } from "../model/objects.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { closedPort, request, testInstance, testNode, testService } from "./testing.ts";

test("the fallback answers when nothing runs, when the instance is unreachable and when the breaker is open", async (t) => {
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(() => proxy.close());
  const port = await proxy.listen(0, "127.0.0.1");
  const fallback = { status: 200, body: '{"items":[],"degraded":true}', contentType: "application/json" };
  const service: Service = testService("default", "shop", "web", [{ host: "shop.test", fallback }]);
  service.spec.breaker = { failures: 2, openMs: 60_000 };
  const build = (instances: ReturnType<typeof testInstance>[]) =>
    buildRouteTable({ services: [service], instances, nodes: [testNode("local", "127.0.0.1")] }, 1, {
      previous: proxy.table,
    });

  proxy.table = build([]);
  let r = await request(port, "shop.test", "/items");
  assert.equal(r.status, 200);
  assert.equal(r.body, fallback.body);
  assert.equal(r.headers["content-type"], "application/json");
  assert.equal(r.headers["x-herd-fallback"], "unavailable");

  proxy.table = build([testInstance("w", { app: "shop", service: "web" }, "local", await closedPort())]);
  r = await request(port, "shop.test", "/items");
  assert.equal(r.headers["x-herd-fallback"], "bad_gateway");
  r = await request(port, "shop.test", "/items");
  r = await request(port, "shop.test", "/items");
  assert.equal(r.headers["x-herd-fallback"], "circuit_open", "after two failures the breaker is open");
  assert.equal(r.body, fallback.body);

  const plain = buildRouteTable(
    { services: [testService("default", "shop", "web", [{ host: "shop.test" }])], instances: [], nodes: [] },
    2,
  );
  proxy.table = plain;
  assert.equal((await request(port, "shop.test", "/")).status, 503, "without a fallback: the plain 503");
});
