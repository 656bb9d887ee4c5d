// Traffic splits through a real proxy: a 10/90 split over 10,000 requests, and
// sticky splits that keep a client on one side.

import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Service } from "../model/objects.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { startUpstream, testInstance, testNode, testService } from "./testing.ts";

async function setup(t: { after(fn: () => Promise<void>): void }, sticky?: { on: "header"; name: string }) {
  const stable = await startUpstream((_req, res) => res.end("stable"));
  const canary = await startUpstream((_req, res) => res.end("canary"));
  const proxy = new GatewayProxy({ logger: silentLogger });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  t.after(async () => {
    agent.destroy();
    await proxy.close();
    await Promise.all([stable.close(), canary.close()]);
  });
  const port = await proxy.listen(0, "127.0.0.1");
  const web: Service = testService("default", "shop", "web", [{ host: "shop.test" }]);
  web.spec.routes[0].split = { to: [{ service: "canary", weight: 10 }], ...(sticky ? { sticky } : {}) };
  proxy.table = buildRouteTable(
    {
      services: [web, testService("default", "shop", "canary", [])],
      instances: [
        testInstance("s", { app: "shop", service: "web" }, "local", stable.port),
        testInstance("c", { app: "shop", service: "canary" }, "local", canary.port),
      ],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  const get = (headers: Record<string, string> = {}) =>
    new Promise<string>((resolve, reject) => {
      http
        .get(
          { host: "127.0.0.1", port, path: "/", headers: { host: "shop.test", ...headers }, agent },
          (res) => {
            let body = "";
            res.on("data", (d) => {
              body += d;
            });
            res.on("end", () => resolve(body));
          },
        )
        .on("error", reject);
    });
  return { get, stable, canary };
}

test("a 10/90 split lands within ±1% over 10,000 requests", async (t) => {
  const { get, canary, stable } = await setup(t);
  let left = 10_000;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (left-- > 0) await get();
    }),
  );
  const total = canary.hits + stable.hits;
  assert.equal(total, 10_000);
  const share = canary.hits / total;
  assert.ok(Math.abs(share - 0.1) <= 0.01, `canary got ${(share * 100).toFixed(2)}%`);
});

test("a sticky split keeps each client on its side, and about the share of clients goes to the canary", async (t) => {
  const { get } = await setup(t, { on: "header", name: "x-user" });
  let onCanary = 0;
  for (let u = 0; u < 500; u++) {
    const first = await get({ "X-User": `u${u}` });
    for (let i = 0; i < 2; i++) assert.equal(await get({ "X-User": `u${u}` }), first, `user u${u} stays`);
    if (first === "canary") onCanary++;
  }
  assert.ok(onCanary >= 25 && onCanary <= 80, `${onCanary} of 500 users on the canary (expected about 50)`);
});
