import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { BUILT_IN_RULES } from "../model/remediation.ts";
import { type RecordedRequest, runCli, sendJson, startTestApi, type TestApi } from "./test-api.ts";

const NOW = Date.parse("2026-01-01T12:00:00Z");
let api: TestApi;
let respond: (req: RecordedRequest) => [number, unknown];
const dir = mkdtempSync(join(tmpdir(), "herd-remediate-cli-"));

before(async () => {
  api = await startTestApi((req, res) => {
    const [status, body] = respond(req);
    sendJson(res, status, body);
  });
});
after(() => {
  api.close();
  rmSync(dir, { recursive: true, force: true });
});

async function run(argv: string[]) {
  const result = await runCli(argv, { server: api.url, token: "tok", now: NOW });
  const last = api.requests.at(-1);
  return { ...result, last, body: last?.body.length ? JSON.parse(last.body.toString()) : undefined };
}

const view = {
  tenant: "default",
  app: "shop",
  rules: BUILT_IN_RULES,
  builtIn: true,
  dryRun: false,
  paused: false,
  budgetPerHour: 6,
  releaseWindowS: 600,
  outcomeAfterS: 60,
  budget: { used: 1, limit: 6 },
  throttles: [],
  updatedAt: new Date(NOW).toISOString(),
  decisions: [
    {
      id: "d1",
      at: new Date(NOW - 90_000).toISOString(),
      rule: "errors",
      symptom: "error-rate",
      service: "web",
      action: "rollback",
      target: "v2 → v1",
      reason: "v2 is recent and the error-rate sits on its instances: roll back to v1",
      evidence: ["web: 50% of 200 requests failed over 10 s (threshold 10%)", "v2 released 40 s ago"],
      dryRun: false,
      applied: "applied",
      checkAt: new Date(NOW - 30_000).toISOString(),
      outcome: "cleared",
    },
  ],
};

test("herd remediate shows the switches, the rules and the decisions, with evidence on demand", async () => {
  respond = () => [200, view];
  const r = await run(["remediate", "--app", "shop", "--evidence"]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.last?.method, "GET");
  assert.match(r.last?.url ?? "", /^\/api\/v1\/apps\/shop\/remediation/);
  assert.match(r.out, /Remediation of shop: on/);
  assert.match(r.out, /Budget: 1 of 6 changes in the last hour/);
  assert.match(
    r.out,
    /errors\s+error-rate\s+all\s+0\.1\s+10s\s+rollback,replace,restart,cordon,degrade\s+on/,
  );
  assert.match(r.out, /1m ago\s+errors\s+web\s+rollback\s+v2 → v1\s+applied\s+cleared/);
  assert.match(r.out, /d1 errors → rollback v2 → v1: v2 is recent/);
  assert.match(r.out, / {2}v2 released 40 s ago/);
});

test("herd remediate lists the services degraded to their fallbacks", async () => {
  const since = new Date(NOW - 90_000).toISOString();
  respond = () => [200, { ...view, degraded: [{ service: "front", dependencies: ["shop/deps"], since }] }];
  const r = await run(["remediate", "--app", "shop"]);
  assert.equal(r.code, 0, r.err);
  assert.match(
    r.out,
    /Degraded \(routes answer their fallback\):\n {2}front: its calls to shop\/deps failed; since 1m ago/,
  );
});

test("pause, resume, dry run, budget and rules are sent as the API wants them", async () => {
  respond = () => [200, { ...view, paused: true }];
  let r = await run(["remediate", "pause", "--app", "shop"]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.last?.method, "POST");
  assert.match(r.last?.url ?? "", /\/apps\/shop\/remediation\/pause/);
  assert.match(r.out, /paused: no decisions until herd remediate resume/);

  respond = () => [200, { ...view, dryRun: true }];
  r = await run(["remediate", "--dry-run", "--app", "shop"]);
  assert.equal(r.last?.method, "PUT");
  assert.deepEqual(r.body, { dryRun: true });
  assert.match(r.out, /Remediation of shop: dry run/);
  r = await run(["remediate", "--no-dry-run", "--budget", "3", "--app", "shop"]);
  assert.deepEqual(r.body, { dryRun: false, budgetPerHour: 3 });

  const file = join(dir, "rules.yaml");
  writeFileSync(file, "- name: only-errors\n  symptom: error-rate\n  actions: [rollback]\n  dryRun: true\n");
  r = await run(["remediate", "rules", "set", file, "--app", "shop"]);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(r.body, {
    rules: [{ name: "only-errors", symptom: "error-rate", actions: ["rollback"], dryRun: true }],
  });
  r = await run(["remediate", "rules", "reset", "--app", "shop"]);
  assert.deepEqual(r.body, { builtIn: true });

  const bad = await run(["remediate", "--budget", "lots", "--app", "shop"]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--budget: lots is not a whole number/);
  const unknown = await run(["remediate", "explode", "--app", "shop"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown remediate action: explode/);
});
