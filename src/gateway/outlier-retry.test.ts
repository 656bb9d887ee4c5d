// Outlier ejection and the retry budget through a real proxy and upstreams.

import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Service } from "../model/objects.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { closedPort, request, startUpstream, testInstance, testNode, testService } from "./testing.ts";

const WEB = { app: "shop", service: "web" };
const nodes = [testNode("local", "127.0.0.1")];

test("an instance failing N times in a row is ejected, then readmitted after the ejection time", async (t) => {
  const good = await startUpstream((_req, res) => res.end("good"));
  let badFails = true;
  const bad = await startUpstream((_req, res) => {
    res.statusCode = badFails ? 500 : 200;
    res.end("bad");
  });
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await Promise.all([good.close(), bad.close()]);
  });
  const port = await proxy.listen(0, "127.0.0.1");
  const service: Service = testService("default", "shop", "web", [{ host: "shop.test" }]);
  service.spec.outlier = { failures: 3, ejectionMs: 400, maxShare: 0.5 };
  proxy.table = buildRouteTable(
    {
      services: [service],
      instances: [
        testInstance("a-good", WEB, "local", good.port),
        testInstance("b-bad", WEB, "local", bad.port),
      ],
      nodes,
    },
    1,
  );
  // The ejection's 400 ms on a clock the test moves (Date only; sockets and timers run for real):
  // however slow the machine, the 20 requests all fall within it.
  t.mock.timers.enable({ apis: ["Date"], now: Date.now() });
  for (let i = 0; i < 20; i++) await request(port, "shop.test", "/");
  assert.equal(bad.hits, 3, "ejected after its third failure in a row");
  assert.equal(good.hits, 17);
  badFails = false;
  t.mock.timers.tick(399);
  for (let i = 0; i < 2; i++) await request(port, "shop.test", "/");
  assert.equal(bad.hits, 3, "still ejected just before the ejection time");
  t.mock.timers.tick(51);
  for (let i = 0; i < 4; i++) await request(port, "shop.test", "/");
  assert.equal(bad.hits, 5, "readmitted: back in the rotation");
});

test("retries on connection failures stay within the budget (20% + a small floor)", async (t) => {
  const alive = await startUpstream((_req, res) => res.end("ok"));
  const dead = await closedPort();
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await alive.close();
  });
  const port = await proxy.listen(0, "127.0.0.1");
  // Ejection off (PATCH …/traffic {outlier: false}): every request meets the dead instance's turn.
  const service: Service = {
    ...testService("default", "shop", "web", [{ host: "shop.test" }]),
    traffic: { outlier: null },
  };
  proxy.table = buildRouteTable(
    {
      services: [service],
      instances: [
        testInstance("a-dead", WEB, "local", dead),
        testInstance("b-alive", WEB, "local", alive.port),
      ],
      nodes,
    },
    1,
  );
  const statuses: number[] = [];
  for (let i = 0; i < 200; i++) statuses.push((await request(port, "shop.test", "/")).status);
  const ok = statuses.filter((s) => s === 200).length;
  const failed = statuses.filter((s) => s === 502).length;
  // Half the requests go to the dead instance first; each 200 among those was a retry.
  const retried = ok - 100;
  assert.ok(retried > 0, "some requests were retried on the live instance");
  assert.ok(retried <= 0.2 * 200 + 10, `retries ${retried} within 20% of 200 plus the floor of 10`);
  assert.equal(ok + failed, 200);
});

test("without an outlier policy an instance that refuses connections is ejected after 3 in a row, with no control plane", async (t) => {
  const alive = await startUpstream((_req, res) => res.end("ok"));
  const dead = await closedPort();
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await alive.close();
  });
  const port = await proxy.listen(0, "127.0.0.1");
  proxy.table = buildRouteTable(
    {
      services: [testService("default", "shop", "web", [{ host: "shop.test" }])],
      instances: [
        testInstance("a-dead", WEB, "local", dead),
        testInstance("b-alive", WEB, "local", alive.port),
      ],
      nodes,
    },
    1,
  );
  // POSTs with a streamed body are never retried: each one sent to the dead instance fails, until it is ejected.
  const statuses: number[] = [];
  for (let i = 0; i < 40; i++)
    statuses.push((await request(port, "shop.test", "/", { method: "POST", body: "x" })).status);
  assert.equal(statuses.filter((s) => s === 502).length, 3, "three refusals, then out of the rotation");
  assert.deepEqual(
    statuses.slice(-30),
    new Array(30).fill(200),
    "every later request goes to the live instance",
  );
  const backend = proxy.table.backends.get("default/shop/web");
  assert.equal(backend?.policies.outlier?.isEjected("a-dead", Date.now()), true);
});

test("a 5xx does not eject an instance of a service without an outlier policy", async (t) => {
  const good = await startUpstream((_req, res) => res.end("good"));
  const bad = await startUpstream((_req, res) => {
    res.statusCode = 500;
    res.end("bad");
  });
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await Promise.all([good.close(), bad.close()]);
  });
  const port = await proxy.listen(0, "127.0.0.1");
  proxy.table = buildRouteTable(
    {
      services: [testService("default", "shop", "web", [{ host: "shop.test" }])],
      instances: [
        testInstance("a-good", WEB, "local", good.port),
        testInstance("b-bad", WEB, "local", bad.port),
      ],
      nodes,
    },
    1,
  );
  for (let i = 0; i < 20; i++) await request(port, "shop.test", "/");
  assert.equal(bad.hits, 10, "still in the rotation: answering badly is the app's business without a policy");
});
