import assert from "node:assert/strict";
import http from "node:http";
import type { Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import {
  acceptWebSocket,
  closedPort,
  request,
  startUpstream,
  type TestUpstream,
  testInstance,
  testNode,
  testService,
  webSocketAccept,
} from "./testing.ts";

const WEB = { app: "shop", service: "web" };
const API = { app: "shop", service: "api" };
const nodes = [testNode("local", "127.0.0.1")];

describe("proxy", () => {
  let proxy: GatewayProxy;
  let port: number;
  const upstreams: TestUpstream[] = [];

  /** An upstream that answers `name` and echoes what it saw, as JSON. */
  async function upstream(name: string): Promise<TestUpstream> {
    const u = await startUpstream((req, res) => {
      res.writeHead(200, { "content-type": "application/json", "x-upstream": name });
      res.end(JSON.stringify({ name, url: req.url, headers: req.headers }));
    });
    upstreams.push(u);
    return u;
  }

  /** Routes shop.test to `web` and shop.test/api to `api` with the given ports. */
  function route(webPorts: number[], apiPorts: number[] = []): void {
    proxy.table = buildRouteTable(
      {
        services: [
          testService("default", "shop", "web", [{ host: "shop.test" }]),
          testService("default", "shop", "api", [{ host: "shop.test", path: "/api" }]),
        ],
        instances: [
          ...webPorts.map((p, i) => testInstance(`web${i}`, WEB, "local", p)),
          ...apiPorts.map((p, i) => testInstance(`api${i}`, API, "local", p)),
        ],
        nodes,
      },
      1,
    );
  }

  before(async () => {
    proxy = new GatewayProxy({ logger: silentLogger, upstreamTimeoutMs: 300 });
    port = await proxy.listen(0, "127.0.0.1");
  });

  after(async () => {
    await proxy.close();
    await Promise.all(upstreams.map((u) => u.close()));
  });

  test("routes by host and path", async () => {
    const [web, api] = [await upstream("web"), await upstream("api")];
    route([web.port], [api.port]);
    const home = await request(port, "shop.test", "/");
    assert.equal(home.status, 200);
    assert.equal(home.headers["x-upstream"], "web");
    const call = await request(port, "SHOP.test:8080", "/api/orders?x=1");
    assert.equal(call.headers["x-upstream"], "api");
    assert.equal(JSON.parse(call.body).url, "/api/orders?x=1");
    assert.equal((await request(port, "shop.test", "/apix")).headers["x-upstream"], "web");
  });

  test("round-robins across two endpoints", async () => {
    const [a, b] = [await upstream("a"), await upstream("b")];
    route([a.port, b.port]);
    const seen: string[] = [];
    for (let i = 0; i < 4; i++)
      seen.push(String((await request(port, "shop.test", "/")).headers["x-upstream"]));
    assert.deepEqual(seen, ["a", "b", "a", "b"]);
  });

  test("a refused connection is retried once on the other endpoint", async () => {
    const live = await upstream("live");
    const dead = await closedPort();
    route([dead, live.port]);
    for (let i = 0; i < 4; i++) {
      const reply = await request(port, "shop.test", "/");
      assert.equal(reply.status, 200);
      assert.equal(reply.headers["x-upstream"], "live");
    }
    assert.equal(live.hits, 4);
  });

  test("a request with a body is not retried: 502 JSON", async () => {
    const dead = await closedPort();
    route([dead]);
    const reply = await request(port, "shop.test", "/", { method: "POST", body: "x" });
    assert.equal(reply.status, 502);
    assert.equal(JSON.parse(reply.body).code, "bad_gateway");
  });

  test("404 for an unknown host and 503 for a service with no running instance", async () => {
    route([]);
    const missing = await request(port, "nothing.test:8080", "/");
    assert.equal(missing.status, 404);
    assert.match(String(missing.headers["content-type"]), /^application\/json/);
    assert.deepEqual(JSON.parse(missing.body), {
      code: "not_found",
      message: "no app serves host nothing.test",
    });
    const down = await request(port, "shop.test", "/");
    assert.equal(down.status, 503);
    assert.equal(down.headers["retry-after"], "1");
    assert.deepEqual(JSON.parse(down.body), {
      code: "unavailable",
      message: "no running instance of shop/web",
    });
  });

  test("sets X-Forwarded-* and drops hop-by-hop headers", async () => {
    const web = await upstream("web");
    route([web.port]);
    const reply = await request(port, "shop.test", "/", {
      headers: {
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-proto": "https",
        connection: "keep-alive, x-secret",
        "x-secret": "hop",
        "x-kept": "yes",
      },
    });
    const seen = JSON.parse(reply.body).headers;
    assert.equal(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert.equal(seen["x-forwarded-proto"], "http");
    assert.equal(seen["x-forwarded-host"], "shop.test");
    assert.equal(seen.host, "shop.test");
    assert.equal(seen["x-kept"], "yes");
    assert.equal(seen["x-secret"], undefined);
  });

  test("streams a POST body to the upstream and the reply back", async () => {
    // The upstream answers as soon as the first chunk arrives: only possible if the gateway streams.
    const echo = await startUpstream((req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      let bytes = 0;
      req.once("data", () => res.write("first\n"));
      req.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
      });
      req.on("end", () => res.end(`total ${bytes}\n`));
    });
    upstreams.push(echo);
    route([echo.port]);
    const body = await new Promise<string>((resolve, reject) => {
      const req = http.request({
        port,
        method: "POST",
        path: "/upload",
        headers: { host: "shop.test" },
        agent: false,
      });
      req.on("error", reject);
      req.on("response", (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
          // Send the rest only after the first part came back through the gateway.
          if (text === "first\n") req.end(Buffer.alloc(1 << 20, 1));
        });
        res.on("end", () => resolve(text));
      });
      req.write(Buffer.alloc(1000, 1));
    });
    assert.equal(body, `first\ntotal ${1000 + (1 << 20)}\n`);
  });

  test("passes a WebSocket upgrade through and pipes both ways", async () => {
    const ws = await startUpstream((_req, res) => res.writeHead(426).end());
    upstreams.push(ws);
    ws.server.on("upgrade", (req: http.IncomingMessage, socket: Socket) => {
      acceptWebSocket(req, socket);
      // Echo every byte: framing is the endpoints' business, the gateway only pipes.
      socket.pipe(socket);
    });
    route([ws.port]);
    const key = Buffer.from("0123456789abcdef").toString("base64");
    const { res, socket } = await new Promise<{ res: http.IncomingMessage; socket: Socket }>(
      (resolve, reject) => {
        const req = http.request({
          port,
          path: "/socket",
          agent: false,
          headers: {
            host: "shop.test",
            connection: "Upgrade",
            upgrade: "websocket",
            "sec-websocket-key": key,
            "sec-websocket-version": "13",
          },
        });
        req.on("upgrade", (res, socket) => resolve({ res, socket }));
        req.on("response", (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
        req.on("error", reject);
        req.end();
      },
    );
    try {
      assert.equal(res.statusCode, 101);
      assert.equal(res.headers["sec-websocket-accept"], webSocketAccept(key));
      // A masked text frame "hello" (FIN, opcode 1, mask bit, length 5).
      const mask = Buffer.from([1, 2, 3, 4]);
      const payload = Buffer.from("hello").map((b, i) => b ^ mask[i % 4]);
      const frame = Buffer.concat([Buffer.from([0x81, 0x85]), mask, payload]);
      const echoed = new Promise<Buffer>((resolve) => {
        let got = Buffer.alloc(0);
        socket.on("data", (chunk: Buffer) => {
          got = Buffer.concat([got, chunk]);
          if (got.length >= frame.length) resolve(got);
        });
      });
      socket.write(frame);
      assert.deepEqual(await echoed, frame);
    } finally {
      socket.destroy();
    }
  });

  test("an upstream that does not answer in time gets a 504", async () => {
    const silent = await startUpstream(() => {});
    upstreams.push(silent);
    route([silent.port]);
    const reply = await request(port, "shop.test", "/");
    assert.equal(reply.status, 504);
    assert.equal(JSON.parse(reply.body).code, "timeout");
  });

  test("answers its status on localhost only", async () => {
    route([]);
    const status = await request(port, "localhost:8080", "/_herd/status");
    assert.deepEqual(JSON.parse(status.body), { version: 1, routes: 2, problems: [] });
    assert.equal((await request(port, "shop.test", "/_herd/status")).status, 503);
  });
});
