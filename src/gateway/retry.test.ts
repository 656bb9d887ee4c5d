// Which requests the gateway sends again after a connection failure:
// idempotent methods and requests with an Idempotency-Key after any
// connection failure, others only when the connection was refused (a body
// only when small enough to hold), against real instances that refuse or
// drop connections.

import assert from "node:assert/strict";
import { connect } from "node:net";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { MAX_RETRY_BODY_BYTES } from "./exchange.ts";
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

/** An instance that echoes the method and the body it got. */
async function echo(): Promise<TestUpstream> {
  return startUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      res.end(`${req.method} ${body.length} ${req.headers["idempotency-key"] ?? "-"} ${body.subarray(0, 8)}`);
    });
  });
}

async function setup(
  t: { after: (fn: () => Promise<void>) => void },
  firstPort: number,
  alive: TestUpstream,
) {
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await alive.close();
  });
  const port = await proxy.listen(0, "127.0.0.1");
  proxy.table = buildRouteTable(
    {
      // Ejection off (PATCH …/traffic {outlier: false}): the refusing instance keeps its turns.
      services: [
        { ...testService("default", "shop", "web", [{ host: "shop.test" }]), traffic: { outlier: null } },
      ],
      // Round robin: every other request goes first to "a-first".
      instances: [
        testInstance("a-first", WEB, "local", firstPort),
        testInstance("b-alive", WEB, "local", alive.port),
      ],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  return port;
}

test("refused: a POST with an Idempotency-Key is sent again with its body; without the key it is not", async (t) => {
  const alive = await echo();
  const port = await setup(t, await closedPort(), alive);
  const body = "order=42&qty=1";
  // Round robin starts at the refusing instance; a retry moves the cursor on once more, so after a
  // retried request the next one starts there again, and after a failed one a filler GET takes the turn.
  const keyed = await request(port, "shop.test", "/orders", {
    method: "POST",
    headers: { "idempotency-key": "k-1", "content-type": "application/x-www-form-urlencoded" },
    body,
  });
  assert.equal(keyed.status, 200);
  assert.equal(keyed.body, `POST ${body.length} k-1 ${body.slice(0, 8)}`, "the same body, resent whole");

  const plain = await request(port, "shop.test", "/orders", { method: "POST", body });
  assert.equal(plain.status, 502);
  assert.equal(JSON.parse(plain.body).code, "bad_gateway");
  assert.equal((await request(port, "shop.test", "/")).status, 200);

  // A DELETE is idempotent: sent again without a key.
  const del = await request(port, "shop.test", "/orders/42", { method: "DELETE" });
  assert.equal(del.status, 200);
  assert.equal(del.body, "DELETE 0 - ");

  // A POST without a body or a key: the refused connection never carried it, so it is sent again too.
  const bare = await request(port, "shop.test", "/orders/42/cancel", { method: "POST" });
  assert.equal(bare.status, 200);
  assert.equal(bare.body, "POST 0 - ");

  // Over the held size the body streams, so it cannot be resent.
  const big = await request(port, "shop.test", "/orders", {
    method: "POST",
    headers: { "idempotency-key": "k-3" },
    body: "x".repeat(MAX_RETRY_BODY_BYTES + 1),
  });
  assert.equal(big.status, 502);
  assert.equal(alive.hits, 4, "the keyed POST, the DELETE and the bare POST (retried) and the filler");
});

test("an instance that closes the connection without answering: a GET and a PUT are retried, a POST only with a key", async (t) => {
  const alive = await echo();
  const dropper = await startUpstream((req) => req.socket.destroy());
  t.after(() => dropper.close());
  const port = await setup(t, dropper.port, alive);
  const get = await request(port, "shop.test", "/");
  assert.equal(get.status, 200);
  assert.equal(get.body, "GET 0 - ");
  const put = await request(port, "shop.test", "/x", {
    method: "PUT",
    headers: { "idempotency-key": "k" },
    body: "v",
  });
  assert.equal(put.status, 200);
  assert.equal(put.body, "PUT 1 k v");
  const plainPut = await request(port, "shop.test", "/x", { method: "PUT", body: "v" });
  assert.equal(plainPut.status, 200, "PUT is idempotent");
  assert.equal(plainPut.body, "PUT 1 - v");
  // The instance may have acted on a POST whose connection it closed: not sent twice.
  const post = await request(port, "shop.test", "/x", { method: "POST" });
  assert.equal(post.status, 502);
  assert.equal(dropper.hits, 4);
});

test("a held body that stops arriving gets 408 after the idle timeout; the instance never sees it", async (t) => {
  const alive = await echo();
  const proxy = new GatewayProxy({ logger: silentLogger, upstreamTimeoutMs: 300 });
  t.after(async () => {
    await proxy.close();
    await alive.close();
  });
  const port = await proxy.listen(0, "127.0.0.1");
  proxy.table = buildRouteTable(
    {
      services: [testService("default", "shop", "web", [{ host: "shop.test" }])],
      instances: [testInstance("b-alive", WEB, "local", alive.port)],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  const started = Date.now();
  const reply = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => {
      // Ten bytes announced, three sent, then silence.
      socket.write(
        "POST /orders HTTP/1.1\r\nHost: shop.test\r\nIdempotency-Key: k\r\nContent-Length: 10\r\n\r\nabc",
      );
    });
    let data = "";
    socket.on("data", (d) => {
      data += d;
    });
    socket.on("close", () => resolve(data));
    socket.on("error", reject);
  });
  assert.match(reply, /^HTTP\/1\.1 408/);
  assert.match(reply, /"code":"timeout"/);
  assert.ok(Date.now() - started < 3000);
  assert.equal(alive.hits, 0);
});
