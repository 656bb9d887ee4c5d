// CORS through a real proxy: preflights answered by the gateway, headers on
// responses to allowed origins only.

import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startUpstream, testInstance, testNode, testService } from "./testing.ts";

test("preflight from an allowed origin is answered by the gateway; other origins get no CORS headers", async (t) => {
  const up = await startUpstream((_req, res) => res.end("data"));
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await up.close();
  });
  const port = await proxy.listen(0, "127.0.0.1");
  const cors = {
    origins: ["https://app.example"],
    methods: ["GET", "POST"],
    headers: ["content-type", "x-user"],
    exposeHeaders: ["x-total"],
    credentials: true,
    maxAge: 300,
  };
  proxy.table = buildRouteTable(
    {
      services: [testService("default", "shop", "api", [{ host: "api.test", cors }])],
      instances: [testInstance("a", { app: "shop", service: "api" }, "local", up.port)],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  const preflight = await request(port, "api.test", "/items", {
    method: "OPTIONS",
    headers: { Origin: "https://app.example", "Access-Control-Request-Method": "POST" },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers["access-control-allow-origin"], "https://app.example");
  assert.equal(preflight.headers["access-control-allow-methods"], "GET, POST");
  assert.equal(preflight.headers["access-control-allow-headers"], "content-type, x-user");
  assert.equal(preflight.headers["access-control-allow-credentials"], "true");
  assert.equal(preflight.headers["access-control-max-age"], "300");
  assert.equal(up.hits, 0, "preflights never reach the app");

  const denied = await request(port, "api.test", "/items", {
    method: "OPTIONS",
    headers: { Origin: "https://evil.example", "Access-Control-Request-Method": "POST" },
  });
  assert.equal(denied.status, 403);

  const ok = await request(port, "api.test", "/items", { headers: { Origin: "https://app.example" } });
  assert.equal(ok.body, "data");
  assert.equal(ok.headers["access-control-allow-origin"], "https://app.example");
  assert.equal(ok.headers["access-control-expose-headers"], "x-total");
  assert.equal(ok.headers.vary, "Origin");

  const other = await request(port, "api.test", "/items", { headers: { Origin: "https://evil.example" } });
  assert.equal(other.body, "data");
  assert.equal(other.headers["access-control-allow-origin"], undefined);
});
