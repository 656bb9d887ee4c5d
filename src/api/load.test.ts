// Live load through the real API: a gateway's PUT /gateways/:id/load (validation,
// bounds) and GET /apps/:app/load (figures per service and instance, window).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { LATENCY_BUCKETS_MS, type LoadReport, type ServiceLoad } from "../model/load.ts";
import type { App, Service } from "../model/objects.ts";
import { MAX_REPORTED_SERVICES } from "./routes/load.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-load-"));
const call = (method: string, path: string, body?: unknown) => apiCall(server, method, path, body);

const histogram = (n: number, bucket: number) => {
  const h = new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);
  h[bucket] = n;
  return h;
};

function serviceLoad(over: Partial<ServiceLoad> = {}): ServiceLoad {
  return {
    service: "default/shop/web",
    requests: 50,
    errors: 5,
    shed: 1,
    inflight: 2,
    waiting: 0,
    lastRequestAt: Date.now() - 10,
    latency: histogram(49, 3), // (25, 50] ms
    instances: [
      { instance: "web-1", release: 4, requests: 30, errors: 0, inflight: 1, latency: histogram(30, 3) },
      { instance: "web-2", release: 4, requests: 19, errors: 5, inflight: 1, latency: histogram(19, 3) },
    ],
    ...over,
  };
}

const report = (services: ServiceLoad[] = [serviceLoad()]): LoadReport => ({
  at: Date.now(),
  intervalMs: 1000,
  services,
});

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  const app: App = {
    tenant: "default",
    name: "shop",
    createdAt: new Date().toISOString(),
    release: 1,
    latestVersion: 1,
  };
  await server.store.put("app", "default/shop", app);
  for (const name of ["web", "worker"]) {
    const svc: Service = {
      tenant: "default",
      app: "shop",
      name,
      release: 1,
      spec: {
        command: "true",
        instances: 0,
        resources: { cpu: 0.1, memory: 1e6 },
        health: { kind: "tcp", intervalMs: 1000, timeoutMs: 1000, failures: 3, startupMs: 1000 },
        mode: "cattle",
        env: {},
        routes: [],
      },
      instances: 0,
      state: "running",
      message: "",
      crashes: 0,
    };
    await server.store.put("service", `default/shop/${name}`, svc);
  }
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test("a report is refused with the field named: wrong histogram, unknown field, bad key, too many services", async () => {
  const cases: Array<[unknown, string]> = [
    [{ ...report(), services: [serviceLoad({ latency: [1, 2] })] }, "services.0.latency"],
    [{ ...report(), extra: 1 }, "extra"],
    [{ ...report(), services: [serviceLoad({ service: "no-slashes" })] }, "services.0.service"],
    [{ ...report(), intervalMs: 0 }, "intervalMs"],
    [{ ...report(), services: [serviceLoad({ requests: -1 })] }, "services.0.requests"],
    [{ ...report(), services: [serviceLoad({ requests: 1, errors: 2 })] }, "services.0.errors"],
    [
      { ...report(), services: [serviceLoad({ instances: [{ instance: "", release: 1 } as never] })] },
      "services.0.instances.0",
    ],
    [report(new Array(MAX_REPORTED_SERVICES + 1).fill(serviceLoad({ instances: [] }))), "services"],
  ];
  for (const [body, field] of cases) {
    const res = await call("PUT", "/gateways/gw-1/load", body);
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.code, "invalid");
    assert.ok(res.body.message.includes(field), `${field} in ${res.body.message}`);
  }
  assert.equal((await call("PUT", "/gateways/bad id/load", report())).status, 400);
});

test("an app's load: per service and per instance, from two gateways, over a window", async () => {
  // Nothing reported yet: the services are listed without figures.
  const empty = await call("GET", "/apps/shop/load");
  assert.equal(empty.status, 200);
  assert.deepEqual(
    empty.body.services.map((s: { service: string; figures: unknown }) => [s.service, s.figures]),
    [
      ["web", null],
      ["worker", null],
    ],
  );
  assert.equal((await call("PUT", "/gateways/gw-1/load", report())).status, 204);
  assert.equal((await call("PUT", "/gateways/gw-1.w1/load", report())).status, 204);
  const res = await call("GET", "/apps/shop/load?window=10s");
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.windowMs, 10_000);
  const web = res.body.services.find((s: { service: string }) => s.service === "web");
  assert.equal(web.figures.requests, 100);
  assert.equal(web.figures.errors, 10);
  assert.equal(web.figures.shed, 2);
  assert.equal(web.figures.errorRate, 0.1);
  assert.ok(web.figures.p99Ms > 25 && web.figures.p99Ms <= 50, String(web.figures.p99Ms));
  assert.ok(web.figures.coveredMs > 0 && web.figures.coveredMs <= 10_000);
  assert.ok(web.figures.rps > 0);
  assert.deepEqual(
    web.instances.map((i: { instance: string; release: number; requests: number; errors: number }) => [
      i.instance,
      i.release,
      i.requests,
      i.errors,
    ]),
    [
      ["web-1", 4, 60, 0],
      ["web-2", 4, 38, 10],
    ],
  );
  assert.equal(res.body.services.find((s: { service: string }) => s.service === "worker").figures, null);
});

test("GET /apps/:app/load: a bad window and a missing app", async () => {
  for (const w of ["1h", "0s", "11m", "soon"]) {
    const res = await call("GET", `/apps/shop/load?window=${w}`);
    assert.equal(res.status, 400, w);
    assert.ok(res.body.message.includes("window"), res.body.message);
  }
  assert.equal((await call("GET", "/apps/nope/load")).status, 404);
});
