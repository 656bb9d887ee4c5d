import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { normalizeHost } from "./route-match.ts";
import { buildRouteTable } from "./route-table.ts";
import { testInstance, testNode, testService } from "./testing.ts";

const nodes = [testNode("n1", "10.0.0.1"), testNode("n2", "10.0.0.2")];

/** The service key `match` finds, or undefined. */
function matched(table: ReturnType<typeof buildRouteTable>, host: string, path: string): string | undefined {
  return table.match(host, path)?.service;
}

describe("route table", () => {
  test("exact host wins over a wildcard; the longest wildcard suffix wins", () => {
    const table = buildRouteTable(
      {
        services: [
          testService("default", "shop", "web", [{ host: "shop.example.com" }]),
          testService("default", "any", "web", [{ host: "*.example.com" }]),
          testService("default", "eu", "web", [{ host: "*.eu.example.com" }]),
        ],
        instances: [],
        nodes,
      },
      7,
    );
    assert.equal(table.version, 7);
    assert.equal(table.routeCount, 3);
    assert.equal(matched(table, "shop.example.com", "/"), "default/shop/web");
    assert.equal(matched(table, "blog.example.com", "/x"), "default/any/web");
    assert.equal(matched(table, "a.b.example.com", "/"), "default/any/web");
    assert.equal(matched(table, "shop.eu.example.com", "/"), "default/eu/web");
    // A wildcard needs at least one more label.
    assert.equal(matched(table, "example.com", "/"), undefined);
    assert.equal(matched(table, "example.org", "/"), undefined);
    assert.equal(table.servesHost("x.example.com"), true);
    assert.equal(table.servesHost("example.org"), false);
  });

  test("the host is matched lowercased, without port or trailing dot", () => {
    const table = buildRouteTable(
      {
        services: [testService("default", "shop", "web", [{ host: "Shop.Example.com" }])],
        instances: [],
        nodes,
      },
      1,
    );
    assert.equal(matched(table, "SHOP.example.COM:8080", "/"), "default/shop/web");
    assert.equal(matched(table, "shop.example.com.", "/"), "default/shop/web");
    assert.equal(normalizeHost("[::1]:8080"), "[::1]");
    assert.equal(normalizeHost("LOCALHOST"), "localhost");
  });

  test("a prefix matches on a segment boundary only, and the longest prefix wins", () => {
    const table = buildRouteTable(
      {
        services: [
          testService("default", "site", "web", [{ host: "a.test", path: "/" }]),
          testService("default", "site", "api", [{ host: "a.test", path: "/api/" }]),
          testService("default", "site", "admin", [{ host: "a.test", path: "/api/admin" }]),
          testService("default", "other", "web", [{ host: "b.test", path: "/only" }]),
        ],
        instances: [],
        nodes,
      },
      1,
    );
    assert.equal(matched(table, "a.test", "/api"), "default/site/api");
    assert.equal(matched(table, "a.test", "/api/x"), "default/site/api");
    assert.equal(matched(table, "a.test", "/api?q=1"), "default/site/api");
    assert.equal(matched(table, "a.test", "/apix"), "default/site/web");
    assert.equal(matched(table, "a.test", "/api/admin/users"), "default/site/admin");
    assert.equal(matched(table, "a.test", "/api/administrator"), "default/site/api");
    assert.equal(matched(table, "a.test", "/"), "default/site/web");
    assert.equal(matched(table, "b.test", "/only/x"), "default/other/web");
    assert.equal(matched(table, "b.test", "/"), undefined);
    assert.equal(table.servesHost("b.test"), true);
  });

  test("an exact host without a matching prefix falls through to a wildcard", () => {
    const table = buildRouteTable(
      {
        services: [
          testService("default", "api", "web", [{ host: "api.example.com", path: "/v1" }]),
          testService("default", "any", "web", [{ host: "*.example.com" }]),
        ],
        instances: [],
        nodes,
      },
      1,
    );
    assert.equal(matched(table, "api.example.com", "/v1/x"), "default/api/web");
    assert.equal(matched(table, "api.example.com", "/v2"), "default/any/web");
  });

  test("a clash goes to the first service by key and is reported", () => {
    const services = [
      testService("default", "zeta", "web", [{ host: "same.test", path: "/x" }]),
      testService("default", "alpha", "web", [{ host: "same.test", path: "/x/" }]),
    ];
    for (const order of [services, [...services].reverse()]) {
      const table = buildRouteTable({ services: order, instances: [], nodes }, 1);
      assert.equal(matched(table, "same.test", "/x"), "default/alpha/web");
      assert.equal(table.routeCount, 1);
      assert.deepEqual(table.problems, [
        "route same.test/x is declared by default/alpha/web and default/zeta/web; default/alpha/web serves it",
      ]);
    }
  });

  test("endpoints are the running instances at their node's address, in round-robin order", () => {
    const web = { app: "shop", service: "web" };
    const table = buildRouteTable(
      {
        services: [testService("default", "shop", "web", [{ host: "shop.test" }])],
        instances: [
          testInstance("i1", web, "n1", 5001),
          testInstance("i2", web, "n2", 5002),
          testInstance("i3", web, "n1", 5003, "ready"),
          testInstance("i4", web, "n1", 5004, "draining"),
          testInstance("i5", web, null, undefined, "pending"),
          testInstance("i6", web, "gone", 5006),
          testInstance("i7", { app: "other", service: "web" }, "n1", 5007),
        ],
        nodes,
      },
      1,
    );
    const backend = table.match("shop.test", "/");
    assert.ok(backend);
    assert.equal(backend.name, "shop/web");
    assert.deepEqual(
      backend.endpoints.map(({ instance, address, port, inflight }) => ({
        instance,
        address,
        port,
        inflight,
      })),
      [
        { instance: "i1", address: "10.0.0.1", port: 5001, inflight: 0 },
        { instance: "i2", address: "10.0.0.2", port: 5002, inflight: 0 },
      ],
    );
    assert.deepEqual(
      [backend.next(), backend.next(), backend.next()].map((e) => e?.instance),
      ["i1", "i2", "i1"],
    );
    assert.equal(backend.nextExcept(backend.endpoints[1])?.instance, "i1");
    assert.deepEqual(table.problems, [
      "instance i6 runs on node gone, which is not known; it gets no traffic",
    ]);
  });

  test("instances on a node whose heartbeats stopped get traffic only while the service has none elsewhere", () => {
    const web = { app: "shop", service: "web" };
    const api = { app: "shop", service: "api" };
    const table = buildRouteTable(
      {
        services: [
          testService("default", "shop", "web", [{ host: "shop.test" }]),
          testService("default", "shop", "api", [{ host: "api.shop.test" }]),
        ],
        instances: [
          testInstance("w1", web, "n1", 5001),
          testInstance("w2", web, "n2", 5002),
          testInstance("w3", web, "n3", 5003),
          testInstance("a1", api, "n3", 5004),
        ],
        nodes: [...nodes, { ...testNode("n3", "10.0.0.3"), state: "not_ready" }],
      },
      1,
    );
    assert.deepEqual(
      table.match("shop.test", "/")?.endpoints.map((e) => e.instance),
      ["w1", "w2"],
      "w3's node is not ready",
    );
    assert.deepEqual(
      table.match("api.shop.test", "/")?.endpoints.map((e) => e.instance),
      ["a1"],
      "better a node that may be down than no instance at all",
    );
  });

  test("a routed service with no running instance matches with no endpoint", () => {
    const table = buildRouteTable(
      { services: [testService("default", "shop", "web", [{ host: "shop.test" }])], instances: [], nodes },
      1,
    );
    const backend = table.match("shop.test", "/");
    assert.ok(backend);
    assert.equal(backend.next(), undefined);
  });
});
