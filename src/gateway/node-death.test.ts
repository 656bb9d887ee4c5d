// A node that dies with several instances on it: the first refused
// connection makes the whole node suspect, so the retry of that request and
// every later request, of every service, goes to instances on other nodes.
// No idempotent request fails; a POST with a body (never retried) fails only
// if it was the one that found the node dead.

import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { SUSPECT_MS } from "./node-health.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import {
  closedPort,
  request,
  startUpstream,
  type TestUpstream,
  testInstance,
  testNode,
  testService,
} from "./testing.ts";

const WEB = { app: "shop", service: "web" };
const API = { app: "shop", service: "api" };

/** An instance that answers with its name. */
const named = (name: string): Promise<TestUpstream> =>
  startUpstream((req, res) => {
    req.resume();
    req.on("end", () => res.end(`${name} ${req.method}`));
  });

/**
 * Two services, each with instances on a live node (127.0.0.1) and on a dead
 * one (127.0.0.2, nothing listens). Instance ids sort so that round robin
 * meets the dead node's instances first and back to back.
 */
async function setup(t: { after: (fn: () => Promise<void>) => void }) {
  const live = await Promise.all([named("web-live-1"), named("web-live-2"), named("api-live")]);
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await Promise.all(live.map((u) => u.close()));
  });
  const port = await proxy.listen(0, "127.0.0.1");
  const dead = () => closedPort();
  proxy.table = buildRouteTable(
    {
      services: [
        testService("default", "shop", "web", [{ host: "web.test" }]),
        testService("default", "shop", "api", [{ host: "api.test" }]),
      ],
      instances: [
        testInstance("a-web-dead-1", WEB, "gone", await dead()),
        testInstance("b-web-dead-2", WEB, "gone", await dead()),
        testInstance("c-web-live-1", WEB, "here", live[0].port),
        testInstance("d-web-dead-3", WEB, "gone", await dead()),
        testInstance("e-web-live-2", WEB, "here", live[1].port),
        testInstance("a-api-dead", API, "gone", await dead()),
        testInstance("b-api-live", API, "here", live[2].port),
      ],
      nodes: [testNode("here", "127.0.0.1"), testNode("gone", "127.0.0.2")],
    },
    1,
  );
  return { port, proxy };
}

test("a dead node with three instances: its first refusal sends the retry and every later request elsewhere", async (t) => {
  const { port } = await setup(t);
  // The first GET meets a-web-dead-1; its retry must not go to b-web-dead-2 (another port, same dead node).
  const first = await request(port, "web.test", "/");
  assert.equal(first.status, 200, first.body);
  assert.match(first.body, /^web-live-\d GET$/);
  // Idempotent methods, with and without bodies: none fails, none reaches the dead node.
  for (const method of ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "GET", "PUT", "GET"]) {
    const body = method === "PUT" ? "v=1" : undefined;
    const r = await request(port, "web.test", "/x", { method, body });
    assert.equal(r.status, 200, `${method}: ${r.body}`);
  }
  // A POST with a body is never sent twice, so it must not be sent to the suspect node at all.
  for (let i = 0; i < 6; i++) {
    const r = await request(port, "web.test", "/orders", { method: "POST", body: "order=1" });
    assert.equal(r.status, 200, `POST ${i}: ${r.body}`);
  }
});

test("the node's instances of other services go last too, before any of them failed", async (t) => {
  const { port, proxy } = await setup(t);
  assert.equal((await request(port, "web.test", "/")).status, 200);
  assert.ok(proxy.table.nodes.of("gone").isSuspect(Date.now()), "the dead node is suspect");
  assert.equal(proxy.table.nodes.of("here").isSuspect(Date.now()), false);
  // api's round robin starts at its instance on the dead node: a POST with a body is not retried, so
  // only the node's suspicion, learnt from web, keeps it from failing.
  for (let i = 0; i < 4; i++) {
    const r = await request(port, "api.test", "/orders", { method: "POST", body: "order=1" });
    assert.equal(r.status, 200, `POST ${i}: ${r.body}`);
    assert.equal(r.body, "api-live POST");
  }
});

test("suspicion carries over to the next table and ends after SUSPECT_MS or when the node answers", async (t) => {
  const { port, proxy } = await setup(t);
  assert.equal((await request(port, "web.test", "/")).status, 200);
  const before = proxy.table;
  const node = before.nodes.of("gone");
  const until = node.suspectUntil;
  assert.ok(until > Date.now() && until <= Date.now() + SUSPECT_MS);
  // A rebuild (an instance changed somewhere) keeps what was learnt.
  proxy.table = buildRouteTable(
    {
      services: [testService("default", "shop", "web", [{ host: "web.test" }])],
      instances: [testInstance("a-web-dead-1", WEB, "gone", 1)],
      nodes: [testNode("gone", "127.0.0.2")],
    },
    2,
    { previous: before },
  );
  assert.equal(proxy.table.nodes.of("gone"), node);
  assert.equal(proxy.table.backends.get("default/shop/web")?.endpoints[0].node, node);
  assert.equal(node.isSuspect(until), false, "over once its time is up");
  node.answered();
  assert.equal(node.isSuspect(Date.now()), false, "over when one of its instances answers");
});
