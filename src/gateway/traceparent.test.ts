import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startUpstream, testInstance, testNode, testService } from "./testing.ts";
import { nextTraceparent } from "./traceparent.ts";

test("a valid traceparent keeps its trace and flags and gets a new parent id", () => {
  const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
  const out = nextTraceparent(incoming);
  assert.match(out, /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-00$/);
  assert.notEqual(out.split("-")[2], "00f067aa0ba902b7");
});

test("a missing or malformed traceparent starts a new sampled trace", () => {
  for (const bad of [
    undefined,
    "garbage",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "01-abc",
  ]) {
    assert.match(nextTraceparent(bad), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  }
  const ids = new Set(Array.from({ length: 1000 }, () => nextTraceparent(undefined).split("-")[1]));
  assert.equal(ids.size, 1000, "trace ids do not repeat");
});

test("the upstream receives one traceparent in the incoming trace, and tracestate untouched", async (t) => {
  const up = await startUpstream((req, res) =>
    res.end(JSON.stringify({ tp: req.headers.traceparent, ts: req.headers.tracestate })),
  );
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await up.close();
  });
  const port = await proxy.listen(0, "127.0.0.1");
  proxy.table = buildRouteTable(
    {
      services: [testService("default", "shop", "web", [{ host: "shop.test" }])],
      instances: [testInstance("w", { app: "shop", service: "web" }, "local", up.port)],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  const seen = JSON.parse(
    (
      await request(port, "shop.test", "/", {
        headers: {
          traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
          tracestate: "vendor=x",
        },
      })
    ).body,
  );
  assert.match(seen.tp, /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
  assert.equal(seen.ts, "vendor=x");
  const fresh = JSON.parse((await request(port, "shop.test", "/")).body);
  assert.match(fresh.tp, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
});
