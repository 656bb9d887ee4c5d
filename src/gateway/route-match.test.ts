// Route matching beyond host and prefix: exact paths, methods, headers,
// priority, rewrites, and which routes count as the same route.

import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Route } from "../model/manifest.ts";
import { GatewayProxy } from "./proxy.ts";
import { rewritePath } from "./route-match.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startUpstream, testInstance, testNode, testService } from "./testing.ts";

function table(...services: Array<[string, Array<Partial<Route> & { host: string }>]>) {
  return buildRouteTable(
    {
      services: services.map(([name, routes]) => testService("default", "shop", name, routes)),
      instances: [],
      nodes: [],
    },
    1,
  );
}

const serviceOf = (t: ReturnType<typeof table>, path: string, method = "GET", headers = {}) =>
  t.route("shop.test", path, method, headers)?.backend.name;

test("an exact route matches only its path (and its query), before any prefix", () => {
  const t = table(
    ["exact", [{ host: "shop.test", path: "/health", match: "exact" }]],
    ["all", [{ host: "shop.test" }]],
  );
  assert.equal(serviceOf(t, "/health"), "shop/exact");
  assert.equal(serviceOf(t, "/health?full=1"), "shop/exact");
  assert.equal(serviceOf(t, "/health/deep"), "shop/all");
  assert.equal(serviceOf(t, "/healthz"), "shop/all");
});

test("methods and headers narrow a route; the more specific one is tried first", () => {
  const t = table(
    ["writer", [{ host: "shop.test", path: "/api", methods: ["POST", "PUT"] }]],
    ["canary", [{ host: "shop.test", path: "/api", headers: { "X-Canary": "yes" } }]],
    ["reader", [{ host: "shop.test", path: "/api" }]],
  );
  assert.equal(serviceOf(t, "/api/items", "POST"), "shop/writer");
  assert.equal(serviceOf(t, "/api/items", "GET"), "shop/reader");
  assert.equal(serviceOf(t, "/api/items", "GET", { "x-canary": "yes" }), "shop/canary");
  assert.equal(serviceOf(t, "/api/items", "GET", { "x-canary": "no" }), "shop/reader");
  assert.deepEqual(t.problems, [], "same path with different methods or headers is not a clash");
});

test("priority beats path length", () => {
  const t = table(
    ["maintenance", [{ host: "shop.test", path: "/", priority: 10 }]],
    ["api", [{ host: "shop.test", path: "/api" }]],
  );
  assert.equal(serviceOf(t, "/api/x"), "shop/maintenance");
});

test("the same host, path, methods and headers in two services is a clash: the first by key serves", () => {
  const t = table(
    ["a", [{ host: "shop.test", path: "/x", methods: ["GET"] }]],
    ["b", [{ host: "shop.test", path: "/x/", methods: ["GET"] }]],
  );
  assert.equal(serviceOf(t, "/x"), "shop/a");
  assert.equal(t.problems.length, 1);
  assert.match(t.problems[0], /declared by default\/shop\/a and default\/shop\/b/);
});

test("rewrite replaces the matched prefix and keeps the rest and the query", () => {
  const t = table(
    ["api", [{ host: "shop.test", path: "/api/v1", rewrite: "/" }]],
    ["legacy", [{ host: "shop.test", path: "/old", rewrite: "/new/" }]],
  );
  const api = t.route("shop.test", "/api/v1/items?id=3")!;
  assert.equal(rewritePath(api, "/api/v1/items?id=3"), "/items?id=3");
  assert.equal(rewritePath(api, "/api/v1"), "/");
  assert.equal(rewritePath(api, "/api/v1?x=1"), "/?x=1");
  const legacy = t.route("shop.test", "/old/a")!;
  assert.equal(rewritePath(legacy, "/old/a"), "/new/a");
  const plain = table(["p", [{ host: "shop.test", path: "/p" }]]).route("shop.test", "/p/a")!;
  assert.equal(rewritePath(plain, "/p/a"), "/p/a");
});

test("through the proxy: methods and headers pick the service, the rewrite reaches the upstream", async (t) => {
  const seen = (name: string) => startUpstream((req, res) => res.end(JSON.stringify({ name, url: req.url })));
  const [writer, canary, reader] = await Promise.all([seen("writer"), seen("canary"), seen("reader")]);
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await Promise.all([writer.close(), canary.close(), reader.close()]);
  });
  const port = await proxy.listen(0, "127.0.0.1");
  const at = (service: string) => ({ app: "shop", service });
  proxy.table = buildRouteTable(
    {
      services: [
        testService("default", "shop", "writer", [
          { host: "shop.test", path: "/api", methods: ["POST"], rewrite: "/" },
        ]),
        testService("default", "shop", "canary", [
          { host: "shop.test", path: "/api", headers: { "x-canary": "1" }, rewrite: "/v2" },
        ]),
        testService("default", "shop", "reader", [{ host: "shop.test", path: "/api", rewrite: "/" }]),
      ],
      instances: [
        testInstance("w", at("writer"), "local", writer.port),
        testInstance("c", at("canary"), "local", canary.port),
        testInstance("r", at("reader"), "local", reader.port),
      ],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  const body = async (method: string, headers: Record<string, string> = {}) =>
    JSON.parse((await request(port, "shop.test", "/api/items?id=1", { method, headers })).body);
  assert.deepEqual(await body("POST"), { name: "writer", url: "/items?id=1" });
  assert.deepEqual(await body("GET"), { name: "reader", url: "/items?id=1" });
  assert.deepEqual(await body("GET", { "X-Canary": "1" }), { name: "canary", url: "/v2/items?id=1" });
});

test("two Host headers are refused with 400, as nginx does", async (t) => {
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(() => proxy.close());
  const port = await proxy.listen(0, "127.0.0.1");
  const { connect } = await import("node:net");
  const reply = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.write("GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n");
    });
    let data = "";
    socket.on("data", (d) => {
      data += d;
    });
    socket.on("end", () => resolve(data));
    socket.on("error", reject);
  });
  assert.match(reply, /^HTTP\/1\.1 400/);
  assert.match(reply, /more than one Host header/);
});
