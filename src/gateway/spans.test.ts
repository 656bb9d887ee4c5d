// The gateway's spans: one server span per request in the caller's trace,
// naming the upstream service and instance for proxied ones, its id the
// parent the upstream sees; written as the compact batch the control plane
// reads (observe/traces/gateway-batch.ts).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { parseGatewayBatch } from "../observe/traces/gateway-batch.ts";
import type { Span } from "../observe/traces/span.ts";
import { spanFromColumns } from "../observe/traces/span-store.ts";
import { Series } from "./metrics.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { GatewaySpans } from "./spans.ts";
import {
  request,
  startUpstream,
  type TestUpstream,
  testInstance,
  testNode,
  testService,
  waitFor,
} from "./testing.ts";

/** A batch as the control plane reads it. */
const read = (body: string): Span[] => parseGatewayBatch(JSON.parse(body)).map(spanFromColumns);

const recorded: Span[] = [];
const sink = {
  postBatch(body: string, count: number): boolean {
    const spans = read(body);
    assert.equal(spans.length, count);
    recorded.push(...spans);
    return true;
  },
};
let proxy: GatewayProxy;
let port: number;
let upstream: TestUpstream;
let seenTraceparent: string | undefined;

before(async () => {
  upstream = await startUpstream((req, res) => {
    seenTraceparent = req.headers.traceparent as string | undefined;
    res.writeHead(req.url === "/fail" ? 500 : 200);
    res.end("ok");
  });
  proxy = new GatewayProxy({ logger: silentLogger });
  proxy.spans = new GatewaySpans(sink);
  port = await proxy.listen(0, "127.0.0.1");
  proxy.table = buildRouteTable(
    {
      services: [testService("default", "shop", "web", [{ host: "shop.test" }])],
      instances: [testInstance("web0", { app: "shop", service: "web" }, "local", upstream.port)],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

/** The spans of the next request, once they are handed to the sink. */
async function spansOf(send: () => Promise<unknown>, count: number): Promise<Span[]> {
  recorded.length = 0;
  await send();
  // The span is recorded when the client's response closes, a moment after the answer arrives.
  await waitFor(
    () => {
      proxy.spans?.flush();
      return recorded.length >= count;
    },
    3000,
    `${count} spans`,
  );
  return [...recorded];
}

test("a proxied request: one server span in the caller's trace, naming the upstream, that the upstream sees as its parent", async () => {
  const caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const [span, ...more] = await spansOf(
    () => request(port, "shop.test", "/", { headers: { traceparent: caller } }),
    1,
  );
  assert.ok(span);
  assert.equal(more.length, 0, "one span per request");
  assert.equal(span.kind, "server");
  assert.equal(span.traceId, "0af7651916cd43dd8448eb211c80319c");
  assert.equal(span.parentId, "b7ad6b7169203331");
  assert.equal(span.service, "gateway");
  assert.equal(span.name, "GET shop.test/");
  assert.equal(span.attributes["http.route"], "shop.test/");
  assert.equal(span.attributes["http.request.method"], "GET");
  assert.equal(span.statusCode, 200);
  assert.equal(span.attributes["herd.outcome"], "upstream");
  assert.deepEqual([span.app, span.tenant], ["shop", "default"]);
  assert.equal(span.attributes["peer.service"], "shop/web");
  assert.equal(span.attributes["herd.instance"], "web0");
  assert.equal(seenTraceparent, `00-0af7651916cd43dd8448eb211c80319c-${span.spanId}-01`);
});

test("a request without a traceparent starts a trace whose id begins with the time", async () => {
  const before = Math.floor(Date.now() / 1000);
  const [span] = await spansOf(() => request(port, "shop.test", "/"), 1);
  assert.ok(span);
  assert.equal(span.parentId, null);
  const seconds = Number.parseInt(span.traceId.slice(0, 8), 16);
  assert.ok(
    seconds >= before && seconds <= Math.ceil(Date.now() / 1000),
    `${span.traceId} starts with the time`,
  );
});

test("an upstream 500 is an error span; a request no route takes gets a server span only", async () => {
  const failed = await spansOf(() => request(port, "shop.test", "/fail"), 1);
  assert.ok(failed.every((s) => s.status === "error" && s.statusCode === 500));
  const missed = await spansOf(() => request(port, "nowhere.test", "/"), 1);
  assert.deepEqual(
    missed.map((s) => [
      s.kind,
      s.attributes["http.route"],
      s.statusCode,
      s.attributes["peer.service"],
      s.app,
    ]),
    [["server", "none", 404, undefined, undefined]],
  );
});

test("a caller that does not sample its trace gets no spans, but its trace goes on", async () => {
  recorded.length = 0;
  await request(port, "shop.test", "/", {
    headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00" },
  });
  // Long enough for the response's close, when a recorded request's spans would be taken.
  await new Promise((resolve) => setTimeout(resolve, 100));
  proxy.spans?.flush();
  assert.equal(recorded.length, 0);
  assert.match(seenTraceparent ?? "", /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-00$/);
});

test("a batch carries every field of its requests, in order, and the control plane reads it back", () => {
  let body = "";
  const spans = new GatewaySpans({
    postBatch: (b, n) => {
      body = b;
      assert.equal(n, 2);
      return true;
    },
  });
  const web = new Series('route="shop.test/"', 'shop.test/"q"', "default/shop/web");
  const none = new Series('route="none"');
  const hop = {
    traceId: "0af7651916cd43dd8448eb211c80319c",
    parentId: "b7ad6b7169203331",
    spanId: "1111111111111111",
    recorded: true,
    flags: "01",
  };
  spans.record(hop, web, "GET", 502, "bad_gateway", 1000, 1012.5, "web-1");
  spans.record(
    { ...hop, parentId: null, spanId: "3333333333333333" },
    none,
    "POST",
    404,
    "no_route",
    2000,
    2001,
    null,
  );
  spans.flush();
  const [proxied, missed] = read(body);
  const start = Math.round((performance.timeOrigin + 1000) * 1000);
  assert.deepEqual(proxied, {
    traceId: hop.traceId,
    spanId: "1111111111111111",
    parentId: "b7ad6b7169203331",
    service: "gateway",
    name: 'GET shop.test/"q"',
    kind: "server",
    start,
    duration: 12_500,
    status: "error",
    statusCode: 502,
    attributes: {
      "http.route": 'shop.test/"q"',
      "http.request.method": "GET",
      "http.response.status_code": 502,
      "herd.outcome": "bad_gateway",
      "herd.service": "web",
      "peer.service": "shop/web",
      "herd.instance": "web-1",
    },
    app: "shop",
    tenant: "default",
  });
  assert.deepEqual(
    [missed?.parentId, missed?.name, missed?.status, missed?.app, missed?.attributes["peer.service"]],
    [null, "POST none", "ok", undefined, undefined],
  );
});
