// Two releases of one service side by side (canary, blue/green) through a real
// proxy: the new release gets its weight of the requests, sticky clients stay
// on one release, blue/green's preview host reaches only the new release.

import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Service } from "../model/objects.ts";
import type { ProgressiveState } from "../model/progressive.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { startUpstream, testInstance, testNode, testService } from "./testing.ts";

async function setup(t: { after(fn: () => Promise<void>): void }) {
  const v1 = await startUpstream((_req, res) => res.end("v1"));
  const v2 = await startUpstream((_req, res) => res.end("v2"));
  const proxy = new GatewayProxy({ logger: silentLogger });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  t.after(async () => {
    agent.destroy();
    await proxy.close();
    await Promise.all([v1.close(), v2.close()]);
  });
  const port = await proxy.listen(0, "127.0.0.1");
  const old = testInstance("web-a", { app: "shop", service: "web" }, "local", v1.port);
  const fresh = { ...testInstance("web-b", { app: "shop", service: "web" }, "local", v2.port), release: 2 };
  const serve = (progressive: Partial<ProgressiveState> | undefined) => {
    const web: Service = { ...testService("default", "shop", "web", [{ host: "shop.test" }]), release: 2 };
    if (progressive)
      web.progressive = {
        strategy: "canary",
        baseline: 1,
        release: 2,
        phase: "steps",
        step: 0,
        weight: 0,
        analyses: [],
        ...progressive,
      };
    proxy.table = buildRouteTable(
      { services: [web], instances: [old, fresh], nodes: [testNode("local", "127.0.0.1")] },
      1,
    );
  };
  const get = (host = "shop.test", headers: Record<string, string> = {}) =>
    new Promise<string>((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port, path: "/", headers: { host, ...headers }, agent }, (res) => {
          let body = "";
          res.on("data", (d) => {
            body += d;
          });
          res.on("end", () => resolve(`${res.statusCode} ${body}`));
        })
        .on("error", reject);
    });
  const count = async (n: number, headers?: (i: number) => Record<string, string>) => {
    const seen: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const body = await get("shop.test", headers?.(i));
      seen[body] = (seen[body] ?? 0) + 1;
    }
    return seen;
  };
  return { serve, get, count };
}

test("a canary's weight is its exact share of requests; 0 sends none and 100 sends all", async (t) => {
  const { serve, count } = await setup(t);
  serve({ weight: 0 });
  assert.deepEqual(await count(40), { "200 v1": 40 });
  serve({ weight: 25 });
  assert.deepEqual(await count(200), { "200 v1": 150, "200 v2": 50 });
  serve({ weight: 100 });
  assert.deepEqual(await count(40), { "200 v2": 40 });
  // No rollout: every running instance, of any release (a rolling update).
  serve(undefined);
  assert.deepEqual(await count(40), { "200 v1": 20, "200 v2": 20 });
});

test("a sticky canary keeps each client on one release", async (t) => {
  const { serve, get } = await setup(t);
  serve({ weight: 30, sticky: { on: "header", name: "x-user" } });
  const first = new Map<string, string>();
  for (let u = 0; u < 100; u++) first.set(`u${u}`, await get("shop.test", { "x-user": `u${u}` }));
  for (let u = 0; u < 100; u++)
    assert.equal(await get("shop.test", { "x-user": `u${u}` }), first.get(`u${u}`));
  const onCanary = [...first.values()].filter((b) => b === "200 v2").length;
  assert.ok(onCanary > 15 && onCanary < 45, `${onCanary} of 100 users on the canary`);
});

test("blue/green: the preview host reaches only the new release; the main host only the old until the switch", async (t) => {
  const { serve, get, count } = await setup(t);
  serve({ strategy: "bluegreen", phase: "preview", weight: 0 });
  assert.deepEqual(await count(20), { "200 v1": 20 });
  for (let i = 0; i < 10; i++) assert.equal(await get("v2.shop.localhost"), "200 v2");
  serve({ strategy: "bluegreen", phase: "promoted", weight: 100 });
  assert.deepEqual(await count(20), { "200 v2": 20 });
  // Aborted: no preview host, no request to the new release.
  serve({ strategy: "bluegreen", phase: "aborted", weight: 0 });
  assert.deepEqual(await count(20), { "200 v1": 20 });
  assert.match(await get("v2.shop.localhost"), /^404 /);
});
