// Load balancing per route: least request prefers the less busy instance;
// a consistent hash keeps a client on one instance.

import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Route } from "../model/manifest.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startUpstream, type TestUpstream, testInstance, testNode, testService } from "./testing.ts";

const WEB = { app: "shop", service: "web" };

async function setup(
  t: { after(fn: () => Promise<void>): void },
  balance: Route["balance"],
  upstreams: TestUpstream[],
) {
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await Promise.all(upstreams.map((u) => u.close()));
  });
  const port = await proxy.listen(0, "127.0.0.1");
  proxy.table = buildRouteTable(
    {
      services: [testService("default", "shop", "web", [{ host: "shop.test", balance }])],
      instances: upstreams.map((u, i) => testInstance(`i${i}`, WEB, "local", u.port)),
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  return port;
}

test("least_request sends most traffic to the instance that answers fast", async (t) => {
  const slow = await startUpstream((_req, res) => setTimeout(() => res.end("slow"), 100));
  const fast = await startUpstream((_req, res) => res.end("fast"));
  const port = await setup(t, { kind: "least_request" }, [slow, fast]);
  // 8 concurrent clients for a while: the slow one holds requests longer, so it is picked less.
  const started = Date.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (Date.now() - started < 1000) await request(port, "shop.test", "/");
    }),
  );
  assert.ok(fast.hits > slow.hits * 4, `fast ${fast.hits}, slow ${slow.hits}`);
});

test("hash on a header or cookie keeps each key on one instance and spreads the keys", async (t) => {
  const ups = await Promise.all([0, 1, 2].map((n) => startUpstream((_req, res) => res.end(String(n)))));
  const port = await setup(t, { kind: "hash", on: "header", name: "x-user" }, ups);
  const where = new Map<string, Set<string>>();
  for (let round = 0; round < 3; round++) {
    for (let u = 0; u < 30; u++) {
      const r = await request(port, "shop.test", "/", { headers: { "X-User": `user-${u}` } });
      const seen = where.get(`user-${u}`) ?? new Set();
      seen.add(r.body);
      where.set(`user-${u}`, seen);
    }
  }
  assert.ok(
    [...where.values()].every((s) => s.size === 1),
    "sticky",
  );
  const used = new Set([...where.values()].map((s) => [...s][0]));
  assert.equal(used.size, 3, "30 keys spread over all 3 instances");
});

test("hash on a cookie; without the cookie any instance answers", async (t) => {
  const ups = await Promise.all([0, 1].map((n) => startUpstream((_req, res) => res.end(String(n)))));
  const port = await setup(t, { kind: "hash", on: "cookie", name: "session" }, ups);
  const first = await request(port, "shop.test", "/", { headers: { Cookie: "theme=dark; session=abc123" } });
  for (let i = 0; i < 5; i++) {
    const again = await request(port, "shop.test", "/", { headers: { Cookie: "session=abc123" } });
    assert.equal(again.body, first.body);
  }
  const anonymous = new Set<string>();
  for (let i = 0; i < 4; i++) anonymous.add((await request(port, "shop.test", "/")).body);
  assert.equal(anonymous.size, 2, "no cookie: round robin");
});
