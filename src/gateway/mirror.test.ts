// Traffic mirroring: shadow copies reach the mirror service; its answers (and
// its failures) never touch the real response.

import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Service } from "../model/objects.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startUpstream, testInstance, testNode, testService, waitFor } from "./testing.ts";

test("a mirrored route copies its bodiless requests; the client only ever sees the real answer", async (t) => {
  const seenByShadow: string[] = [];
  const real = await startUpstream((_req, res) => res.end("real"));
  const shadow = await startUpstream((req, res) => {
    seenByShadow.push(`${req.method} ${req.url}`);
    res.statusCode = 500; // a broken shadow must not matter
    res.end("shadow");
  });
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await Promise.all([real.close(), shadow.close()]);
  });
  const port = await proxy.listen(0, "127.0.0.1");
  const web: Service = testService("default", "shop", "web", [{ host: "shop.test" }]);
  web.spec.routes[0].mirror = { service: "next", percent: 50 };
  proxy.table = buildRouteTable(
    {
      services: [web, testService("default", "shop", "next", [])],
      instances: [
        testInstance("r", { app: "shop", service: "web" }, "local", real.port),
        testInstance("s", { app: "shop", service: "next" }, "local", shadow.port),
      ],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  for (let i = 0; i < 10; i++) {
    const r = await request(port, "shop.test", `/item/${i}`);
    assert.equal(r.status, 200);
    assert.equal(r.body, "real");
  }
  const posted = await request(port, "shop.test", "/orders", { method: "POST", body: "{}" });
  assert.equal(posted.body, "real");
  await waitFor(() => seenByShadow.length === 5, 3000, "5 shadow copies");
  assert.deepEqual(seenByShadow.sort(), [
    "GET /item/1",
    "GET /item/3",
    "GET /item/5",
    "GET /item/7",
    "GET /item/9",
  ]);
  assert.equal(real.hits, 11);
});
