// The gateway's spans: a server span per request and a client span naming
// the upstream service for proxied ones, in the caller's trace, with the
// client span's id as the parent the upstream sees.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { parseOtlpTraces } from "../observe/traces/otlp.ts";
import type { Span } from "../observe/traces/span.ts";
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

const recorded: Span[] = [];
const sink = {
  recordSpans(spans: readonly Span[]): boolean {
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
  // The client span is recorded when the client's response closes, a moment after the answer arrives.
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

test("a proxied request: a server span in the caller's trace and a client span the upstream sees as its parent", async () => {
  const caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const spans = await spansOf(() => request(port, "shop.test", "/", { headers: { traceparent: caller } }), 2);
  const server = spans.find((s) => s.kind === "server");
  const client = spans.find((s) => s.kind === "client");
  assert.ok(server && client);
  assert.equal(server.traceId, "0af7651916cd43dd8448eb211c80319c");
  assert.equal(server.parentId, "b7ad6b7169203331");
  assert.equal(server.service, "gateway");
  assert.equal(server.attributes["http.route"], "shop.test/");
  assert.equal(server.statusCode, 200);
  assert.deepEqual([server.app, server.tenant], ["shop", "default"]);
  assert.equal(client.parentId, server.spanId);
  assert.equal(client.attributes["peer.service"], "shop/web");
  assert.equal(seenTraceparent, `00-0af7651916cd43dd8448eb211c80319c-${client.spanId}-01`);
  assert.ok(server.duration >= client.duration);
});

test("an upstream 500 is an error span; a request no route takes gets a server span only", async () => {
  const failed = await spansOf(() => request(port, "shop.test", "/fail"), 2);
  assert.ok(failed.every((s) => s.status === "error" && s.statusCode === 500));
  const missed = await spansOf(() => request(port, "nowhere.test", "/"), 1);
  assert.deepEqual(
    missed.map((s) => [s.kind, s.attributes["http.route"], s.statusCode]),
    [["server", "none", 404]],
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

test("the OTLP JSON written at flush says what the Span objects say", () => {
  const objects: Span[] = [];
  let body = "";
  let count = 0;
  const asObjects = new GatewaySpans({
    recordSpans: (s) => {
      objects.push(...s);
      return true;
    },
  });
  const asText = new GatewaySpans({
    postOtlp: (b, n) => {
      body = b;
      count = n;
      return true;
    },
  });
  const web = new Series('route="shop.test/"', 'shop.test/"q"', "default/shop/web");
  const none = new Series('route="none"');
  for (const spans of [asObjects, asText]) {
    const hop = {
      traceId: "0af7651916cd43dd8448eb211c80319c",
      parentId: "b7ad6b7169203331",
      spanId: "1111111111111111",
      clientId: "2222222222222222",
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
  }
  assert.equal(count, 3);
  const parsed = parseOtlpTraces(JSON.parse(body));
  const key = (s: Span) => s.spanId;
  const pick = (s: Span) => [
    s.traceId,
    s.spanId,
    s.parentId,
    s.service,
    s.name,
    s.kind,
    s.start,
    s.duration,
    s.status,
    s.app,
    s.tenant,
    s.attributes,
  ];
  assert.deepEqual(
    parsed.sort((a, b) => (key(a) < key(b) ? -1 : 1)).map(pick),
    objects.sort((a, b) => (key(a) < key(b) ? -1 : 1)).map(pick),
  );
  assert.equal(parsed.find((s) => s.kind === "client")?.attributes["peer.service"], "shop/web");
});
