import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type Gateway, startGateway } from "./gateway.ts";
import {
  closedPort,
  metricSum,
  request,
  type ScrapedSample,
  scrape,
  startTestControlPlane,
  startUpstream,
  type TestControlPlane,
  type TestUpstream,
  testInstance,
  testNode,
  testService,
  waitFor,
} from "./testing.ts";

const TOKEN = "metrics-token";

/** The labels of a route's series (what the gateway puts on it). */
function series(route: string, service: string): Record<string, string> {
  return { route, tenant: "default", app: "shop", service };
}

/** Every histogram series: buckets never fall, +Inf equals _count, and _count equals its requests_total. */
function checkHistograms(samples: ScrapedSample[]): void {
  const counts = samples.filter((s) => s.name === "herd_gateway_request_duration_seconds_count");
  assert.ok(counts.length > 0, "some latency series");
  for (const count of counts) {
    const buckets = samples.filter(
      (s) =>
        s.name === "herd_gateway_request_duration_seconds_bucket" &&
        s.labels.route === count.labels.route &&
        s.labels.service === count.labels.service,
    );
    assert.equal(buckets.length, 14, "13 bounds and +Inf");
    for (let i = 1; i < buckets.length; i++) {
      assert.ok(buckets[i].value >= buckets[i - 1].value, `cumulative buckets of ${count.labels.route}`);
    }
    assert.equal(buckets.at(-1)?.labels.le, "+Inf");
    assert.equal(buckets.at(-1)?.value, count.value);
    assert.equal(metricSum(samples, "herd_gateway_requests_total", count.labels), count.value);
  }
}

describe("gateway /metrics (single process)", () => {
  let dataDir: string;
  let controlPlane: TestControlPlane;
  let upstream: TestUpstream;
  let gateway: Gateway | undefined;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "herd-gateway-metrics-"));
    controlPlane = await startTestControlPlane(TOKEN);
    upstream = await startUpstream((req, res) => {
      if (req.url === "/hang") return; // never answers (closed with the upstream)
      if (req.url === "/partial") {
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("part of it"); // and never the rest
        return;
      }
      res.statusCode = req.url === "/fail" ? 500 : 200;
      res.end("ok");
    });
    const dead = await closedPort();
    controlPlane.put("node", "local", testNode("local", "127.0.0.1"));
    const services = [
      testService("default", "shop", "web", [{ host: "shop.test" }]),
      testService("default", "shop", "limited", [
        { host: "limited.test", rateLimit: { rate: 0.001, burst: 1, per: "route" } },
      ]),
      testService("default", "shop", "empty", [{ host: "empty.test" }]),
      testService("default", "shop", "down", [
        { host: "down.test", fallback: { status: 200, body: "{}", contentType: "application/json" } },
      ]),
      testService("default", "shop", "broken", [{ host: "broken.test", path: "/api" }]),
      testService("default", "shop", "stable", [
        { host: "split.test", split: { to: [{ service: "canary", weight: 25 }] } },
      ]),
      testService("default", "shop", "canary", []),
    ];
    for (const s of services) controlPlane.put("service", `default/shop/${s.name}`, s);
    controlPlane.put(
      "instance",
      "i-web",
      testInstance("i-web", { app: "shop", service: "web" }, "local", upstream.port),
    );
    controlPlane.put(
      "instance",
      "i-limited",
      testInstance("i-limited", { app: "shop", service: "limited" }, "local", upstream.port),
    );
    controlPlane.put(
      "instance",
      "i-broken",
      testInstance("i-broken", { app: "shop", service: "broken" }, "local", dead),
    );
    for (const name of ["stable", "canary"]) {
      controlPlane.put(
        "instance",
        `i-${name}`,
        testInstance(`i-${name}`, { app: "shop", service: name }, "local", upstream.port),
      );
    }
    gateway = await startGateway({
      server: controlPlane.url,
      token: TOKEN,
      port: 0,
      host: "127.0.0.1",
      dataDir,
      logger: silentLogger,
      metricsPort: 0,
    });
  });

  after(async () => {
    await gateway?.close();
    await controlPlane.close();
    await upstream.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test("counts every response by route, service, code and outcome, with a latency histogram", async () => {
    assert.ok(gateway?.metricsUrl, "the gateway reports where its metrics are");
    const { port, metricsUrl } = gateway;
    const expect = async (host: string, path: string, status: number, options = {}) => {
      const reply = await request(port, host, path, options);
      assert.equal(reply.status, status, `${host}${path}: ${reply.body}`);
    };
    for (let i = 0; i < 3; i++) await expect("shop.test", "/", 200);
    for (let i = 0; i < 2; i++) await expect("shop.test", "/fail", 500);
    await expect("limited.test", "/", 200);
    await expect("limited.test", "/", 429);
    await expect("empty.test", "/", 503);
    await expect("down.test", "/", 200);
    await expect("broken.test", "/api/x", 502, { method: "POST", body: "x" });
    await expect("nobody.test", "/", 404);
    for (let i = 0; i < 8; i++) await expect("split.test", "/", 200);

    const { samples, text } = await scrape(metricsUrl);
    const requests = (labels: Record<string, string>) =>
      metricSum(samples, "herd_gateway_requests_total", labels);
    assert.equal(requests({ ...series("shop.test/", "web"), code: "200", outcome: "upstream" }), 3);
    assert.equal(requests({ ...series("shop.test/", "web"), code: "500", outcome: "upstream" }), 2);
    assert.equal(requests({ ...series("limited.test/", "limited"), code: "200", outcome: "upstream" }), 1);
    assert.equal(
      requests({ ...series("limited.test/", "limited"), code: "429", outcome: "rate_limited" }),
      1,
    );
    assert.equal(requests({ ...series("empty.test/", "empty"), code: "503", outcome: "unavailable" }), 1);
    assert.equal(
      requests({ ...series("down.test/", "down"), code: "200", outcome: "fallback_unavailable" }),
      1,
    );
    assert.equal(
      requests({ ...series("broken.test/api", "broken"), code: "502", outcome: "bad_gateway" }),
      1,
    );
    assert.equal(requests({ route: "none", code: "404", outcome: "no_route" }), 1);
    // A split route: its series per service it sent to (25 % exactly, by smooth rotation).
    assert.equal(requests({ ...series("split.test/", "stable"), code: "200", outcome: "upstream" }), 6);
    assert.equal(requests({ ...series("split.test/", "canary"), code: "200", outcome: "upstream" }), 2);
    assert.equal(requests({}), 19, "nothing else counted");
    // 5xx by who produced them.
    assert.equal(
      samples
        .filter((s) => s.name === "herd_gateway_requests_total" && s.labels.code.startsWith("5"))
        .filter((s) => s.labels.outcome !== "upstream")
        .reduce((n, s) => n + s.value, 0),
      2,
      "the gateway's own 5xx: 503 and 502",
    );
    assert.equal(
      metricSum(samples, "herd_gateway_request_duration_seconds_count", series("shop.test/", "web")),
      5,
    );
    checkHistograms(samples);

    assert.equal(metricSum(samples, "herd_gateway_routes"), 6);
    assert.equal(metricSum(samples, "herd_gateway_workers"), 1);
    assert.equal(metricSum(samples, "herd_gateway_table_version"), controlPlane.revision());
    assert.equal(metricSum(samples, "herd_gateway_inflight_requests"), 0);
    assert.equal(metricSum(samples, "herd_gateway_endpoints", { app: "shop", service: "web" }), 1);
    assert.equal(metricSum(samples, "herd_gateway_endpoints", { app: "shop", service: "empty" }), 0);
    assert.match(text, /^# TYPE herd_gateway_requests_total counter$/m);
    assert.match(text, /^# TYPE herd_gateway_request_duration_seconds histogram$/m);

    // A new configuration (another instance) keeps the counters.
    const before = controlPlane.revision();
    controlPlane.put(
      "instance",
      "i-web-2",
      testInstance("i-web-2", { app: "shop", service: "web" }, "local", upstream.port),
    );
    await waitFor(() => (gateway?.table().version ?? 0) > before, 3000, "the new table");
    await expect("shop.test", "/", 200);
    const again = (await scrape(metricsUrl)).samples;
    assert.equal(
      metricSum(again, "herd_gateway_requests_total", { ...series("shop.test/", "web"), code: "200" }),
      4,
    );
    assert.equal(metricSum(again, "herd_gateway_endpoints", { app: "shop", service: "web" }), 2);
    checkHistograms(again);
  });

  test("a client that leaves is counted: 499 before any answer, incomplete after its head", async () => {
    assert.ok(gateway?.metricsUrl);
    const { port, metricsUrl } = gateway;
    const leave = (path: string, when: "sent" | "head") =>
      new Promise<void>((resolve) => {
        const hits = upstream.hits;
        const req = http.request({
          host: "127.0.0.1",
          port,
          path,
          headers: { host: "shop.test" },
          agent: false,
        });
        req.on("error", () => resolve());
        req.on("close", () => resolve());
        if (when === "head") req.on("response", () => req.destroy());
        else
          void waitFor(() => upstream.hits > hits, 3000, "the upstream to get it").then(() => req.destroy());
        req.end();
      });
    await leave("/hang", "sent");
    await leave("/partial", "head");
    const labels = series("shop.test/", "web");
    const count = async (code: string, outcome: string) =>
      metricSum((await scrape(metricsUrl)).samples, "herd_gateway_requests_total", {
        ...labels,
        code,
        outcome,
      });
    // The gateway sees the client's close a moment later.
    const deadline = Date.now() + 3000;
    while ((await count("499", "client_closed")) + (await count("200", "incomplete")) < 2) {
      assert.ok(Date.now() < deadline, "both counted within 3 s");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(await count("499", "client_closed"), 1);
    assert.equal(await count("200", "incomplete"), 1);
    assert.equal(metricSum((await scrape(metricsUrl)).samples, "herd_gateway_inflight_requests"), 0);
  });

  test("a metrics port in use fails the start, unless a free port may be taken instead", async () => {
    assert.ok(gateway?.metricsUrl);
    const taken = Number(new URL(gateway.metricsUrl).port);
    const options = {
      server: controlPlane.url,
      token: TOKEN,
      port: 0,
      host: "127.0.0.1",
      dataDir: await mkdtemp(join(tmpdir(), "herd-gateway-metrics-2-")),
      logger: silentLogger,
      metricsPort: taken,
    };
    try {
      await assert.rejects(startGateway(options), /metrics port \d+ is in use/);
      const second = await startGateway({ ...options, metricsPortOrFree: true });
      try {
        assert.ok(second.metricsUrl && Number(new URL(second.metricsUrl).port) !== taken);
        assert.equal((await fetch(second.metricsUrl)).status, 200);
      } finally {
        await second.close();
      }
    } finally {
      await rm(options.dataDir, { recursive: true, force: true });
    }
  });

  test("answers only GET /metrics on its port", async () => {
    assert.ok(gateway?.metricsUrl);
    assert.equal((await fetch(gateway.metricsUrl.replace("/metrics", "/other"))).status, 404);
    assert.equal((await fetch(gateway.metricsUrl, { method: "POST" })).status, 405);
  });
});
