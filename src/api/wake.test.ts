// Scale to zero, the control plane's routes over a real socket: the wake route (a gateway's
// credential; only services with autoscale min 0; 0 → max(1, min) once, event Woken) and the
// agent's wait (its own node only; returns when an instance is placed there).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { testInstance, testService } from "../gateway/testing.ts";
import type { AutoscaleSpec } from "../model/manifest.ts";
import type { Event, Service } from "../model/objects.ts";
import { createTestTokens, type TestTokens } from "./principals-testing.ts";
import { apiCall } from "./testing.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-wake-"));
let server: RunningServer;
let tokens: TestTokens;

const AUTOSCALE: AutoscaleSpec = {
  min: 0,
  max: 2,
  target: { metric: "rps", value: 100 },
  scaleDownDelayMs: 60_000,
  maxStep: 2,
  idleAfterMs: 300_000,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
};

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  tokens = await createTestTokens(server.url, server.adminToken);
  await server.store.put("app", "a/shop", {
    tenant: "a",
    name: "shop",
    createdAt: "2026-01-01T00:00:00Z",
    release: 1,
    latestVersion: 1,
  });
  const idle: Service = { ...testService("a", "shop", "web", []), instances: 0 };
  idle.spec.autoscale = AUTOSCALE;
  await server.store.put("service", "a/shop/web", idle);
  await server.store.put("service", "a/shop/plain", {
    ...testService("a", "shop", "plain", []),
    instances: 0,
  });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test("a gateway wakes a service scaled to zero once; other callers and other services are refused", async () => {
  const wake = (path: string, token: string) => apiCall(server, "POST", path, undefined, { token });
  assert.equal((await wake("/apps/shop/services/web/wake?tenant=a", tokens.deployerA)).status, 403);
  assert.equal((await wake("/apps/shop/services/web/wake?tenant=a", tokens.agentN1)).status, 403);
  const unknown = await wake("/apps/shop/services/nope/wake?tenant=a", tokens.gateway);
  assert.equal(unknown.status, 404);
  assert.match(unknown.body.message, /no service nope in tenant a/);
  const bad = await wake("/apps/shop/services/Web!/wake?tenant=a", tokens.gateway);
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /svc/);
  const plain = await wake("/apps/shop/services/plain/wake?tenant=a", tokens.gateway);
  assert.equal(plain.status, 409);
  assert.match(plain.body.message, /does not scale to zero/);

  const woken = await wake("/apps/shop/services/web/wake?tenant=a", tokens.gateway);
  assert.equal(woken.status, 200, JSON.stringify(woken.body));
  assert.deepEqual(woken.body, { service: "a/shop/web", instances: 1, woken: true });
  const stored = (await server.store.get<Service>("service", "a/shop/web"))?.value;
  assert.equal(stored?.instances, 1);
  const again = await wake("/apps/shop/services/web/wake?tenant=a", tokens.gateway);
  assert.deepEqual(
    again.body,
    { service: "a/shop/web", instances: 1, woken: false },
    "a no-op while it has one",
  );
  const events = (await apiCall(server, "GET", "/events?tenant=a&app=shop&limit=100")).body.items as Event[];
  assert.equal(events.filter((e) => e.reason === "Woken").length, 1);
});

test("an agent's wait: its own node only; it returns when an instance is placed there", async () => {
  const wait = (path: string, token: string) => apiCall(server, "GET", path, undefined, { token });
  assert.equal((await wait("/nodes/n2/wait", tokens.agentN1)).status, 403, "another node's agent");
  assert.equal((await wait("/nodes/n1/wait?since=-1", tokens.agentN1)).status, 400);
  const first = await wait("/nodes/n1/wait", tokens.agentN1);
  assert.equal(first.status, 200);
  const since = first.body.revision as number;
  const started = Date.now();
  const waiting = wait(`/nodes/n1/wait?since=${since}&timeoutMs=10000`, tokens.agentN1);
  await new Promise((r) => setTimeout(r, 100));
  await server.store.put("instance", "a-web-1", {
    ...testInstance("a-web-1", { tenant: "a", app: "shop", service: "web" }, "n1", undefined, "provisioning"),
  });
  const changed = await waiting;
  assert.equal(changed.status, 200);
  assert.ok(changed.body.revision > since);
  assert.ok(Date.now() - started < 5000, "returned on the change, not at its timeout");
  // A node nothing changes on (the controllers keep working on n1's instance): the same revision at the timeout.
  const still = (await wait("/nodes/idle/wait", server.adminToken)).body.revision as number;
  const quiet = await wait(`/nodes/idle/wait?since=${still}&timeoutMs=100`, server.adminToken);
  assert.equal(quiet.status, 200);
  assert.equal(quiet.body.revision, still);
});
