// A gateway following a control plane picks up consumers through the watch: a
// key added later opens the route, a deleted consumer's key stops working, and
// the disk cache (which holds consumers' secrets) is private.

import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { CACHE_FILE } from "./config-source.ts";
import { type Gateway, startGateway } from "./gateway.ts";
import {
  request,
  startTestControlPlane,
  startUpstream,
  type TestControlPlane,
  type TestUpstream,
  testConsumer,
  testInstance,
  testNode,
  testService,
  waitFor,
} from "./testing.ts";

const TOKEN = "secret-token";
let dataDir: string;
let controlPlane: TestControlPlane;
let upstream: TestUpstream;
let gateway: Gateway;
let closed = false;

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "herd-auth-follow-"));
  controlPlane = await startTestControlPlane(TOKEN);
  upstream = await startUpstream((req, res) => res.end(String(req.headers["x-consumer-name"])));
  controlPlane.put("node", "local", testNode("local", "127.0.0.1"));
  controlPlane.put(
    "service",
    "default/shop/web",
    testService("default", "shop", "web", [
      { host: "shop.test", auth: { apiKey: { header: "x-api-key", hideCredentials: false } } },
    ]),
  );
  controlPlane.put(
    "instance",
    "i1",
    testInstance("i1", { app: "shop", service: "web" }, "local", upstream.port),
  );
  gateway = await startGateway({
    server: controlPlane.url,
    token: TOKEN,
    port: 0,
    host: "127.0.0.1",
    dataDir,
    logger: silentLogger,
  });
});

after(async () => {
  if (!closed) await gateway?.close();
  await controlPlane.close();
  await upstream.close();
  await rm(dataDir, { recursive: true, force: true });
});

test("consumers arrive and leave through the watch", async () => {
  const withKey = () => request(gateway.port, "shop.test", "/", { headers: { "x-api-key": "key-of-ann" } });
  assert.equal((await withKey()).status, 401);
  const revision = controlPlane.put("consumer", "default/ann", testConsumer("ann", ["key-of-ann"]));
  await waitFor(() => gateway.table().version >= revision, 3000, "the consumer to arrive");
  const ok = await withKey();
  assert.equal(ok.status, 200);
  assert.equal(ok.body, "ann");
  const gone = controlPlane.delete("consumer", "default/ann");
  await waitFor(() => gateway.table().version >= gone, 3000, "the deletion to arrive");
  assert.equal((await withKey()).status, 401);
  // Closing flushes the cache.
  await gateway.close();
  closed = true;
  assert.equal((await stat(join(dataDir, CACHE_FILE))).mode & 0o777, 0o600);
});
