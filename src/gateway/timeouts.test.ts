// Per-route upstream timeouts through a real proxy: connect (against a port
// that never completes a connection) and the whole-request deadline (against
// instances that answer too slowly), plus their validation in herd.yaml.

import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";
import { HerdError } from "../common/errors.ts";
import { silentLogger } from "../common/log.ts";
import type { Route } from "../model/manifest.ts";
import { normalizeService, parseManifest } from "../model/manifest.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startBlackhole, startUpstream, testInstance, testNode, testService } from "./testing.ts";

const WEB = { app: "shop", service: "web" };
const nodes = [testNode("local", "127.0.0.1")];

function table(route: Partial<Route>, ports: Record<string, number>) {
  return buildRouteTable(
    {
      services: [testService("default", "shop", "web", [{ host: "shop.test", ...route }])],
      instances: Object.entries(ports).map(([id, port]) => testInstance(id, WEB, "local", port)),
      nodes,
    },
    1,
  );
}

test("connect timeout: a GET moves on to another instance; a POST gets 504 in time", async (t) => {
  const hole = await startBlackhole();
  const good = await startUpstream((_req, res) => res.end("good"));
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await Promise.all([hole.close(), good.close()]);
  });
  const port = await proxy.listen(0, "127.0.0.1");
  // Round robin starts with "a-hole" (instances are ordered by id).
  proxy.table = table({ timeouts: { connectMs: 200 } }, { "a-hole": hole.port, "b-good": good.port });
  let started = Date.now();
  const get = await request(port, "shop.test", "/");
  assert.equal(get.status, 200);
  assert.equal(get.body, "good", "retried on the instance that accepts");
  assert.ok(Date.now() - started < 3000, "after the 200 ms connect timeout, not the default 5 s");

  proxy.table = table({ timeouts: { connectMs: 200 } }, { "a-hole": hole.port });
  started = Date.now();
  const post = await request(port, "shop.test", "/", { method: "POST", body: "x" });
  assert.equal(post.status, 504);
  assert.equal(JSON.parse(post.body).code, "timeout");
  assert.match(JSON.parse(post.body).message, /did not accept a connection within 200 ms/);
  assert.ok(Date.now() - started < 3000);
});

test("request deadline: 504 (or the fallback) before the answer, a cut during it; the upstream connection is closed", async (t) => {
  let closedUpstreamSockets = 0;
  const slow = await startUpstream((req, res) => {
    req.socket.once("close", () => closedUpstreamSockets++);
    if (req.url === "/trickle") {
      // The head and a first chunk at once, then nothing: only the whole-request deadline ends it.
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("part one\n");
    }
    // Other paths never answer.
  });
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await slow.close();
  });
  const port = await proxy.listen(0, "127.0.0.1");
  proxy.table = table({ timeouts: { requestMs: 300 } }, { slow: slow.port });

  let started = Date.now();
  const silent = await request(port, "shop.test", "/");
  const elapsed = Date.now() - started;
  assert.equal(silent.status, 504);
  assert.equal(JSON.parse(silent.body).code, "timeout");
  assert.ok(elapsed >= 250 && elapsed < 3000, `answered after the 300 ms deadline (${elapsed} ms)`);

  started = Date.now();
  const cut = await new Promise<{ status: number; body: string; error: string }>((resolve) => {
    const req = http.get({ port, path: "/trickle", headers: { host: "shop.test" }, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, error: "" }));
      res.on("error", (err) => resolve({ status: res.statusCode ?? 0, body, error: err.message }));
    });
    req.on("error", (err) => resolve({ status: 0, body: "", error: err.message }));
  });
  assert.equal(cut.status, 200);
  assert.equal(cut.body, "part one\n");
  assert.notEqual(cut.error, "", "the client sees the answer cut, not a whole one");
  assert.ok(Date.now() - started < 3000);
  // Both upstream connections were closed by the gateway (an unfinished one cannot be reused).
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(closedUpstreamSockets, 2);

  proxy.table = table(
    { timeouts: { requestMs: 300 }, fallback: { status: 200, body: "later", contentType: "text/plain" } },
    { slow: slow.port },
  );
  const degraded = await request(port, "shop.test", "/");
  assert.equal(degraded.status, 200);
  assert.equal(degraded.body, "later");
  assert.equal(degraded.headers["x-herd-fallback"], "timeout");
});

test("herd.yaml: timeouts are seconds or durations, normalised to ms; a bad one names its field", () => {
  const timeouts = (yaml: string) =>
    normalizeService(
      "a",
      "web",
      parseManifest(
        `services:\n  web:\n    command: node s.js\n    routes:\n      - host: a.localhost\n        ${yaml}\n`,
      ).services.web,
      undefined,
    ).routes[0].timeouts;
  assert.deepEqual(timeouts("timeouts: { connect: 2, request: 30, idle: 120 }"), {
    connectMs: 2000,
    requestMs: 30_000,
    idleMs: 120_000,
  });
  assert.deepEqual(timeouts('timeouts: { connect: 500ms, request: "30s", idle: 2m }'), {
    connectMs: 500,
    requestMs: 30_000,
    idleMs: 120_000,
  });
  for (const [yaml, field] of [
    ["timeouts: { connect: 0 }", "services.web.routes.0.timeouts.connect"],
    ["timeouts: { connect: 6m }", "services.web.routes.0.timeouts.connect"],
    ['timeouts: { request: "30 s" }', "services.web.routes.0.timeouts.request"],
    ["timeouts: { read: 5 }", "services.web.routes.0.timeouts"],
  ]) {
    assert.throws(
      () =>
        parseManifest(
          `services:\n  web:\n    command: node s.js\n    routes:\n      - host: a.localhost\n        ${yaml}\n`,
        ),
      (err: unknown) =>
        err instanceof HerdError && err.details?.some((d) => d.field.startsWith(field)) === true,
      yaml,
    );
  }
});
