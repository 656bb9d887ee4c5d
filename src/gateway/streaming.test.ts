// Streams through the gateway: Server-Sent Events pass through unbuffered, and
// WebSocket upgrades follow a route's traffic split (and its breaker), with a
// real handshake from Node's WebSocket client to small WebSocket echo servers.

import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Service } from "../model/objects.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { startUpstream, startWsEcho, testInstance, testNode, testService, wsRoundTrip } from "./testing.ts";

const nodes = [testNode("local", "127.0.0.1")];

test("SSE: each event reaches the client before the upstream sends the next", {
  timeout: 10_000,
}, async (t) => {
  // The upstream sends event n+1 only once the client has seen event n (told through `seen`):
  // if the gateway held events back, the stream would stall and the test time out.
  let seen: (n: number) => void = () => {};
  const events = await startUpstream((_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    let n = 0;
    const next = () => {
      n++;
      if (n > 5) {
        res.end();
        return;
      }
      res.write(`id: ${n}\ndata: event ${n}\n\n`);
    };
    seen = (got) => {
      if (got === n) next();
    };
    next();
  });
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await events.close();
  });
  const port = await proxy.listen(0, "127.0.0.1");
  proxy.table = buildRouteTable(
    {
      services: [
        testService("default", "shop", "events", [{ host: "shop.test", timeouts: { requestMs: 10_000 } }]),
      ],
      instances: [testInstance("e", { app: "shop", service: "events" }, "local", events.port)],
      nodes,
    },
    1,
  );
  const received = await new Promise<string[]>((resolve, reject) => {
    const req = http.get({
      port,
      path: "/stream",
      headers: { host: "shop.test", accept: "text/event-stream" },
      agent: false,
    });
    req.on("error", reject);
    req.on("response", (res) => {
      assert.equal(res.headers["content-type"], "text/event-stream");
      const got: string[] = [];
      let buffer = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buffer += chunk;
        let end = buffer.indexOf("\n\n");
        while (end !== -1) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          got.push(event);
          seen(Number(/^id: (\d+)/.exec(event)?.[1]));
          end = buffer.indexOf("\n\n");
        }
      });
      res.on("end", () => resolve(got));
    });
  });
  assert.deepEqual(
    received,
    [1, 2, 3, 4, 5].map((n) => `id: ${n}\ndata: event ${n}`),
  );
});

test("WebSocket upgrades follow the route's split, and a split target's open breaker refuses them", {
  timeout: 10_000,
}, async (t) => {
  const stable = await startWsEcho("web");
  const canary = await startWsEcho("canary");
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await Promise.all([stable.close(), canary.close()]);
  });
  const port = await proxy.listen(0, "127.0.0.1");
  // Node's WebSocket client sends Host 127.0.0.1:port, so the route is for that host.
  const web = testService("default", "shop", "web", [
    { host: "127.0.0.1", split: { to: [{ service: "canary", weight: 25 }] } },
  ]);
  const canaryService: Service = testService("default", "shop", "canary", []);
  canaryService.spec.breaker = { failures: 1, openMs: 60_000 };
  const build = (canaryPort: number) =>
    buildRouteTable(
      {
        services: [web, canaryService],
        instances: [
          testInstance("w", { app: "shop", service: "web" }, "local", stable.port),
          testInstance("c", { app: "shop", service: "canary" }, "local", canaryPort),
        ],
        nodes,
      },
      1,
    );
  proxy.table = build(canary.port);
  const url = `ws://127.0.0.1:${port}/live`;
  const answers: string[] = [];
  for (let i = 0; i < 8; i++) answers.push(await wsRoundTrip(url));
  // An exact 25/75 rotation: two of eight to the canary.
  assert.equal(answers.filter((a) => a === "canary:hi").length, 2, answers.join(" "));
  assert.equal(answers.filter((a) => a === "web:hi").length, 6, answers.join(" "));

  // The canary starts refusing upgrades: its breaker (1 failure) opens, and upgrades routed to it
  // fail fast at the gateway instead of reaching it.
  const broken = await startWsEcho("broken", true);
  t.after(() => broken.close());
  proxy.table = build(broken.port);
  const after: string[] = [];
  for (let i = 0; i < 8; i++) after.push(await wsRoundTrip(url));
  assert.equal(after.filter((a) => a === "web:hi").length, 6, after.join(" "));
  assert.equal(after.filter((a) => a === "error").length, 2);
  assert.equal(broken.upgrades, 1, "the second canary upgrade never reached it");
});

test("a client that stops reading pauses the upstream instead of filling the gateway's memory", {
  timeout: 20_000,
}, async (t) => {
  const TOTAL = 64 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 120);
  let written = 0;
  const big = await startUpstream((_req, res) => {
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": TOTAL });
    const pump = () => {
      while (written < TOTAL) {
        written += chunk.length;
        if (!res.write(chunk)) {
          res.once("drain", pump);
          return;
        }
      }
      res.end();
    };
    pump();
  });
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await big.close();
  });
  const port = await proxy.listen(0, "127.0.0.1");
  proxy.table = buildRouteTable(
    {
      services: [testService("default", "shop", "web", [{ host: "shop.test" }])],
      instances: [testInstance("w", { app: "shop", service: "web" }, "local", big.port)],
      nodes,
    },
    1,
  );
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.get({ port, path: "/big", headers: { host: "shop.test" }, agent: false }, resolve);
    req.on("error", reject);
  });
  res.pause();
  // Let the pipeline fill: socket buffers on both hops take a few MiB, then the upstream must wait.
  let before = -1;
  while (written !== before) {
    before = written;
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  assert.ok(written < TOTAL / 2, `the upstream was held back after ${written} bytes`);
  let received = 0;
  res.on("data", (c: Buffer) => {
    received += c.length;
  });
  res.resume();
  await new Promise((resolve) => res.on("end", resolve));
  assert.equal(received, TOTAL);
});
