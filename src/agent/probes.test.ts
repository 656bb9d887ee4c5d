import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createServer as createTcpServer } from "node:net";
import { test } from "node:test";
import { freePort } from "./driver.case.test.ts";
import { BODY_START, probe } from "./probes.ts";

test("HTTP probes pass on 2xx and 3xx, fail on 5xx, silence and refusal", async (t) => {
  const traceparents: (string | undefined)[] = [];
  const server = createServer((req, res) => {
    traceparents.push(String(req.headers.traceparent));
    if (req.url === "/ok") res.writeHead(204).end();
    else if (req.url === "/moved") res.writeHead(302, { location: "/ok" }).end();
    else if (req.url === "/hang") return;
    else if (req.url === "/long") res.writeHead(500).end("x".repeat(100_000));
    else res.writeHead(503).end("database\n  not ready\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  assert.deepEqual(await probe({ port, path: "/ok", timeoutMs: 1000 }), { ok: true, status: 204 });
  assert.deepEqual(await probe({ port, path: "/moved", timeoutMs: 1000 }), { ok: true, status: 302 });
  // Unsampled (flags 00): an instrumented app makes no trace of a probe.
  assert.match(traceparents[0] ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  assert.notEqual(traceparents[0], traceparents[1], "a new trace id per probe");
  const broken = await probe({ port, path: "/broken", timeoutMs: 1000 });
  assert.deepEqual(broken, {
    ok: false,
    status: 503,
    message: "GET /broken answered 503",
    body: "database not ready",
  });
  const long = await probe({ port, path: "/long", timeoutMs: 1000 });
  assert.equal(long.body, "x".repeat(BODY_START), "only the start of a long body");
  const hung = await probe({ port, path: "/hang", timeoutMs: 200 });
  assert.equal(hung.ok, false);
  assert.match(hung.message ?? "", /200 ms/);
  const closed = await probe({ port: await freePort(), path: "/ok", timeoutMs: 1000 });
  assert.equal(closed.ok, false);
});

test("TCP probes pass when something accepts the connection", async (t) => {
  const server = createTcpServer((socket) => socket.end());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => server.close());
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  assert.deepEqual(await probe({ port, timeoutMs: 1000 }), { ok: true });
  assert.equal((await probe({ port: await freePort(), timeoutMs: 1000 })).ok, false);
});
