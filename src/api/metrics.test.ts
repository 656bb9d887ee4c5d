// Metrics over the real API: pushed points (JSON and text, 400 and 429), the
// Prometheus query API, scrape targets (herd's own /metrics and a registered
// one), and HTTP service discovery from the store's instances.

import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { RunningServer } from "../daemons/control-plane.ts";
import { releaseKey } from "../model/objects.ts";
import { SqliteStore } from "../store/sqlite-store.ts";
import { serviceDiscovery } from "./routes/metrics.ts";
import { apiCall, waitFor as poll, testServer } from "./testing.ts";

const fixture = testServer("herd-metrics-api-", {
  // Test receivers, targets and collectors listen on 127.0.0.1.
  allowFetch: ["127.0.0.0/8"],
  metrics: { scrapeIntervalMs: 200, ingestQueuePoints: 1000 },
});
let server: RunningServer;
let exporter: Server;
before(async () => {
  server = await fixture.started;
  exporter = createServer((_req, res) => {
    res.setHeader("content-type", "text/plain; version=0.0.4");
    res.end('# TYPE shop_orders_total counter\nshop_orders_total{kind="book"} 42\n');
  });
  await new Promise<void>((r) => exporter.listen(0, "127.0.0.1", r));
});
after(async () => {
  await new Promise((r) => exporter.close(r));
});

const call = (method: string, path: string, body?: unknown, contentType = "application/json") =>
  apiCall(server, method, path, body, { contentType });

test("the API server exports process metrics and request counts at /metrics", async () => {
  await call("GET", "/version");
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.match(text, /^process_cpu_user_seconds_total \d/m);
  assert.match(text, /herd_api_requests_total\{method="GET",route="\/api\/v1\/version",status="200"\} \d+/);
});

test("pushed points: JSON and text are stored; malformed input is 400 naming the problem; too much is 429", async () => {
  const now = Date.now();
  const ok = await call("POST", "/metrics/write", {
    series: [
      {
        metric: "pushed_temp",
        labels: { room: "a" },
        samples: [
          [now - 1000, 20.5],
          [now, 21],
        ],
      },
    ],
  });
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, { accepted: 2, outOfOrder: 0, tooOld: 0 });
  const text = await call(
    "POST",
    "/metrics/write",
    'pushed_temp{room="b"} 19\n',
    "text/plain; version=0.0.4",
  );
  assert.equal(text.status, 200);
  assert.equal(text.body.accepted, 1);

  const bad: [unknown, RegExp, string][] = [
    [
      { series: [{ metric: "9x", samples: [[now, 1]] }] },
      /series\[0\]\.metric: must be a metric name/,
      "series[0].metric",
    ],
    [
      { series: [{ metric: "x", samples: [[now, "high"]] }] },
      /series\[0\]\.samples\[0\]: the value must be a number/,
      "series[0].samples[0]",
    ],
    [
      { series: [{ metric: "x", labels: { "a-b": "1" }, samples: [[now, 1]] }] },
      /"a-b" is not a valid label name/,
      "series[0].labels",
    ],
    [
      { series: [{ metric: "x", samples: [[1.5, 1]] }] },
      /timestamp must be an integer/,
      "series[0].samples[0]",
    ],
    [{ points: [] }, /body: must be/, "body"],
  ];
  for (const [body, re, field] of bad) {
    const r = await call("POST", "/metrics/write", body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(r.body.message, re);
    assert.equal(r.body.details?.[0]?.field, field, "the 400 names the field in details, like every API 400");
  }
  const badText = await call("POST", "/metrics/write", "ok 1\nbroken{ 2\n", "text/plain");
  assert.equal(badText.status, 400);
  assert.match(badText.body.message, /line 2: /);

  const big = { series: [{ metric: "big", samples: Array.from({ length: 1001 }, (_, i) => [now + i, i]) }] };
  const tooBig = await call("POST", "/metrics/write", big);
  assert.equal(tooBig.status, 413);
  assert.equal(tooBig.headers.get("retry-after"), null);
  assert.match(tooBig.body.message, /more than the ingest queue holds \(1000\): split it/);
});

test("the Prometheus query API answers instant and range queries; parse errors are 400 with the position", async () => {
  const t0 = Math.floor(Date.now() / 1000) * 1000 - 60_000;
  const samples = Array.from({ length: 5 }, (_, i) => [t0 + i * 15_000, i * 30]);
  await call("POST", "/metrics/write", {
    series: [
      { metric: "api_hits_total", labels: { route: "a" }, samples },
      { metric: "api_hits_total", labels: { route: "b" }, samples },
    ],
  });
  const at = (t0 + 60_000) / 1000;
  const q = await call(
    "GET",
    `/prom/api/v1/query?query=${encodeURIComponent("sum(rate(api_hits_total[1m]))")}&time=${at}`,
  );
  assert.equal(q.status, 200);
  assert.equal(q.body.status, "success");
  assert.equal(q.body.data.resultType, "vector");
  assert.deepEqual(q.body.data.result, [{ metric: {}, value: [at, "4"] }]);

  const form = new URLSearchParams({
    query: 'api_hits_total{route="a"}',
    start: String(t0 / 1000),
    end: new Date(t0 + 30_000).toISOString(),
    step: "15s",
  });
  const r = await call(
    "POST",
    "/prom/api/v1/query_range",
    form.toString(),
    "application/x-www-form-urlencoded",
  );
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.data.result, [
    {
      metric: { __name__: "api_hits_total", route: "a" },
      values: [
        [t0 / 1000, "0"],
        [t0 / 1000 + 15, "30"],
        [t0 / 1000 + 30, "60"],
      ],
    },
  ]);

  const err = await call("GET", `/prom/api/v1/query?query=${encodeURIComponent("sum(rate(x[5m])")}`);
  assert.equal(err.status, 400);
  assert.equal(err.body.errorType, "bad_data");
  assert.match(err.body.error, /position 16/);
  const step = await call("GET", `/prom/api/v1/query_range?query=up&start=1&end=2&step=zz`);
  assert.equal(step.status, 400);
  assert.match(step.body.error, /invalid parameter "step"/);

  const series = await call(
    "GET",
    `/prom/api/v1/series?match[]=${encodeURIComponent('api_hits_total{route=~"a|b"}')}`,
  );
  assert.equal(series.body.data.length, 2);
  assert.ok((await call("GET", "/prom/api/v1/labels")).body.data.includes("route"));
  assert.deepEqual((await call("GET", `/prom/api/v1/label/route/values?match[]=api_hits_total`)).body.data, [
    "a",
    "b",
  ]);
  // start/end: only series with samples in the range (an old one is left out).
  await call("POST", "/metrics/write", {
    series: [{ metric: "api_hits_total", labels: { route: "old" }, samples: [[t0 - 3_600_000, 1]] }],
  });
  const range = `start=${t0 / 1000 - 10}&end=${t0 / 1000 + 60}`;
  const inRange = await call("GET", `/prom/api/v1/series?match[]=api_hits_total&${range}`);
  assert.deepEqual(inRange.body.data.map((l: { route: string }) => l.route).sort(), ["a", "b"]);
  assert.equal((await call("GET", "/prom/api/v1/series?match[]=api_hits_total")).body.data.length, 3);
  assert.deepEqual(
    (await call("GET", `/prom/api/v1/label/route/values?match[]=api_hits_total&${range}`)).body.data,
    ["a", "b"],
  );
  assert.ok((await call("GET", `/prom/api/v1/labels?${range}`)).body.data.includes("route"));
  const backwards = await call("GET", `/prom/api/v1/series?match[]=api_hits_total&start=10&end=5`);
  assert.equal(backwards.status, 400);
  assert.match(backwards.body.error, /end timestamp must not be before start time/);
  assert.equal((await call("GET", "/prom/api/v1/label/not-a-name/values")).status, 400);
  // Metadata comes from the targets' # TYPE / # HELP (herd's own /metrics here); exemplars: none kept.
  await waitFor("herd's own metadata", async () => {
    const m = await call("GET", "/prom/api/v1/metadata?metric=herd_api_requests_total");
    return Object.keys(m.body.data).length > 0 ? true : undefined;
  });
  const meta = await call("GET", "/prom/api/v1/metadata?metric=herd_api_requests_total");
  assert.deepEqual(Object.keys(meta.body.data), ["herd_api_requests_total"]);
  assert.equal(meta.body.data.herd_api_requests_total[0].type, "counter");
  assert.equal(Object.keys((await call("GET", "/prom/api/v1/metadata?limit=2")).body.data).length, 2);
  assert.deepEqual((await call("GET", "/prom/api/v1/query_exemplars?query=up")).body, {
    status: "success",
    data: [],
  });
  assert.equal((await call("GET", "/prom/api/v1/query_exemplars?query=up(")).status, 400);

  // Basic auth with the token as password works too (promtool and some data sources only do that).
  const basic = await fetch(`${server.url}/api/v1/prom/api/v1/query?query=1`, {
    headers: { authorization: `Basic ${Buffer.from(`herd:${server.adminToken}`).toString("base64")}` },
  });
  assert.equal(basic.status, 200);
  assert.deepEqual(((await basic.json()) as { data: { resultType: string } }).data.resultType, "scalar");
});

test("herd scrapes itself and registered targets; targets show their health", async () => {
  const port = (exporter.address() as AddressInfo).port;
  const put = await call("PUT", "/metrics/targets/shop", {
    url: `http://127.0.0.1:${port}/metrics`,
    labels: { team: "web" },
  });
  assert.equal(put.status, 200);
  const bad = await call("PUT", "/metrics/targets/x", { url: "ftp://nope" });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /url/);

  const query = async (q: string) =>
    (await call("GET", `/prom/api/v1/query?query=${encodeURIComponent(q)}`)).body.data.result as {
      metric: Record<string, string>;
      value: [number, string];
    }[];
  const orders = await waitFor("the shop target to be scraped", async () => {
    const r = await query("shop_orders_total");
    return r.length > 0 ? r : undefined;
  });
  assert.deepEqual(orders[0]?.metric, {
    __name__: "shop_orders_total",
    instance: `127.0.0.1:${port}`,
    job: "shop",
    kind: "book",
    team: "web",
  });
  await waitFor("herd-api up", async () =>
    (await query('up{job="herd-api"} == 1')).length > 0 ? true : undefined,
  );
  await waitFor("herd's own request counter", async () =>
    (await query('herd_api_requests_total{job="herd-api"}')).length > 0 ? true : undefined,
  );
  const targets = await call("GET", "/metrics/targets");
  const shop = targets.body.items.find((t: { name: string }) => t.name === "shop");
  assert.equal(shop.health, "up");

  // A target that stops answering is up == 0.
  await call("PUT", "/metrics/targets/gone", { url: "http://127.0.0.1:1/metrics" });
  await waitFor("gone down", async () =>
    (await query('up{job="gone"} == 0')).length > 0 ? true : undefined,
  );
  assert.equal((await call("DELETE", "/metrics/targets/gone")).status, 200);
  assert.equal((await call("DELETE", "/metrics/targets/gone")).status, 404);
});

test("service discovery lists running instances of services with a metrics endpoint, herd's components and registered targets", async (t) => {
  // A store of its own: the server's controllers would remove instances of apps that do not exist.
  const store = SqliteStore.open(join(fixture.dir, "sd.db"));
  t.after(() => store.close());
  await store.put("node", "n1", { name: "n1", address: "10.0.0.7" });
  // web declares `metrics: { path: /metrics }` in herd.yaml; worker serves none.
  await store.put("release", releaseKey("default", "shop", 1), {
    tenant: "default",
    app: "shop",
    version: 1,
    services: { web: { metrics: { path: "/-/metrics" } }, worker: {} },
  });
  const instance = { tenant: "default", app: "shop", service: "web", node: "n1", release: 1 };
  await store.put("instance", "w-1", {
    ...instance,
    service: "worker",
    id: "w-1",
    desired: "running",
    state: "running",
    port: 40009,
  });
  await store.put("instance", "i-1", {
    ...instance,
    id: "i-1",
    desired: "running",
    state: "running",
    port: 40001,
  });
  await store.put("instance", "i-2", {
    ...instance,
    id: "i-2",
    desired: "stopped",
    state: "stopped",
    port: 40002,
  });
  await store.put("instance", "i-3", { ...instance, id: "i-3", desired: "running", state: "pending" });
  const groups = await serviceDiscovery(store, [
    {
      name: "gateway",
      url: "https://10.0.0.2:9090/gw/metrics",
      labels: { component: "gateway" },
      createdAt: "",
    },
  ]);
  assert.deepEqual(groups, [
    {
      targets: ["10.0.0.7:40001"],
      labels: {
        tenant: "default",
        app: "shop",
        service: "web",
        instance: "i-1",
        node: "n1",
        __metrics_path__: "/-/metrics",
      },
    },
    {
      targets: ["10.0.0.2:9090"],
      labels: { component: "gateway", __metrics_path__: "/gw/metrics", __scheme__: "https" },
    },
  ]);

  const sd = await call("GET", "/prom/sd");
  assert.equal(sd.status, 200);
  const api = sd.body.find((g: { labels: { component?: string } }) => g.labels.component === "api");
  assert.deepEqual(api, {
    targets: [`127.0.0.1:${server.port}`],
    labels: { component: "api", __metrics_path__: "/metrics", __scheme__: "http" },
  });
});

function waitFor<T>(what: string, f: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  return poll(what, f, ms, 50);
}
