// WebSocket upgrades run the same chain of stages as HTTP requests (stages.ts,
// chain.ts): CORS, auth and the rate limit apply to them, checked with real
// Upgrade requests through a real proxy to an upstream that accepts upgrades.
// Also: the status page answers only connections from this machine's loopback.

import assert from "node:assert/strict";
import http from "node:http";
import type { Socket } from "node:net";
import { networkInterfaces } from "node:os";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Route } from "../model/manifest.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { compileStages, STAGE_NAMES } from "./stages.ts";
import {
  request,
  startUpstream,
  type TestUpstream,
  testConsumer,
  testInstance,
  testNode,
  testService,
} from "./testing.ts";

let proxy: GatewayProxy;
let port: number;
let upstream: TestUpstream;
/** The headers of each upgrade the upstream accepted. */
const accepted: http.IncomingHttpHeaders[] = [];

before(async () => {
  upstream = await startUpstream((_req, res) => res.end("plain"));
  upstream.server.on("upgrade", (req: http.IncomingMessage, socket: Socket) => {
    accepted.push(req.headers);
    socket.on("error", () => {});
    socket.end("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  });
  proxy = new GatewayProxy({ logger: silentLogger });
  // On every interface, so the status page can be asked from a non-loopback address too.
  port = await proxy.listen(0, "0.0.0.0");
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

function serve(routes: Array<Partial<Route> & { host: string }>): void {
  proxy.table = buildRouteTable(
    {
      services: [testService("default", "shop", "ws", routes)],
      instances: [testInstance("w", { app: "shop", service: "ws" }, "local", upstream.port)],
      nodes: [testNode("local", "127.0.0.1")],
      consumers: [testConsumer("alice", ["alice-key"])],
    },
    1,
  );
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** An Upgrade request through the proxy: 101 (upgraded) or the answer that refused it. */
function upgrade(host: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: "127.0.0.1",
      port,
      path: "/socket",
      headers: { host, connection: "Upgrade", upgrade: "websocket", ...headers },
      agent: false,
    });
    req.on("upgrade", (res: http.IncomingMessage, socket: Socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: "" });
    });
    req.on("response", (res: http.IncomingMessage) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

const codeOf = (a: Answer) => (JSON.parse(a.body) as { code: string }).code;

test("each route's chain is compiled with the table: only the stages it needs, in order", () => {
  const names = (route: Parameters<typeof compileStages>[0]) =>
    [...compileStages(route)].map((s) => STAGE_NAMES[s]);
  const none = { cors: null, auth: null, limit: null, aggregate: null };
  assert.deepEqual(names(none), ["size", "breaker", "shed", "endpoint"]);
  assert.deepEqual(names({ cors: {}, auth: {}, limit: {}, aggregate: null }), [
    "cors",
    "auth",
    "limit",
    "size",
    "breaker",
    "shed",
    "endpoint",
  ]);
  assert.deepEqual(names({ ...none, auth: {}, aggregate: {} }), ["auth", "size", "aggregate"]);
});

test("an upgrade is rate limited like an HTTP request, from the same bucket", async () => {
  serve([{ host: "ws.test", rateLimit: { rate: 0.001, burst: 3, per: "ip" } }]);
  const before = accepted.length;
  assert.equal((await request(port, "ws.test", "/")).status, 200);
  assert.equal((await upgrade("ws.test")).status, 101);
  assert.equal((await upgrade("ws.test")).status, 101);
  const limited = await upgrade("ws.test");
  assert.equal(limited.status, 429);
  assert.equal(codeOf(limited), "rate_limited");
  assert.ok(Number(limited.headers["retry-after"]) >= 1);
  assert.match(String(limited.headers.ratelimit), /limit=3, remaining=0/);
  assert.equal(accepted.length - before, 2, "the limited upgrade never reached the upstream");
  // The HTTP side sees the same empty bucket.
  assert.equal((await request(port, "ws.test", "/")).status, 429);
});

test("an upgrade from an origin the route's CORS does not allow is refused", async () => {
  serve([
    {
      host: "ws.test",
      cors: {
        origins: ["https://app.test"],
        methods: ["GET"],
        headers: [],
        exposeHeaders: [],
        credentials: true,
        maxAge: 60,
      },
    },
  ]);
  const before = accepted.length;
  const foreign = await upgrade("ws.test", { origin: "https://evil.test" });
  assert.equal(foreign.status, 403);
  assert.equal(codeOf(foreign), "forbidden");
  assert.match(JSON.parse(foreign.body).message, /origin https:\/\/evil\.test is not allowed/);
  assert.equal(accepted.length, before);
  assert.equal((await upgrade("ws.test", { origin: "https://app.test" })).status, 101);
  // Without Origin (not a browser), CORS has nothing to say.
  assert.equal((await upgrade("ws.test")).status, 101);
  assert.equal(accepted.length - before, 2);
});

test("an upgrade needs the route's credentials; the consumer goes upstream, a forged one does not", async () => {
  serve([{ host: "ws.test", auth: { apiKey: { header: "x-api-key", hideCredentials: true } } }]);
  const before = accepted.length;
  const anonymous = await upgrade("ws.test", { "x-consumer-name": "admin" });
  assert.equal(anonymous.status, 401);
  assert.equal(codeOf(anonymous), "unauthorized");
  assert.match(String(anonymous.headers["www-authenticate"]), /ApiKey/);
  assert.equal((await upgrade("ws.test", { "x-api-key": "wrong" })).status, 401);
  assert.equal(accepted.length, before);
  const ok = await upgrade("ws.test", { "x-api-key": "alice-key", "x-consumer-name": "admin" });
  assert.equal(ok.status, 101);
  const seen = accepted[accepted.length - 1];
  assert.equal(seen["x-consumer-name"], "alice");
  assert.equal(seen["x-api-key"], undefined, "hideCredentials strips the key");
});

test("an upgrade with two Host headers is refused", async () => {
  serve([{ host: "ws.test" }]);
  const answer = await new Promise<number>((resolve, reject) => {
    const req = http.request({
      host: "127.0.0.1",
      port,
      path: "/",
      headers: [
        ["Host", "ws.test"],
        ["Host", "other.test"],
        ["Connection", "Upgrade"],
        ["Upgrade", "websocket"],
      ].flat(),
      agent: false,
    } as unknown as http.RequestOptions);
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("upgrade", (res, socket: Socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
  assert.equal(answer, 400);
});

/** This machine's first non-loopback IPv4 address, if it has one. */
function externalAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

test("the status page answers loopback connections only, whatever the Host header says", async (t) => {
  serve([{ host: "ws.test" }]);
  const local = await request(port, "localhost", "/_herd/status");
  assert.equal(local.status, 200);
  assert.equal(JSON.parse(local.body).version, 1);
  const address = externalAddress();
  if (address === undefined) {
    t.skip("no non-loopback IPv4 address on this machine");
    return;
  }
  const remote = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.get(
      { host: address, port, path: "/_herd/status", headers: { host: "localhost" }, agent: false },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
  });
  assert.equal(remote.status, 404, `from ${address}: ${remote.body}`);
  assert.doesNotMatch(remote.body, /problems/);
});
