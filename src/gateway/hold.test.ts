// Scale to zero in the gateway: requests for a service with `autoscale.min: 0` and no instance
// are held (bounded, with a timeout), one wake call per burst, and go on when a table with an
// instance is swapped in; upgrades too; clients that leave are dropped.

import assert from "node:assert/strict";
import http from "node:http";
import type { Socket } from "node:net";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Instance, Service } from "../model/objects.ts";
import { HeldRequests } from "./hold.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startUpstream, testInstance, testNode, testService, waitFor } from "./testing.ts";

const KEY = "default/shop/web";

function idleService(): Service {
  const service = testService("default", "shop", "web", [{ host: "shop.test" }]);
  service.spec.autoscale = {
    min: 0,
    max: 2,
    target: { metric: "rps", value: 100 },
    scaleDownDelayMs: 60_000,
    maxStep: 2,
    idleAfterMs: 300_000,
    stableWindowMs: 60_000,
    panicWindowMs: 6_000,
  };
  return service;
}

async function heldProxy(
  t: { after: (fn: () => unknown) => void },
  hold: { maxPerService?: number; timeoutMs?: number } = {},
  wake: (service: string) => Promise<void> = async () => {},
) {
  const proxy = new GatewayProxy({ logger: silentLogger });
  const wakes: string[] = [];
  proxy.holds = new HeldRequests({
    ...hold,
    logger: silentLogger,
    wake: (service) => {
      wakes.push(service);
      return wake(service);
    },
  });
  t.after(() => proxy.close());
  const port = await proxy.listen(0, "127.0.0.1");
  const service = idleService();
  const build = (instances: Instance[], version: number) =>
    buildRouteTable({ services: [service], instances, nodes: [testNode("local", "127.0.0.1")] }, version, {
      previous: proxy.table,
    });
  proxy.table = build([], 1);
  return { proxy, port, wakes, build, holds: proxy.holds };
}

test("a burst for a service scaled to zero waits, asks once, and is answered by the instance that comes", async (t) => {
  const upstream = await startUpstream((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      body += c;
    });
    req.on("end", () => res.end(`hello ${req.url} ${body}`));
  });
  upstream.server.on("upgrade", (_req, socket: Socket) => {
    socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    socket.pipe(socket);
  });
  t.after(() => upstream.close());
  const { proxy, port, wakes, build, holds } = await heldProxy(t);

  const answers = Array.from({ length: 5 }, (_, i) =>
    request(port, "shop.test", `/r${i}`, { method: "POST", body: `body${i}` }),
  );
  const upgraded = new Promise<string>((resolve, reject) => {
    const req = http.request({
      port,
      path: "/ws",
      headers: { host: "shop.test", connection: "Upgrade", upgrade: "websocket" },
    });
    req.on("upgrade", (res, socket: Socket) => {
      socket.once("data", (echo) => {
        socket.destroy();
        resolve(`${res.statusCode} ${echo}`);
      });
      socket.write("ping");
    });
    req.on("response", (res) => reject(new Error(`answered ${res.statusCode}`)));
    req.on("error", reject);
    req.end();
  });
  await waitFor(() => holds.waiting(KEY) === 6, 3000, "six held");
  assert.deepEqual([...holds.waitingByService()], [[KEY, 6]]);
  assert.deepEqual(wakes, [KEY], "one wake call for the burst");
  const waitingNow = () =>
    proxy.table.load.report(Date.now(), 1000).services.find((l) => l.service === KEY)?.waiting;
  assert.equal(waitingNow(), 6, "the live load report carries the held count");
  assert.equal(upstream.hits, 0);

  proxy.table = build([testInstance("w1", { app: "shop", service: "web" }, "local", upstream.port)], 2);
  const results = await Promise.all(answers);
  for (const [i, r] of results.entries()) {
    assert.equal(r.status, 200);
    assert.equal(r.body, `hello /r${i} body${i}`, "the body waited with its request");
  }
  assert.equal(await upgraded, "101 ping");
  assert.equal(holds.waiting(KEY), 0);
  assert.deepEqual([...holds.waitingByService()], []);
  assert.equal(waitingNow() ?? 0, 0);
});

test("a full queue and a timeout answer 503 with Retry-After", async (t) => {
  const { port, holds } = await heldProxy(t, { maxPerService: 2, timeoutMs: 300 });
  const started = Date.now();
  const first = [request(port, "shop.test", "/a"), request(port, "shop.test", "/b")];
  await waitFor(() => holds.waiting(KEY) === 2, 3000, "two held");
  const full = await request(port, "shop.test", "/c");
  assert.equal(full.status, 503);
  assert.equal(full.headers["retry-after"], "1");
  assert.match(JSON.parse(full.body).message, /2 requests already wait/);
  for (const r of await Promise.all(first)) {
    assert.equal(r.status, 503);
    assert.equal(r.headers["retry-after"], "5");
    assert.match(JSON.parse(r.body).message, /none started within/);
  }
  const waited = Date.now() - started;
  assert.ok(waited >= 280 && waited < 2000, `held for the timeout (${waited} ms)`);
  assert.equal(holds.waiting(KEY), 0);
});

test("a client that leaves while held is dropped from the queue", async (t) => {
  const { port, holds } = await heldProxy(t, { maxPerService: 1 });
  const req = http.request({ port, path: "/", headers: { host: "shop.test" } });
  req.on("error", () => {});
  req.end();
  await waitFor(() => holds.waiting(KEY) === 1, 3000, "held");
  req.destroy();
  await waitFor(() => holds.waiting(KEY) === 0, 3000, "dropped");
  // Its place is free again: the next request is held, not refused as over the bound.
  const next = http.request({ port, path: "/", headers: { host: "shop.test" } });
  next.on("error", () => {});
  next.end();
  await waitFor(() => holds.waiting(KEY) === 1, 3000, "the next one held");
  next.destroy();
});

test("a failed wake call is retried while requests wait; a service that does not scale to zero gets the plain 503", async (t) => {
  let calls = 0;
  const { port, holds, proxy } = await heldProxy(t, {}, async () => {
    calls++;
    if (calls < 3) throw new Error("control plane away");
  });
  const held = request(port, "shop.test", "/");
  await waitFor(() => calls >= 3, 5000, "three wake calls");
  assert.equal(holds.waiting(KEY), 1);
  // The service is now deployed without scale to zero: nothing will wake it for the held request.
  const plain = buildRouteTable(
    { services: [testService("default", "shop", "web", [{ host: "shop.test" }])], instances: [], nodes: [] },
    3,
  );
  proxy.table = plain;
  const r = await held;
  assert.equal(r.status, 503);
  assert.match(JSON.parse(r.body).message, /no longer scales to zero/);
  assert.equal(holds.waiting(KEY), 0);
  const direct = await request(port, "shop.test", "/");
  assert.equal(direct.status, 503);
  assert.equal(direct.headers["retry-after"], "1");
  assert.equal(holds.waiting(KEY), 0, "not held");
});
