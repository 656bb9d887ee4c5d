// The remediation engine against real processes: `herd up` (control plane,
// gateway reporting live figures each second, agent), an app deployed twice,
// steady traffic. A release that fails half its requests is rolled back by the
// engine on its own, the failed requests counted; a dry-run rule decides the
// same thing and changes nothing.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { App, Event, Release, Service } from "../../src/model/objects.ts";
import { writeFlakyApp, writeFlakyManifest } from "./flaky-app.ts";
import {
  cleanupHerd,
  type Herd,
  quietTraffic,
  served,
  sleep,
  startHerd,
  steadyTraffic,
  waitFor,
} from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-remediation-"));
const dir = join(work, "flaky");
const HOST = "flaky.localhost";

before(async () => {
  herd = await startHerd();
  writeFlakyApp(work);
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

const appNow = async () => (await herd.api<{ app: App }>("GET", "/apps/flaky")).body.app;
const events = async (reason: string) =>
  (await herd.api<{ items: Event[] }>("GET", "/events?app=flaky&limit=500")).body.items.filter(
    (e) => e.reason === reason,
  );

async function deploy(bad: boolean): Promise<void> {
  writeFlakyManifest(dir, HOST, bad);
  const r = await herd.cli(["deploy", dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
}

test("a release failing half its requests under traffic is rolled back by the engine within 30 s", async () => {
  await deploy(false);
  // The traffic below must see no failure before the bad release: it starts once the gateway serves v1.
  await served(herd, HOST, "release 1");
  // Outcomes checked 10 s after each decision (default 60 s), to see one in the test.
  const set = await herd.api("PUT", "/apps/flaky/remediation", { outcomeAfterS: 10 });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  const traffic = steadyTraffic(herd.gatewayUrl, HOST, { connections: 4, rate: 40, maxSeconds: 120 });
  try {
    // Steady traffic for a while first: the engine tells a bad release from a surge by the last minute's rate.
    await sleep(15_000);
    assert.equal(traffic.counts().failed, 0, JSON.stringify(traffic.counts().failures));
    await deploy(true);
    const badAt = traffic.elapsed();
    assert.equal((await appNow()).release, 2);
    const decided = await waitFor(
      "the engine's rollback decision",
      async () => (await events("Remediation")).find((e) => /rollback v2 → v1/.test(e.message)),
      45_000,
    );
    const rolledBack = await waitFor(
      "v3 (the content of v1) serving",
      async () => {
        const a = await appNow();
        return a.release === 3 ? a : undefined;
      },
      45_000,
    );
    const servedAt = traffic.elapsed();
    const seconds = (servedAt - badAt) / 1000;
    assert.ok(rolledBack);
    const releases = (await herd.api<{ items: Release[] }>("GET", "/apps/flaky/releases")).body.items;
    assert.equal(releases.find((r) => r.version === 3)?.rollbackOf, 1);
    assert.match(
      decided.message,
      /^errors: rollback v2 → v1: v2 is recent and the error-rate sits on its instances/,
    );
    assert.ok(
      decided.details?.some((l) => /^web: \d+(\.\d+)?% of \d+ requests failed over 10 s/.test(l)),
      String(decided.details),
    );
    assert.ok(
      decided.details?.some((l) => /^v2: \d+ instance\(s\), \d+ of \d+ requests failed/.test(l)),
      String(decided.details),
    );
    // Once v1's content serves, requests succeed again: the gateways drop v2's draining instances
    // from their tables a moment after the store says v3 serves, so wait for a quiet second (not a
    // fixed time, which a loaded machine may outlast), then no failure over the next 3 s.
    await quietTraffic(traffic, "after the rollback");
    const before = traffic.counts();
    await sleep(3000);
    const after = traffic.counts();
    const counts = await traffic.stop();
    assert.equal(after.failed - before.failed, 0, "no failures once rolled back");
    console.log(
      `bad release → rolled back and serving in ${seconds.toFixed(1)} s; ${counts.failed} of ${counts.total} requests failed (${JSON.stringify(counts.failures)})`,
    );
    assert.ok(seconds <= 30, `rolled back in ${seconds.toFixed(1)} s, more than 30 s`);
    assert.ok(counts.failed > 0, "the bad release failed requests (or the test proves nothing)");
    // The outcome, 10 s after the decision: the errors cleared.
    const outcome = await waitFor(
      "the decision's outcome",
      async () => (await events("RemediationOutcome"))[0],
      30_000,
    );
    assert.match(outcome.message, /errors: rollback v2 → v1: the error-rate cleared/);
    const status = await herd.cli(["remediate", "--app", "flaky", "--evidence"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /errors\s+web\s+rollback\s+v2 → v1\s+applied\s+cleared/);
  } finally {
    await traffic.stop();
  }
});

test("a dry-run rule decides the rollback and changes nothing", async () => {
  const rules = join(work, "rules.yaml");
  writeFileSync(
    rules,
    "- name: try\n  symptom: error-rate\n  actions: [rollback]\n  dryRun: true\n  cooldownS: 5\n",
  );
  const set = await herd.cli(["remediate", "rules", "set", rules, "--app", "flaky"]);
  assert.equal(set.code, 0, set.stdout + set.stderr);
  const traffic = steadyTraffic(herd.gatewayUrl, HOST, { connections: 4, rate: 40, maxSeconds: 90 });
  try {
    await deploy(true);
    // v4's share of failures is counted from here: the requests v3 answered during the deploy are not v4's.
    const atV4 = traffic.counts();
    const current = (await appNow()).release!;
    assert.equal(current, 4);
    const decided = await waitFor(
      "the dry-run decision",
      async () => (await events("Remediation")).find((e) => e.message.startsWith("try: rollback")),
      45_000,
    );
    assert.match(decided.message, /^try: rollback v4 → v3 \(dry run: nothing changed\)/);
    await sleep(5000);
    assert.equal((await appNow()).release, 4, "nothing rolled back");
    const counts = traffic.counts();
    const failed = counts.failed - atV4.failed;
    const total = counts.total - atV4.total;
    assert.ok(
      failed > total / 4,
      `v4 still fails requests: ${failed} of ${total} since v4 (${JSON.stringify(counts)})`,
    );
  } finally {
    await traffic.stop();
  }
});

test("throttle while scaling: a saturated critical service is scaled out and a low one throttled until it serves", async () => {
  const busy = join(work, "busy");
  mkdirSync(busy);
  writeFileSync(
    join(busy, "package.json"),
    JSON.stringify({ name: "busy", private: true, type: "module", scripts: { start: "node server.js" } }),
  );
  // Every answer takes 100 ms: closed-loop clients keep requests in flight.
  writeFileSync(
    join(busy, "server.js"),
    [
      'import { createServer } from "node:http";',
      "createServer((req, res) => {",
      '  if (req.url === "/health") return res.end("ok");',
      '  setTimeout(() => res.end("ok"), 100);',
      "}).listen(Number(process.env.PORT));",
    ].join("\n"),
  );
  const service = (name: string, criticality: string) => [
    `  ${name}:`,
    "    command: node server.js",
    "    instances: 1",
    "    resources: { cpu: 0.1, memory: 32Mi }",
    "    health: { path: /health }",
    `    criticality: ${criticality}`,
    `    routes: [{ host: ${name}.busy.localhost }]`,
  ];
  writeFileSync(
    join(busy, "herd.yaml"),
    ["app: busy", "services:", ...service("api", "critical"), ...service("batch", "low"), ""].join("\n"),
  );
  const d = await herd.cli(["deploy", busy]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const set = await herd.api("PUT", "/apps/busy/remediation", {
    rules: [
      {
        name: "saturated",
        symptom: "saturation",
        threshold: 4,
        windowS: 5,
        actions: ["scale-out", "throttle"],
      },
    ],
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  const svc = async (name: string) =>
    (await herd.api<{ services: Service[] }>("GET", "/apps/busy")).body.services.find(
      (s) => s.name === name,
    )!;
  // batch is busy first; then api's load steps up (the engine sees api's queue within a second or two).
  const batch = steadyTraffic(herd.gatewayUrl, "batch.busy.localhost", { connections: 8, maxSeconds: 90 });
  await sleep(2000);
  const api = steadyTraffic(herd.gatewayUrl, "api.busy.localhost", { connections: 12, maxSeconds: 90 });
  try {
    const decided = await waitFor(
      "the scale-out decision",
      async () =>
        (await herd.api<{ items: Event[] }>("GET", "/events?app=busy&limit=500")).body.items.find(
          (e) => e.reason === "Remediation" && /scale-out api 1 → 2/.test(e.message),
        ),
      45_000,
    ).catch(async (err: Error) => {
      // Say what the engine saw and decided instead.
      const events = (await herd.api<{ items: Event[] }>("GET", "/events?app=busy&limit=500")).body.items;
      const load = (await herd.api("GET", "/apps/busy/load?window=10s")).body;
      const policy = (await herd.api("GET", "/apps/busy/remediation")).body;
      throw new Error(
        `${err.message}\nevents: ${events.map((e) => `${e.reason}: ${e.message}`).join("\n  ")}\nload: ${JSON.stringify(load)}\nremediation: ${JSON.stringify(policy).slice(0, 3000)}`,
      );
    });
    assert.match(decided.message, /throttling batch until they serve/);
    assert.ok(
      // Saturation shows as requests in flight per instance or as CPU over the share asked for, whichever the figures reach first.
      decided.details?.some((l) => /^api: (.* requests in flight per instance|CPU \d+% of its)/.test(l)),
      String(decided.details),
    );
    assert.equal((await svc("api")).instances, 2);
    const throttled = (await svc("batch")).traffic?.concurrency;
    assert.ok(
      typeof throttled === "number" && throttled >= 1 && throttled < 8,
      `batch concurrency ${throttled}`,
    );
  } finally {
    await api.stop();
    await batch.stop();
  }
  // The load is gone and api runs its 2 instances: batch's concurrency is back to herd.yaml's.
  await waitFor(
    "the throttle restored",
    async () => (await svc("api")).instances === 2 && (await svc("batch")).traffic === undefined,
    45_000,
  );
  // The service is written first, the policy and the event a moment later (remediation/engine.ts).
  const restored = await waitFor("a RemediationRestored event", async () =>
    (await herd.api<{ items: Event[] }>("GET", "/events?app=busy&limit=500")).body.items.find(
      (e) => e.reason === "RemediationRestored",
    ),
  );
  assert.match(restored.message, /batch's concurrency is back to herd.yaml's: api serves again/);
});
