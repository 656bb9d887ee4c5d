// Overload: low-criticality services shed before critical ones; a service's
// concurrency limit sheds past its own in-flight count.

import assert from "node:assert/strict";
import type http from "node:http";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Service } from "../model/objects.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startUpstream, testInstance, testNode, testService, waitFor } from "./testing.ts";

test("under overload low sheds first, critical last; a concurrency limit sheds past it", async (t) => {
  const held: http.ServerResponse[] = [];
  const up = await startUpstream((req, res) => {
    if (req.url === "/hold") held.push(res);
    else res.end("ok");
  });
  const proxy = new GatewayProxy({ logger: silentLogger, maxInflight: 10 });
  t.after(async () => {
    for (const r of held) r.end("released");
    await proxy.close();
    await up.close();
  });
  const port = await proxy.listen(0, "127.0.0.1");
  const svc = (name: string, extra: Partial<Service["spec"]>): Service => {
    const s = testService("default", "shop", name, [{ host: `${name}.test` }]);
    Object.assign(s.spec, extra);
    return s;
  };
  proxy.table = buildRouteTable(
    {
      services: [
        svc("batch", { criticality: "low" }),
        svc("checkout", { criticality: "critical" }),
        svc("search", { concurrency: 2 }),
      ],
      instances: ["batch", "checkout", "search"].map((s) =>
        testInstance(s, { app: "shop", service: s }, "local", up.port),
      ),
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );

  // search allows 2 in flight of its own.
  const searches = [request(port, "search.test", "/hold"), request(port, "search.test", "/hold")];
  await waitFor(() => held.length === 2, 3000, "2 held searches");
  assert.equal((await request(port, "search.test", "/")).status, 503, "over its concurrency limit");

  for (const r of held.splice(0)) r.end("released");
  await Promise.all(searches);

  // 7 requests held open: 70% of capacity.
  const pending = Array.from({ length: 7 }, () => request(port, "checkout.test", "/hold"));
  await waitFor(() => held.length === 7, 3000, "7 held requests");
  const low = await request(port, "batch.test", "/");
  assert.equal(low.status, 503);
  assert.equal(JSON.parse(low.body).code, "overloaded");
  assert.equal(low.headers["retry-after"], "1");
  assert.equal((await request(port, "checkout.test", "/")).status, 200, "critical is still served");

  for (const r of held) r.end("released");
  await Promise.all(pending);
  assert.equal((await request(port, "batch.test", "/")).status, 200, "load gone: low is served again");
});
