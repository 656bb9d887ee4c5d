// Client keep-alive: an idle connection is closed by the proxy's sweep (no
// timer per request) after keepAliveMs to twice that, as its responses
// announce; a connection in use, or waiting for a slow answer, is not.

import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { GatewayProxy } from "./proxy.ts";
import { shopTable, startUpstream, type TestUpstream } from "./testing.ts";

const KEEP_ALIVE_MS = 1000;
let proxy: GatewayProxy;
let port: number;
let upstream: TestUpstream;

before(async () => {
  upstream = await startUpstream((req, res) => {
    const delay = req.url === "/slow" ? 2.5 * KEEP_ALIVE_MS : 0;
    setTimeout(() => res.end("ok"), delay);
  });
  proxy = new GatewayProxy({ logger: silentLogger, keepAliveMs: KEEP_ALIVE_MS });
  port = await proxy.listen(0, "127.0.0.1");
  proxy.table = shopTable(upstream.port);
});
after(async () => {
  await proxy.close();
  await upstream.close();
});

/** A keep-alive connection: `ask` sends one request and resolves with its whole answer; `closed` resolves at close. */
async function client(): Promise<{
  ask(path: string): Promise<string>;
  closed: Promise<number>;
  socket: Socket;
}> {
  const socket = connect(port, "127.0.0.1");
  await new Promise((resolve) => socket.once("connect", resolve));
  let data = "";
  let waiting: ((answer: string) => void) | null = null;
  socket.on("data", (chunk) => {
    data += chunk.toString("latin1");
    // Every answer here ends with its 2-byte body "ok".
    if (waiting !== null && data.includes("\r\n\r\n") && data.endsWith("ok")) {
      const answer = data;
      data = "";
      waiting(answer);
      waiting = null;
    }
  });
  socket.on("error", () => {});
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now())));
  return {
    socket,
    closed,
    ask(path: string) {
      return new Promise((resolve) => {
        waiting = resolve;
        socket.write(`GET ${path} HTTP/1.1\r\nHost: shop.test\r\n\r\n`);
      });
    },
  };
}

test("an idle keep-alive connection is closed after keepAliveMs to twice that, as its answers announce", async () => {
  const c = await client();
  const answer = await c.ask("/");
  assert.match(answer, /^HTTP\/1\.1 200 /);
  assert.match(answer, /\r\nKeep-Alive: timeout=1\r\n/i);
  const idleFrom = Date.now();
  const idle = (await c.closed) - idleFrom;
  assert.ok(idle >= KEEP_ALIVE_MS - 50 && idle <= 2 * KEEP_ALIVE_MS + 1500, `closed after ${idle} ms idle`);
});

test("a connection in use, or waiting for a slow answer, stays open", async () => {
  const busy = await client();
  let open = true;
  void busy.closed.then(() => {
    open = false;
  });
  // Requests every 300 ms for 2.5 × keepAliveMs: every sweep sees bytes moved.
  const until = Date.now() + 2.5 * KEEP_ALIVE_MS;
  while (Date.now() < until) {
    assert.match(await busy.ask("/"), /^HTTP\/1\.1 200 /);
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  assert.ok(open, "a connection in use was closed");
  // One request open for 2.5 × keepAliveMs without a byte moving: its answer still comes on it.
  assert.match(await busy.ask("/slow"), /^HTTP\/1\.1 200 /);
  assert.ok(open, "a connection waiting for its answer was closed");
  busy.socket.destroy();
});
