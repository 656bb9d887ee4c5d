// Alerts over the real API: rule CRUD with 400 naming the field and 409 on a
// stale revision, built-in rules listed and replaced, receivers, silences,
// and an alert from pushed points that shows in GET /alerts and as events.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { Node } from "../model/objects.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-alerts-api-"));

before(async () => {
  // Evaluation is driven by the test (server.alerts.evaluate()), not the timer.
  server = await startServer({
    // Test receivers, targets and collectors listen on 127.0.0.1.
    allowFetch: ["127.0.0.0/8"],
    dataDir: dir,
    port: 0,
    logger: silentLogger,
    alerts: { intervalMs: 3_600_000 },
    metrics: { scrapeIntervalMs: 3_600_000 },
  });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = (method: string, path: string, body?: unknown) => apiCall(server, method, path, body);

test("rules: 400 names the field (expr, for, op/threshold, unknown field); 201, 200, 409 on a stale revision; delete", async () => {
  let r = await call("PUT", "/alerts/rules/slow", { expr: "sum(rate(x[5m]) " });
  assert.equal(r.status, 400);
  assert.equal(r.body.details[0].field, "expr");
  assert.match(r.body.message, /^expr: parse error at position/);
  r = await call("PUT", "/alerts/rules/slow", { expr: "x[5m]" });
  assert.equal(r.body.details[0].field, "expr");
  r = await call("PUT", "/alerts/rules/slow", { expr: "x", for: "5 minutes" });
  assert.equal(r.status, 400);
  assert.equal(r.body.details[0].field, "for");
  r = await call("PUT", "/alerts/rules/slow", { expr: "x", op: ">" });
  assert.equal(r.body.details[0].field, "threshold");
  r = await call("PUT", "/alerts/rules/slow", { expr: "x", severity: "page" });
  assert.equal(r.body.details[0].field, "severity");
  assert.equal(
    r.body.details[0].message,
    "Expected one of info, warning, critical (info, warning (default) or critical)",
  );
  r = await call("PUT", "/alerts/rules/slow", { expr: "x", op: "=>", threshold: 1 });
  assert.match(r.body.message, /^op: Expected one of [^(]*>=/);
  r = await call("PUT", "/alerts/rules/slow", { expr: "x", treshold: 1 });
  assert.equal(r.status, 400);
  assert.match(r.body.details[0].field, /treshold/);
  r = await call("PUT", "/alerts/rules/Bad_Name", { expr: "x" });
  assert.equal(r.status, 400);

  r = await call("PUT", "/alerts/rules/slow", {
    expr: "x",
    op: ">",
    threshold: 1,
    for: "5m",
    severity: "critical",
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const rev = r.body.revision;
  r = await call("PUT", `/alerts/rules/slow?revision=${rev}`, { expr: "x", op: ">", threshold: 2 });
  assert.equal(r.status, 200);
  r = await call("PUT", `/alerts/rules/slow?revision=${rev}`, { expr: "x", op: ">", threshold: 3 });
  assert.equal(r.status, 409);
  assert.match(r.body.message, /changed since revision/);
  r = await call("PUT", "/alerts/rules/other?revision=3", { expr: "x" });
  assert.equal(r.status, 409);
  r = await call("GET", "/alerts/rules/slow");
  assert.equal(r.body.threshold, 2);
  r = await call("DELETE", `/alerts/rules/slow?revision=${rev}`);
  assert.equal(r.status, 409);
  r = await call("DELETE", "/alerts/rules/slow");
  assert.equal(r.status, 200);
  r = await call("GET", "/alerts/rules/slow");
  assert.equal(r.status, 404);
});

test("built-in rules are listed; an API rule of the same name replaces one, deleting it brings it back", async () => {
  let r = await call("GET", "/alerts/rules");
  const names = r.body.items.map((i: { name: string; source: string }) => `${i.source}:${i.name}`);
  for (const n of [
    "instance-crash-loop",
    "health-check-failing",
    "service-failed",
    "node-lost",
    "route-error-rate",
    "latency-slo-burn",
  ])
    assert.ok(names.includes(`default:${n}`), n);
  r = await call("PUT", "/alerts/rules/node-lost", { expr: "herd_node_up", disabled: true });
  assert.equal(r.status, 201);
  assert.ok(!(await server.alerts.rules()).some((x) => x.name === "node-lost"));
  r = await call("GET", "/alerts/rules");
  assert.equal(r.body.items.find((i: { name: string }) => i.name === "node-lost").replaced, true);
  await call("DELETE", "/alerts/rules/node-lost");
  assert.ok((await server.alerts.rules()).some((x) => x.name === "node-lost" && x.source === "default"));
});

test("the OpenAPI document includes the alert routes", async () => {
  const r = await call("GET", "/openapi.json");
  assert.equal(r.status, 200);
  assert.ok(r.body.paths["/api/v1/alerts/rules/{name}"]?.put);
  assert.ok(r.body.paths["/api/v1/alerts/silences"]?.post);
});

test("receivers and silences: CRUD, 400 naming the field", async () => {
  let r = await call("PUT", "/alerts/receivers/ops", { url: "ftp://x" });
  assert.equal(r.status, 400);
  assert.equal(r.body.details[0].field, "url");
  r = await call("PUT", "/alerts/receivers/ops", {
    url: "http://127.0.0.1:1/hook",
    severities: ["critical"],
  });
  assert.equal(r.status, 201);
  r = await call("GET", "/alerts/receivers");
  assert.equal(r.body.items[0].name, "ops");
  assert.equal(r.body.items[0].delivery.delivered, 0);

  r = await call("POST", "/alerts/silences", {
    matchers: ["alertname=x", "app=~("],
    until: "2999-01-01T00:00:00Z",
  });
  assert.equal(r.status, 400);
  assert.equal(r.body.details[0].field, "matchers.1");
  r = await call("POST", "/alerts/silences", { matchers: ["alertname=x"], until: "2000-01-01T00:00:00Z" });
  assert.equal(r.body.details[0].field, "until");
  r = await call("POST", "/alerts/silences", {
    matchers: ['alertname="x"'],
    until: "2999-01-01T00:00:00Z",
    comment: "c",
  });
  assert.equal(r.status, 201);
  assert.deepEqual(r.body.matchers, [{ name: "alertname", op: "=", value: "x" }]);
  const id = r.body.id;
  r = await call("GET", "/alerts/silences");
  assert.equal(r.body.items[0].state, "active");
  r = await call("DELETE", `/alerts/silences/${id}`);
  assert.equal(r.status, 200);
  r = await call("DELETE", `/alerts/receivers/ops`);
  assert.equal(r.status, 200);
});

test("an alert from pushed points: GET /alerts shows it firing and the events say so", async () => {
  const now = Date.now();
  const w = await call("POST", "/metrics/write", {
    series: [{ metric: "queue_depth", labels: { queue: "mail" }, samples: [[now, 500]] }],
  });
  assert.equal(w.status, 200, JSON.stringify(w.body));
  let r = await call("PUT", "/alerts/rules/deep-queue", {
    expr: "queue_depth",
    op: ">",
    threshold: 100,
    annotations: { summary: "queue {{ $labels.queue }} holds {{ $value }}" },
  });
  assert.equal(r.status, 201);
  for (let i = 0; i < 100; i++) {
    await server.alerts.evaluate();
    if (server.alerts.active().some((a) => a.rule === "deep-queue")) break;
    await new Promise((res) => setTimeout(res, 20)); // the ingest queue writes on a later turn
  }
  r = await call("GET", "/alerts");
  const alert = r.body.items.find((a: { rule: string }) => a.rule === "deep-queue");
  assert.equal(alert.state, "firing");
  assert.equal(alert.value, 500);
  assert.equal(alert.annotations.summary, "queue mail holds 500");
  assert.deepEqual(alert.labels, { queue: "mail", alertname: "deep-queue", severity: "warning" });
  r = await call("GET", "/events?limit=1000");
  const ev = r.body.items.find((e: { reason: string }) => e.reason === "AlertFiring");
  assert.match(ev.message, /alert deep-queue firing \[warning\]: queue mail holds 500/);
  // …and in the log stream (herd logs -f), as an event entry.
  for (let i = 0; ; i++) {
    const logs = await call("GET", "/logs?tail=100");
    if (logs.body.items.some((e: { reason?: string }) => e.reason === "AlertFiring")) break;
    assert.ok(i < 100, "AlertFiring in the log stream");
    await new Promise((res) => setTimeout(res, 20));
  }
  const text = await (await fetch(`${server.url}/metrics`)).text();
  assert.match(text, /herd_alerts\{alertname="deep-queue",state="firing",severity="warning"\} 1/);
  await call("DELETE", "/alerts/rules/deep-queue");
  await server.alerts.evaluate();
  r = await call("GET", "/events?limit=1000");
  assert.ok(r.body.items.some((e: { reason: string }) => e.reason === "AlertResolved"));
});

test("/metrics exports the service gauges and herd_node_up for the built-in rules", async () => {
  // Four failures in a row, one of them a failed health check; herd gave up.
  await server.store.put("service", "default/shop/web", {
    tenant: "default",
    app: "shop",
    name: "web",
    crashes: 4,
    unhealthy: 1,
    state: "failed",
  } as never);
  await server.store.put("node", "n1", {
    name: "n1",
    address: "127.0.0.1",
    labels: {},
    capacity: { cpu: 1, memory: 1e9 },
    allocatable: { cpu: 1, memory: 1e9 },
    state: "lost",
    lastHeartbeat: new Date().toISOString(),
    registeredAt: new Date().toISOString(),
    agentVersion: "t",
    isolation: { cgroups: "none" },
    schedulable: true,
  } satisfies Node);
  const text = await (await fetch(`${server.url}/metrics`)).text();
  assert.match(text, /herd_service_crashes\{tenant="default",app="shop",service="web"\} 3/);
  assert.match(text, /herd_service_unhealthy\{tenant="default",app="shop",service="web"\} 1/);
  assert.match(text, /herd_service_failed\{tenant="default",app="shop",service="web"\} 1/);
  assert.match(text, /herd_node_up\{node="n1"\} 0/);
  assert.match(text, /# TYPE herd_alerts gauge/);
  await server.store.delete("service", "default/shop/web");
  await server.store.delete("node", "n1");
});
