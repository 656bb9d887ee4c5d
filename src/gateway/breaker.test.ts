// The circuit breaker through a real proxy: opens after failures, fails fast
// without touching the upstream, lets a trial through, closes when it passes.

import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Service } from "../model/objects.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startUpstream, testInstance, testNode, testService } from "./testing.ts";

test("breaker: closed → open (fail fast) → half-open trial → closed", async (t) => {
  let healthy = false;
  const upstream = await startUpstream((_req, res) => {
    res.statusCode = healthy ? 200 : 500;
    res.end(healthy ? "ok" : "boom");
  });
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await upstream.close();
  });
  const port = await proxy.listen(0, "127.0.0.1");
  const service: Service = testService("default", "shop", "web", [{ host: "shop.test" }]);
  service.spec.breaker = { failures: 3, openMs: 300 };
  proxy.table = buildRouteTable(
    {
      services: [service],
      instances: [testInstance("w", { app: "shop", service: "web" }, "local", upstream.port)],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  for (let i = 0; i < 3; i++) assert.equal((await request(port, "shop.test", "/")).status, 500);
  const hits = upstream.hits;
  const open = await request(port, "shop.test", "/");
  assert.equal(open.status, 503);
  assert.equal(JSON.parse(open.body).code, "circuit_open");
  assert.ok(Number(open.headers["retry-after"]) >= 1);
  assert.equal(upstream.hits, hits, "an open breaker fails fast, without calling the upstream");

  healthy = true;
  await new Promise((r) => setTimeout(r, 350));
  assert.equal((await request(port, "shop.test", "/")).status, 200, "the half-open trial passes");
  for (let i = 0; i < 5; i++)
    assert.equal((await request(port, "shop.test", "/")).status, 200, "closed again");
});
