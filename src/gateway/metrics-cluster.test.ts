import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type GatewayChild, spawnGatewayChild } from "./cluster-child.ts";
import {
  childPids,
  killAll,
  metricSum,
  putShop,
  request,
  scrape,
  startTestControlPlane,
  startUpstream,
  type TestControlPlane,
  type TestUpstream,
  until,
} from "./testing.ts";

const TOKEN = "metrics-cluster-token";
const WEB = { route: "shop.test/", tenant: "default", app: "shop", service: "web" };

describe("gateway /metrics with worker processes (herd gateway --workers 2)", () => {
  let dataDir: string;
  let controlPlane: TestControlPlane;
  let upstream: TestUpstream;
  let gateway: GatewayChild | undefined;
  /** Every pid this test saw, killed at the end whatever happened. */
  const pids = new Set<number>();

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "herd-gateway-metrics-cluster-"));
    controlPlane = await startTestControlPlane(TOKEN);
    upstream = await startUpstream((req, res) => {
      res.statusCode = req.url === "/fail" ? 500 : 200;
      res.end("ok");
    });
    putShop(controlPlane, upstream.port);
  });

  after(async () => {
    killAll(pids);
    await controlPlane.close();
    await upstream.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test("a scrape sums every worker, and a dead worker's counts stay in the sums", async () => {
    gateway = await spawnGatewayChild({
      server: controlPlane.url,
      token: TOKEN,
      port: 0,
      host: "127.0.0.1",
      dataDir,
      workers: 2,
      metricsPort: 0,
    });
    pids.add(gateway.pid);
    const { port, metricsUrl } = gateway;
    assert.ok(metricsUrl, "the primary reports where its metrics are");
    const [a, b] = childPids(gateway.pid);
    pids.add(a);
    pids.add(b);
    assert.ok(a && b, "two workers");

    // Only one worker accepts while the other is stopped (they share the listening socket), so each
    // worker serves a known part: b the five 200s, a the seven 500s.
    const served = async (path: string, status: number, times: number) => {
      for (let i = 0; i < times; i++) assert.equal((await request(port, "shop.test", path)).status, status);
    };
    process.kill(a, "SIGSTOP");
    try {
      await served("/", 200, 5);
    } finally {
      process.kill(a, "SIGCONT");
    }
    process.kill(b, "SIGSTOP");
    try {
      await served("/fail", 500, 7);
    } finally {
      process.kill(b, "SIGCONT");
    }

    let { samples } = await scrape(metricsUrl);
    const count = (code: string) =>
      metricSum(samples, "herd_gateway_requests_total", { ...WEB, code, outcome: "upstream" });
    assert.equal(count("200"), 5, "worker b's requests");
    assert.equal(count("500"), 7, "worker a's requests");
    assert.equal(metricSum(samples, "herd_gateway_request_duration_seconds_count", WEB), 12);
    assert.equal(
      metricSum(samples, "herd_gateway_request_duration_seconds_bucket", { ...WEB, le: "+Inf" }),
      12,
    );
    assert.equal(metricSum(samples, "herd_gateway_workers"), 2);
    assert.equal(metricSum(samples, "herd_gateway_metrics_stale_workers"), 0);
    assert.equal(metricSum(samples, "herd_gateway_table_version"), controlPlane.revision());

    // Worker a dies: its counts as of the last scrape stay; its replacement counts from zero on top.
    process.kill(a, "SIGKILL");
    const primary = gateway.pid;
    await until("a replacement worker", () => {
      const now = childPids(primary);
      for (const pid of now) pids.add(pid);
      return now.length === 2 && !now.includes(a);
    });
    ({ samples } = await scrape(metricsUrl));
    assert.equal(count("500"), 7, "the dead worker's counts are kept");
    assert.equal(count("200"), 5);
    await served("/", 200, 3);
    ({ samples } = await scrape(metricsUrl));
    assert.equal(count("200"), 8);
    assert.equal(count("500"), 7);
    assert.equal(metricSum(samples, "herd_gateway_request_duration_seconds_count", WEB), 15);
  });
});
