// The remediation policy through the real API: defaults, validation naming the
// field, pause/resume, who may read and who may change it.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { App } from "../model/objects.ts";
import { createTestTokens, type TestTokens } from "./principals-testing.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
let tokens: TestTokens;
const dir = mkdtempSync(join(tmpdir(), "herd-remediation-api-"));

before(async () => {
  server = await startServer({
    dataDir: dir,
    port: 0,
    logger: silentLogger,
    remediation: { enabled: false },
  });
  tokens = await createTestTokens(server.url, server.adminToken);
  const app: App = {
    tenant: "a",
    name: "shop",
    createdAt: new Date().toISOString(),
    release: 1,
    latestVersion: 1,
  };
  await server.store.put("app", "a/shop", app);
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = (token: string, method: string, path: string, body?: unknown) =>
  apiCall(server, method, path, body, { token });

test("an app without a policy shows the built-in rules, on, with the default budget", async () => {
  const r = await call(tokens.viewerA, "GET", "/apps/shop/remediation");
  assert.equal(r.status, 200);
  assert.equal(r.body.builtIn, true);
  assert.equal(r.body.paused, false);
  assert.equal(r.body.dryRun, false);
  assert.deepEqual(
    r.body.rules.map((x: { name: string }) => x.name),
    ["errors", "slow", "saturated", "crash-loop"],
  );
  assert.deepEqual(r.body.budget, { used: 0, limit: 6 });
  assert.deepEqual(r.body.decisions, []);
  assert.equal((await call(tokens.viewerA, "GET", "/apps/nope/remediation")).status, 404);
});

test("bad bodies are refused naming the field", async () => {
  const bad = async (body: unknown, field: RegExp) => {
    const r = await call(tokens.deployerA, "PUT", "/apps/shop/remediation", body);
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.ok(
      r.body.details?.some((d: { field: string }) => field.test(d.field)) || field.test(r.body.message),
      JSON.stringify(r.body),
    );
  };
  await bad({ rules: [{ name: "x", symptom: "fever", actions: ["rollback"] }] }, /rules\.0\.symptom/);
  await bad({ rules: [{ name: "x", symptom: "error-rate", actions: ["reboot"] }] }, /rules\.0\.actions/);
  await bad({ rules: [{ name: "x", symptom: "error-rate", actions: [] }] }, /rules\.0\.actions/);
  await bad({ rules: [{ name: "x", symptom: "alert", actions: ["rollback"] }] }, /rules\.0\.alert/);
  await bad(
    {
      rules: [
        { name: "x", symptom: "error-rate", actions: ["rollback"] },
        { name: "x", symptom: "latency", actions: ["replace"] },
      ],
    },
    /rules\.1\.name/,
  );
  await bad({ budgetPerHour: -1 }, /budgetPerHour/);
  await bad({ dryRun: "yes" }, /dryRun/);
  await bad({ colour: "red" }, /colour|root/);
  await bad({}, /root/);
});

test("rules, dry run, pause and resume: a deployer changes them, a viewer only reads", async () => {
  const rules = [
    { name: "only-errors", symptom: "error-rate", threshold: 0.2, actions: ["rollback"], dryRun: true },
  ];
  assert.equal((await call(tokens.viewerA, "PUT", "/apps/shop/remediation", { dryRun: true })).status, 403);
  assert.equal((await call(tokens.viewerA, "POST", "/apps/shop/remediation/pause")).status, 403);
  const set = await call(tokens.deployerA, "PUT", "/apps/shop/remediation", {
    rules,
    dryRun: true,
    budgetPerHour: 2,
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  assert.equal(set.body.builtIn, false);
  assert.deepEqual(set.body.rules, rules);
  assert.equal(set.body.dryRun, true);
  assert.deepEqual(set.body.budget, { used: 0, limit: 2 });
  const paused = await call(tokens.deployerA, "POST", "/apps/shop/remediation/pause");
  assert.equal(paused.status, 200);
  assert.equal(paused.body.paused, true);
  assert.equal(paused.body.dryRun, true, "pausing keeps the rest");
  assert.equal((await call(tokens.deployerA, "POST", "/apps/shop/remediation/resume")).body.paused, false);
  const back = await call(tokens.deployerA, "PUT", "/apps/shop/remediation", { builtIn: true });
  assert.equal(back.body.builtIn, true);
  // Tenant b's viewer never sees tenant a's app.
  assert.equal((await call(tokens.ownerAViewerB, "GET", "/apps/shop/remediation?tenant=b")).status, 404);
  const events = await call(tokens.viewerA, "GET", "/events?app=shop");
  const reasons = (events.body.items as { reason: string; message: string }[])
    .filter((e) => e.reason === "RemediationPolicyChanged")
    .map((e) => e.message);
  assert.ok(reasons.includes("remediation paused for shop"), JSON.stringify(reasons));
});
