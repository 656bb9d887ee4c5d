import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isCode } from "../common/errors.ts";
import { silentLogger } from "../common/log.ts";
import { CACHE_FILE } from "./config-source.ts";
import { type Gateway, startGateway } from "./gateway.ts";
import {
  closedPort,
  request,
  startTestControlPlane,
  startUpstream,
  type TestControlPlane,
  type TestUpstream,
  testInstance,
  testNode,
  testService,
  waitFor,
} from "./testing.ts";

const TOKEN = "secret-token";
const WEB = { app: "shop", service: "web" };

describe("gateway following a control plane", () => {
  let dataDir: string;
  let controlPlane: TestControlPlane;
  const gateways: Gateway[] = [];
  let a: TestUpstream;
  let b: TestUpstream;

  async function gateway(server: string): Promise<Gateway> {
    const gw = await startGateway({
      server,
      token: TOKEN,
      port: 0,
      host: "127.0.0.1",
      dataDir,
      logger: silentLogger,
    });
    gateways.push(gw);
    return gw;
  }

  async function upstreamName(gw: Gateway): Promise<string> {
    const reply = await request(gw.port, "shop.test", "/");
    assert.equal(reply.status, 200, reply.body);
    return reply.body;
  }

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "herd-gateway-"));
    controlPlane = await startTestControlPlane(TOKEN);
    a = await startUpstream((_req, res) => res.end("a"));
    b = await startUpstream((_req, res) => res.end("b"));
    controlPlane.put("node", "local", testNode("local", "127.0.0.1"));
    controlPlane.put(
      "service",
      "default/shop/web",
      testService("default", "shop", "web", [{ host: "shop.test" }]),
    );
    controlPlane.put("instance", "ia", testInstance("ia", WEB, "local", a.port));
    controlPlane.put("instance", "ib", testInstance("ib", WEB, "local", b.port));
  });

  after(async () => {
    await Promise.all(gateways.map((gw) => gw.close()));
    await controlPlane.close();
    await Promise.all([a.close(), b.close()]);
    await rm(dataDir, { recursive: true, force: true });
  });

  test("serves the snapshot, then drops an instance the moment it leaves running", async () => {
    const gw = await gateway(controlPlane.url);
    assert.equal(gw.table().version, controlPlane.revision());
    assert.equal(gw.table().routeCount, 1);
    assert.deepEqual(new Set([await upstreamName(gw), await upstreamName(gw)]), new Set(["a", "b"]));

    const status = await request(gw.port, "127.0.0.1", "/_herd/status");
    assert.deepEqual(JSON.parse(status.body), { version: controlPlane.revision(), routes: 1, problems: [] });

    const hitsOfA = a.hits;
    const revision = controlPlane.put("instance", "ia", testInstance("ia", WEB, "local", a.port, "draining"));
    await waitFor(() => gw.table().version >= revision, 1000, "the watch event");
    for (let i = 0; i < 6; i++) assert.equal(await upstreamName(gw), "b");
    assert.equal(a.hits, hitsOfA);

    const back = controlPlane.put("instance", "ia", testInstance("ia", WEB, "local", a.port));
    await waitFor(() => gw.table().version >= back, 1000, "the watch event");
    assert.deepEqual(new Set([await upstreamName(gw), await upstreamName(gw)]), new Set(["a", "b"]));
  });

  test("a burst of events ends in the last state", async () => {
    const gw = gateways[0];
    let last = 0;
    for (let i = 0; i < 50; i++) {
      last = controlPlane.put(
        "instance",
        "ib",
        testInstance("ib", WEB, "local", b.port, i % 2 ? "running" : "ready"),
      );
    }
    await waitFor(() => gw.table().version >= last, 1000, "the last event");
    const endpoints = gw
      .table()
      .match("shop.test", "/")
      ?.endpoints.map((e) => e.instance);
    assert.deepEqual(endpoints, ["ia", "ib"]);
  });

  test("after a compacted history (410) it takes a new snapshot", async () => {
    const gw = gateways[0];
    const before = controlPlane.snapshots();
    controlPlane.dropWatches();
    controlPlane.put(
      "service",
      "default/blog/web",
      testService("default", "blog", "web", [{ host: "blog.test" }]),
    );
    const revision = controlPlane.put(
      "instance",
      "blog1",
      testInstance("blog1", { app: "blog", service: "web" }, "local", a.port),
    );
    controlPlane.compact();
    await waitFor(() => gw.table().version >= revision, 3000, "the re-snapshot");
    assert.ok(controlPlane.snapshots() > before);
    assert.equal((await request(gw.port, "blog.test", "/")).body, "a");
  });

  test("keeps serving when the control plane goes away, and a new gateway serves from the disk cache", async () => {
    const gw = gateways[0];
    const version = gw.table().version;
    await controlPlane.close();
    assert.equal((await request(gw.port, "shop.test", "/")).status, 200);
    assert.equal((await request(gw.port, "blog.test", "/")).body, "a");
    assert.equal(gw.table().version, version);

    const cache = await waitForCache(dataDir, version);
    assert.equal(cache.revision, version);

    const down = `http://127.0.0.1:${await closedPort()}`;
    const restarted = await gateway(down);
    assert.equal(restarted.table().version, version);
    assert.equal((await request(restarted.port, "blog.test", "/")).body, "a");
    assert.deepEqual(
      new Set([await upstreamName(restarted), await upstreamName(restarted)]),
      new Set(["a", "b"]),
    );
  });

  test("a port in use is a clear error", async () => {
    const blocker = http.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const { port } = blocker.address() as AddressInfo;
    try {
      await assert.rejects(
        startGateway({
          server: "http://127.0.0.1:1",
          token: TOKEN,
          port,
          host: "127.0.0.1",
          dataDir,
          logger: silentLogger,
        }),
        (err: Error) =>
          isCode(err, "unavailable") &&
          err.message === `port ${port} is in use by another program; pass --port`,
      );
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });
});

/** Reads the cache file once it holds `revision` (writes are throttled). */
async function waitForCache(dataDir: string, revision: number): Promise<{ revision: number }> {
  const deadline = Date.now() + 3000;
  for (;;) {
    try {
      const cache = JSON.parse(await readFile(join(dataDir, CACHE_FILE), "utf8"));
      if (cache.revision === revision) return cache;
    } catch {
      // Not there yet.
    }
    if (Date.now() > deadline) throw new Error(`the cache never reached revision ${revision}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
