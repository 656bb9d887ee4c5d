// Degradation: a route's fallback answers when its service cannot.

import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Service } from "../model/objects.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { closedPort, request, startUpstream, testInstance, testNode, testService } from "./testing.ts";

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

test("a service switched to its fallback (degraded): its fallback routes answer it but for one probe a second; others and the switch off reach it", async (t) => {
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(() => proxy.close());
  const port = await proxy.listen(0, "127.0.0.1");
  let reached = 0;
  const upstream = await startUpstream((_req, res) => {
    reached++;
    res.end("from the service");
  });
  t.after(() => upstream.close());
  const fallback = { status: 200, body: "cached answer", contentType: "text/plain" };
  const service: Service = testService("default", "shop", "web", [
    { host: "shop.test", path: "/recs", fallback },
    { host: "shop.test", path: "/cart" },
  ]);
  const build = (degraded: boolean, version: number) =>
    buildRouteTable(
      {
        services: [degraded ? { ...service, traffic: { fallback: true } } : service],
        instances: [testInstance("w", { app: "shop", service: "web" }, "local", upstream.port)],
        nodes: [testNode("local", "127.0.0.1")],
      },
      version,
      { previous: proxy.table },
    );

  proxy.table = build(true, 1);
  const started = Date.now();
  const answers: string[] = [];
  for (let i = 0; i < 10; i++) {
    const r = await request(port, "shop.test", "/recs");
    assert.equal(r.status, 200);
    answers.push(r.headers["x-herd-fallback"] === "degraded" ? "fallback" : r.body);
  }
  const elapsed = Date.now() - started;
  const probes = answers.filter((a) => a === "from the service").length;
  assert.equal(answers[0], "from the service", "the first request is the probe");
  assert.ok(probes <= 1 + Math.floor(elapsed / 1000), `${probes} probes in ${elapsed} ms: ${answers}`);
  assert.equal(answers.filter((a) => a === "fallback").length, 10 - probes);
  assert.equal(reached, probes);
  // A route without a fallback is not switched.
  const cart = await request(port, "shop.test", "/cart");
  assert.equal(cart.body, "from the service");
  assert.equal(cart.headers["x-herd-fallback"], undefined);
  // Switched back: every request reaches the service.
  proxy.table = build(false, 2);
  for (let i = 0; i < 3; i++)
    assert.equal((await request(port, "shop.test", "/recs")).body, "from the service");
});
