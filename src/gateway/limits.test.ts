// Bad input at the gateway: oversized headers, oversized bodies, slow clients —
// each gets a clear error, and the next request on another route is unaffected.

import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { GatewayProxy } from "./proxy.ts";
import { request, shopTable, startUpstream, type TestUpstream } from "./testing.ts";

let proxy: GatewayProxy;
let port: number;
let upstream: TestUpstream;

before(async () => {
  upstream = await startUpstream((req, res) => {
    let size = 0;
    req.on("data", (d: Buffer) => {
      size += d.length;
    });
    req.on("end", () => res.end(`got ${size}`));
  });
  proxy = new GatewayProxy({ logger: silentLogger, maxBodyBytes: 1000, headersTimeoutMs: 400 });
  port = await proxy.listen(0, "127.0.0.1");
  proxy.table = shopTable(upstream.port);
});
after(async () => {
  await proxy.close();
  await upstream.close();
});

/** Writes raw bytes on a fresh connection and returns everything the gateway answered. */
function raw(text: string | string[], gapMs = 0): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", async () => {
      for (const part of Array.isArray(text) ? text : [text]) {
        if (socket.destroyed) break;
        socket.write(part);
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
    let data = "";
    socket.on("data", (d) => {
      data += d;
    });
    socket.on("close", () => resolve(data));
    socket.on("error", (err: NodeJS.ErrnoException) =>
      err.code === "ECONNRESET" ? resolve(data) : reject(err),
    );
  });
}

test("oversized request headers get 431", async () => {
  const reply = await raw(`GET / HTTP/1.1\r\nHost: shop.test\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`);
  assert.match(reply, /^HTTP\/1\.1 431/);
  assert.match(reply, /request headers over/);
});

test("a body over the limit gets 413, by Content-Length and when streamed", async () => {
  const declared = await request(port, "shop.test", "/", { method: "POST", body: "x".repeat(2000) });
  assert.equal(declared.status, 413);
  assert.equal(JSON.parse(declared.body).code, "too_large");
  const chunk = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n`;
  const streamed = await raw(
    [
      "POST / HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
      chunk("y".repeat(600)),
      chunk("y".repeat(600)),
      "0\r\n\r\n",
    ],
    50,
  );
  assert.match(streamed, /^HTTP\/1\.1 413/);
  const fine = await request(port, "shop.test", "/", { method: "POST", body: "x".repeat(500) });
  assert.equal(fine.body, "got 500");
});

test("a client too slow to send its headers is cut off with 408", async () => {
  const started = Date.now();
  const reply = await raw(
    ["GET / HTTP/1.1\r\n", "Host: shop.test\r\n", "X-Slow: 1\r\n", "X-Slow: 2\r\n", "X-Slow: 3\r\n"],
    300,
  );
  assert.match(reply, /^HTTP\/1\.1 408/);
  assert.ok(Date.now() - started < 2000, "within a few multiples of the timeout");
  assert.equal((await request(port, "shop.test", "/")).status, 200, "others are served");
});
