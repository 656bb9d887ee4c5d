import assert from "node:assert/strict";
import type http from "node:http";
import { after, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { LATENCY_BUCKETS_MS, type ServiceLoad } from "../model/load.ts";
import type { Instance } from "../model/objects.ts";
import { LoadBook } from "./load-recorder.ts";
import * as metrics from "./metrics.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable, type RouteObjects } from "./route-table.ts";
import {
  request,
  startUpstream,
  type TestUpstream,
  testInstance,
  testNode,
  testService,
  waitFor,
} from "./testing.ts";

const KEY = "default/shop/web";
const WEB = { app: "shop", service: "web" };

/** The bucket index of a latency, as the report counts it. */
const bucket = (ms: number) => {
  const b = LATENCY_BUCKETS_MS.findIndex((bound) => ms <= bound);
  return b === -1 ? LATENCY_BUCKETS_MS.length : b;
};

test("a response counts as a request, an error or a refusal, with its latency, per service and instance", () => {
  const book = new LoadBook();
  const web = book.service(KEY);
  const i1 = book.instance(web, "i-1", 3);
  const t0 = performance.now();
  web.finished(i1, 200, metrics.UPSTREAM, t0, t0 + 7);
  web.finished(i1, 503, metrics.UPSTREAM, t0 + 1, t0 + 30); // an instance's 5xx: an error
  web.finished(i1, 502, metrics.BAD_GATEWAY, t0 + 2, t0 + 3); // no answer: an error
  web.finished(i1, 404, metrics.UPSTREAM, t0 + 3, t0 + 4); // a 4xx is the app's answer
  web.finished(i1, 429, metrics.RATE_LIMITED, t0 + 4, t0 + 4); // refused by the gateway: shed
  web.inflight = 2;
  i1.inflight = 1;
  const at = Date.now();
  const perfBefore = performance.now();
  const report = book.report(at, 1000);
  const perfAfter = performance.now();
  assert.equal(report.at, at);
  assert.equal(report.intervalMs, 1000);
  const [s] = report.services;
  assert.equal(s.service, KEY);
  assert.deepEqual([s.requests, s.errors, s.shed, s.inflight, s.waiting], [5, 2, 1, 2, 0]);
  // Shed answers stay out of the latency histogram (they would hide the instances' latency).
  const expected = new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);
  for (const ms of [7, 29, 1, 1]) expected[bucket(ms)]++;
  assert.deepEqual(s.latency, expected);
  assert.deepEqual(s.instances, [
    { instance: "i-1", release: 3, requests: 4, errors: 2, inflight: 1, latency: expected },
  ]);
  // The latest arrival (t0 + 4), in epoch ms: `at` minus how long before the report it came.
  const last = s.lastRequestAt ?? 0;
  assert.ok(
    last >= at - (perfAfter - (t0 + 4)) - 1 && last <= at - (perfBefore - (t0 + 4)) + 1,
    String(last),
  );
  // The next interval starts empty; gauges stay.
  const next = book.report(at + 1000, 1000).services[0];
  assert.deepEqual([next.requests, next.errors, next.shed, next.inflight], [0, 0, 0, 2]);
  assert.deepEqual(
    next.instances.map((i) => [i.instance, i.requests, i.inflight]),
    [["i-1", 0, 1]],
  );
});

test("held requests are reported while there are some, and services no table names are forgotten once idle", () => {
  const book = new LoadBook();
  book.beginBuild();
  book.service(KEY);
  book.setWaiting(KEY, 4);
  assert.deepEqual(
    book.report(Date.now(), 1000).services.map((s: ServiceLoad) => [s.service, s.waiting]),
    [[KEY, 4]],
  );
  book.setWaiting(KEY, 0);
  assert.deepEqual(book.report(Date.now(), 1000).services, [], "nothing to say");
  // A build that no longer names the service: while busy it is still reported, then forgotten.
  const web = book.service(KEY);
  book.beginBuild();
  web.inflight = 1;
  assert.equal(book.report(Date.now(), 1000).services.length, 1);
  web.inflight = 0;
  assert.equal(book.report(Date.now(), 1000).services.length, 0);
  assert.notEqual(book.service(KEY), web, "forgotten: a new one is made");
});

test("through the proxy: per instance split, releases, in flight, and no count lost when the table is swapped", async () => {
  const upstreams: TestUpstream[] = [];
  const hold: http.ServerResponse[] = [];
  const ok = await startUpstream((req, res) => {
    if (req.url === "/hold") hold.push(res);
    else res.end("ok");
  });
  const failing = await startUpstream((_req, res) => {
    res.writeHead(500);
    res.end("no");
  });
  upstreams.push(ok, failing);
  const proxy = new GatewayProxy({ logger: silentLogger });
  const port = await proxy.listen(0, "127.0.0.1");
  after(async () => {
    for (const res of hold) res.end();
    await proxy.close();
    await Promise.all(upstreams.map((u) => u.close()));
  });
  const bad = testInstance("web-bad", WEB, "local", failing.port);
  const good = { ...testInstance("web-ok", WEB, "local", ok.port), release: 2 };
  const more = testInstance("web-more", WEB, "local", ok.port);
  const objects = (...instances: Instance[]): RouteObjects => ({
    services: [testService("default", "shop", "web", [{ host: "shop.test" }])],
    instances,
    nodes: [testNode("local", "127.0.0.1")],
  });
  proxy.table = buildRouteTable(objects(bad, good), 1);
  const book = proxy.table.load;
  book.report(Date.now(), 1000);
  for (let i = 0; i < 20; i++) await request(port, "shop.test", "/");
  await request(port, "nowhere.test", "/"); // no route: no service's figure
  const [s] = book.report(Date.now(), 1000).services;
  assert.deepEqual([s.service, s.requests, s.errors, s.shed], [KEY, 20, 10, 0]);
  assert.deepEqual(
    s.instances.map((i) => [i.instance, i.release, i.requests, i.errors]),
    [
      ["web-bad", 1, 10, 10],
      ["web-ok", 2, 10, 0],
    ],
  );
  // Requests held by the instance are in flight; the table changes under them; they end on the new one.
  proxy.table = buildRouteTable(objects(good), 2, { previous: proxy.table });
  const pending = [request(port, "shop.test", "/hold"), request(port, "shop.test", "/hold")];
  await waitFor(() => hold.length === 2, 3000, "two held requests");
  const during = book.report(Date.now(), 1000).services[0];
  assert.equal(during.inflight, 2);
  assert.deepEqual(
    during.instances.map((i) => [i.instance, i.inflight]),
    [["web-ok", 2]],
  );
  proxy.table = buildRouteTable(objects(good, more), 3, { previous: proxy.table });
  assert.equal(proxy.table.load, book, "the book is handed to the next table");
  for (const res of hold.splice(0)) res.end("done");
  await Promise.all(pending);
  const [afterSwap] = book.report(Date.now(), 1000).services;
  assert.equal(afterSwap.inflight, 0);
  assert.equal(afterSwap.requests, pending.length);
  assert.equal(afterSwap.instances.find((i) => i.instance === "web-ok")?.inflight, 0);
});
