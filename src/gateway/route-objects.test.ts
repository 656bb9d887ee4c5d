// Route objects and traffic overrides in the table (pure), and a refused
// configuration never reaching the disk cache (real stand-in control plane).

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { checkTrafficBody, patchTraffic, type RouteBody, type RouteObject } from "../model/live-config.ts";
import { type BuildResult, CACHE_FILE, ConfigSource } from "./config-source.ts";
import { buildRouteTable } from "./route-table.ts";
import { startTestControlPlane, testInstance, testNode, testService, waitFor } from "./testing.ts";

const nodes = [testNode("n1", "10.0.0.1")];
const routeObject = (app: string, name: string, spec: Partial<RouteBody>): RouteObject => ({
  tenant: "default",
  app,
  name,
  spec: spec as RouteBody,
  createdAt: "",
  updatedAt: "",
});

describe("route objects in the table", () => {
  test("serve through their service's backend, with their own policies; herd.yaml wins a clash", () => {
    const web = testService("default", "shop", "web", [{ host: "shop.test" }]);
    const table = buildRouteTable(
      {
        services: [web],
        instances: [testInstance("w1", { app: "shop", service: "web" }, "n1", 5000)],
        nodes,
        routes: [
          routeObject("shop", "beta", {
            service: "web",
            host: "beta.test",
            path: "/v2",
            rewrite: "/",
            rateLimit: { rate: 5 },
          }),
          routeObject("shop", "gone", { service: "old", host: "old.test" }),
          routeObject("shop", "steal", { service: "web", host: "shop.test", priority: 0 }),
        ],
      },
      3,
    );
    const beta = table.route("beta.test", "/v2/x");
    assert.equal(beta?.backend, table.backends.get("default/shop/web"));
    assert.equal(beta?.rewrite, "/");
    assert.equal(beta?.limit?.rate, 5);
    // A route object whose service is gone answers like a service without instances (503), not 404.
    const old = table.route("old.test", "/");
    assert.equal(old?.backend.service, "default/shop/old");
    assert.equal(old?.backend.endpoints.length, 0);
    // Same identity as web's own herd.yaml route, same owner: served once, by the herd.yaml route.
    assert.equal(table.routeCount, 3);
  });

  test("an invalid route object fails the build, naming the object and the field", () => {
    assert.throws(
      () =>
        buildRouteTable(
          {
            services: [],
            instances: [],
            nodes,
            routes: [
              routeObject("shop", "bad", { service: "web", host: "x.test", balance: "random" as never }),
            ],
          },
          4,
        ),
      /invalid route default\/shop\/bad: balance: /,
    );
  });

  test("traffic overrides beat the spec; null turns a policy off", () => {
    const web = testService("default", "shop", "web", [{ host: "shop.test" }]);
    web.spec.breaker = { failures: 5, openMs: 5000 };
    web.spec.concurrency = 100;
    const plain = buildRouteTable({ services: [web], instances: [], nodes }, 1);
    assert.equal(plain.backends.get("default/shop/web")?.concurrency, 100);
    assert.notEqual(plain.backends.get("default/shop/web")?.breaker, null);
    const overridden = buildRouteTable(
      {
        services: [{ ...web, traffic: { breaker: null, concurrency: 3, criticality: "low" } }],
        instances: [],
        nodes,
      },
      2,
      { previous: plain },
    );
    const backend = overridden.backends.get("default/shop/web");
    assert.equal(backend?.concurrency, 3);
    assert.equal(backend?.breaker, null);
    assert.equal(backend?.shedAbove, 0.6);
  });

  test("a traffic override given as durations reaches the breaker and the outlier detector in ms", () => {
    const web = testService("default", "shop", "web", [{ host: "shop.test" }]);
    const traffic = patchTraffic(
      undefined,
      checkTrafficBody({ breaker: { failures: 2, open: "1500ms" }, outlier: { ejection: "2m" } }),
    );
    const table = buildRouteTable({ services: [{ ...web, traffic }], instances: [], nodes }, 1);
    const policies = table.backends.get("default/shop/web")?.policies;
    assert.equal(policies?.breaker?.options.openMs, 1500);
    assert.equal(policies?.breaker?.options.failureThreshold, 2);
    assert.equal(policies?.outlier?.options.baseEjectionMs, 120_000);
  });

  test("a route object's cors.maxAge as a duration is whole seconds in Access-Control-Max-Age", () => {
    const maxAge = (value: string | number) => {
      const table = buildRouteTable(
        {
          services: [testService("default", "shop", "web", [])],
          instances: [],
          nodes,
          routes: [
            routeObject("shop", "api", {
              service: "web",
              host: "api.test",
              cors: { origins: ["*"], maxAge: value },
            }),
          ],
        },
        1,
      );
      // Raw [name, value, …] headers of a preflight's answer.
      const headers =
        table.route("api.test", "/")?.cors?.preflightHeaders("https://app.test", undefined) ?? [];
      return headers[headers.indexOf("Access-Control-Max-Age") + 1];
    };
    assert.equal(maxAge("10m"), "600");
    assert.equal(maxAge("2000ms"), "2");
    assert.equal(maxAge(90), "90");
    assert.throws(
      () => maxAge("1500ms"),
      /invalid route default\/shop\/api: cors\.maxAge: must be a duration in whole seconds .*; got 1500ms/,
    );
  });
});

test("a refused configuration is reported and never written to the disk cache", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "herd-route-objects-"));
  const controlPlane = await startTestControlPlane("t");
  const results: BuildResult[] = [];
  const source = new ConfigSource({
    server: controlPlane.url,
    token: "t",
    dataDir,
    logger: silentLogger,
    onTable: () => {},
    onResult: (r) => results.push(r),
    cacheIntervalMs: 1,
  });
  try {
    controlPlane.put("node", "n1", testNode("n1", "127.0.0.1"));
    controlPlane.put(
      "service",
      "default/shop/web",
      testService("default", "shop", "web", [{ host: "shop.test" }]),
    );
    const good = controlPlane.put(
      "route",
      "default/shop/ok",
      routeObject("shop", "ok", { service: "web", host: "ok.test" }),
    );
    await source.start();
    await waitFor(
      () => results.at(-1)?.version === good && results.at(-1)?.applied === true,
      3000,
      "the good build",
    );
    const bad = controlPlane.put("route", "default/shop/bad", routeObject("shop", "bad", { service: "web" }));
    await waitFor(() => results.at(-1)?.version === bad, 3000, "the refusal");
    const refused = results.at(-1)!;
    assert.equal(refused.applied, false);
    assert.match(refused.error ?? "", /route default\/shop\/bad: host: /);
    assert.equal(refused.serving.version, good);
    // A later change to something else is still refused while the bad object is there.
    const later = controlPlane.put(
      "instance",
      "w1",
      testInstance("w1", { app: "shop", service: "web" }, "n1", 5000),
    );
    await waitFor(() => results.at(-1)?.version === later, 3000, "the next refusal");
    assert.equal(results.at(-1)?.applied, false);
    await source.close();
    const cache = JSON.parse(await readFile(join(dataDir, CACHE_FILE), "utf8"));
    assert.equal(cache.revision, good);
    assert.deepEqual(
      cache.items.filter((i: { kind: string }) => i.kind === "route").map((i: { key: string }) => i.key),
      ["default/shop/ok"],
    );
  } finally {
    await source.close();
    await controlPlane.close();
    await rm(dataDir, { recursive: true, force: true });
  }
});
