// Finding the gateway's spans by the app and service a request was routed
// to: batches written by the gateway's own GatewaySpans, read by the control
// plane's parser into a real SpanStore, then searched, summed up and ranked.
//
//   trace 1: GET shop.test/       → shop/web (proxied; shop/web sends its own server span)
//   trace 2: GET shop.test/       → shop/web (no instance up: 503, never proxied)
//   trace 3: GET shop.test/api    → shop/api (proxied; shop/api sends no spans)
//   trace 4: GET blog.test/       → blog/web (proxied, another app)
//   trace 5: GET nothing.test/    → no route (404)
//   trace 6: shop/worker's own root span (a job, not through the gateway)

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ManualClock } from "../../common/clock.ts";
import { Series } from "../../gateway/metrics.ts";
import { GatewaySpans, type TraceHop } from "../../gateway/spans.ts";
import { TopBuilder } from "./analysis.ts";
import { parseGatewayBatch } from "./gateway-batch.ts";
import { SpanStore } from "./span-store.ts";
import { hexId, makeSpan } from "./testing.ts";

test("traces by app and service find the gateway's spans of requests routed there", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-traces-search-"));
  const clock = new ManualClock(Date.now());
  const store = new SpanStore({ dir, clock, flushMs: 0 });
  t.after(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const batches: string[] = [];
  const gateway = new GatewaySpans({ postBatch: (body) => batches.push(body) > 0 });
  const web = new Series("", "shop.test/", "default/shop/web");
  const api = new Series("", "shop.test/api", "default/shop/api");
  const blog = new Series("", "blog.test/", "default/blog/web");
  const none = new Series("", "none", "");
  const hop = (trace: number): TraceHop => ({
    traceId: hexId(trace, 32),
    parentId: null,
    spanId: hexId(trace * 16),
    recorded: true,
    flags: "01",
  });
  const at = performance.now() - 5000;
  gateway.record(hop(1), web, "GET", 200, "upstream", at, at + 30, "shop-web-1");
  gateway.record(hop(2), web, "GET", 503, "no_endpoints", at + 1, at + 2, null);
  gateway.record(hop(3), api, "POST", 200, "upstream", at + 2, at + 12, "shop-api-1");
  gateway.record(hop(4), blog, "GET", 200, "upstream", at + 3, at + 8, "blog-web-1");
  gateway.record(hop(5), none, "GET", 404, "no_route", at + 4, at + 5, null);
  gateway.flush();
  assert.equal(batches.length, 1);
  assert.ok(store.recordColumns(parseGatewayBatch(JSON.parse(batches[0] as string))));
  const start = Math.round((performance.timeOrigin + at) * 1000);
  assert.ok(
    store.recordSpans([
      // shop/web's own server span, under the gateway's span of trace 1.
      makeSpan({
        trace: 1,
        id: 2,
        parent: 16,
        service: "shop/web",
        name: "GET /",
        start: start + 2000,
        duration: 20_000,
        app: "shop",
        tenant: "default",
      }),
      makeSpan({
        trace: 6,
        id: 1,
        service: "shop/worker",
        name: "send mail",
        start: start + 6000,
        app: "shop",
        tenant: "default",
      }),
    ]),
  );
  store.flush();

  const found = (q: Parameters<SpanStore["search"]>[0]) =>
    store
      .search(q)
      .map((s) => Number.parseInt(s.traceId, 16))
      .sort();
  assert.deepEqual(found({ service: "shop/web" }), [1, 2], "proxied, and routed but never proxied");
  assert.deepEqual(found({ service: "shop/api" }), [3], "an app that sends no spans");
  assert.deepEqual(found({ service: "blog/web" }), [4]);
  assert.deepEqual(found({ app: "shop" }), [1, 2, 3, 6]);
  assert.deepEqual(found({ app: "blog" }), [4]);
  assert.deepEqual(found({ app: "sho" }), [], "an app's name, not a prefix of one");
  assert.deepEqual(found({ app: "shop", service: "shop/api" }), [3]);
  assert.deepEqual(found({ app: "shop", status: "error" }), [2]);
  assert.deepEqual(found({ service: "gateway" }), [1, 2, 3, 4, 5]);
  assert.deepEqual(found({ app: "shop", tenant: "acme" }), [], "another tenant's search sees none of them");

  // SERVICES of a trace: the upstream the gateway proxied to, whether or not it sends spans.
  const services = new Map(
    store.search({ limit: 100 }).map((s) => [Number.parseInt(s.traceId, 16), s.services.join(",")]),
  );
  assert.deepEqual(Object.fromEntries(services), {
    1: "gateway,shop/web",
    2: "gateway",
    3: "gateway,shop/api",
    4: "blog/web,gateway",
    5: "gateway",
    6: "shop/worker",
  });

  // Top-N: each upstream service has its calls, counted once (shop/web through its own span).
  const top = new TopBuilder();
  const now = clock.now() * 1000;
  store.scan(now - 60e6, now + 1, (row) => top.add(row), { calledThrough: true });
  const result = top.result(now - 60e6, now, "calls", 10);
  assert.deepEqual(
    result.services.map((s) => [s.service, s.calls]),
    [
      ["gateway", 5],
      ["blog/web", 1],
      ["shop/api", 1],
      ["shop/web", 1],
      ["shop/worker", 1],
    ],
  );
  assert.deepEqual(
    result.routes
      .filter((r) => r.service !== "gateway")
      .map((r) => [r.service, r.route])
      .sort(),
    [
      ["blog/web", "blog.test/"],
      ["shop/api", "shop.test/api"],
      ["shop/web", "GET /"],
      ["shop/worker", "send mail"],
    ],
  );
});
