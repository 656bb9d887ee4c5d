// The choice of action checked as data: a view, the live figures, a finding → the plan.

import assert from "node:assert/strict";
import { test } from "node:test";
import { BUILT_IN_RULES, type RemediationRule } from "../../model/remediation.ts";
import { decide } from "./decide.ts";
import { detect } from "./symptoms.ts";
import { FakeLoad, viewOf } from "./testing.ts";
import type { AppView } from "./view.ts";

const WINDOW = 600_000;
const rule = (name: string): RemediationRule => BUILT_IN_RULES.find((r) => r.name === name)!;
const WEB = "t/shop/web";

/** The first finding of `r` on the view, decided. */
function planFor(r: RemediationRule, view: AppView) {
  const [finding] = detect(r, view);
  assert.ok(finding, `rule ${r.name} finds nothing`);
  return decide(finding, view, WINDOW);
}

test("errors on a release 60 s old, all on its instances → roll back to the one before", () => {
  const load = new FakeLoad().setService(WEB, { requests: 200, errors: 100 }).setInstances(WEB, [
    { instance: "a", release: 2, requests: 100, errors: 52 },
    { instance: "b", release: 2, requests: 100, errors: 48 },
  ]);
  const plan = planFor(rule("errors"), viewOf(load, { services: [{ name: "web" }] }));
  assert.equal(plan.action, "rollback");
  assert.deepEqual(plan.change, { kind: "rollback", from: 2, to: 1 });
  assert.equal(plan.target, "v2 → v1");
  assert.match(plan.evidence.join("\n"), /web: 50% of 200 requests failed over 10 s/);
  assert.match(plan.evidence.join("\n"), /v2 released 60 s ago/);
  assert.match(plan.evidence.join("\n"), /v2: 2 instance\(s\), 100 of 200 requests failed \(50%\), 2 bad/);
  assert.match(plan.evidence.join("\n"), / {2}a \(v2\): 52 of 100 failed\n {2}b \(v2\): 48 of 100 failed/);
});

test("errors below the threshold or on too few requests are no finding", () => {
  const load = new FakeLoad().setService(WEB, { requests: 200, errors: 19 });
  assert.equal(detect(rule("errors"), viewOf(load, { services: [{ name: "web" }] })).length, 0);
  load.setService(WEB, { requests: 19, errors: 19 });
  assert.equal(detect(rule("errors"), viewOf(load, { services: [{ name: "web" }] })).length, 0);
});

test("errors mostly on the old release's instances: no rollback (the release is not the cause)", () => {
  const load = new FakeLoad().setService(WEB, { requests: 300, errors: 60 }).setInstances(WEB, [
    { instance: "a", release: 1, requests: 100, errors: 50 },
    { instance: "b", release: 2, requests: 100, errors: 10 },
    { instance: "c", release: 2, requests: 100, errors: 0 },
  ]);
  const view = viewOf(load, {
    services: [{ name: "web", instances: 3, running: 3 }],
    instances: [
      { id: "a", service: "web", release: 1 },
      { id: "b", service: "web" },
      { id: "c", service: "web" },
    ],
  });
  const plan = planFor({ ...rule("errors"), actions: ["rollback"] }, view);
  assert.equal(plan.action, "none");
  assert.match(
    plan.evidence.join("\n"),
    /not rollback: only 16\.7% of the bad figures are on v2's instances \(needs 80%\)/,
  );
});

test("an old release: one instance far worse than its peers is replaced", () => {
  const now = 1_000_000_000;
  const load = new FakeLoad().setService(WEB, { requests: 300, errors: 40 }).setInstances(WEB, [
    { instance: "a", release: 2, requests: 100, errors: 40 },
    { instance: "b", release: 2, requests: 100, errors: 0 },
    { instance: "c", release: 2, requests: 100, errors: 1 },
  ]);
  const view = viewOf(load, {
    now,
    releases: [
      { version: 1, createdAt: now - 7_200_000 },
      { version: 2, createdAt: now - 3_600_000 },
    ],
    services: [{ name: "web", instances: 3, running: 3 }],
    instances: [
      { id: "a", service: "web", node: "n2" },
      { id: "b", service: "web" },
      { id: "c", service: "web" },
    ],
  });
  const plan = planFor(rule("errors"), view);
  assert.equal(plan.action, "replace");
  assert.deepEqual(plan.change, { kind: "replace", service: "web", instance: "a" });
  assert.match(plan.evidence.join("\n"), /a on n2: 40% failed over 100 requests/);
  assert.match(plan.evidence.join("\n"), /peers' median: 0\.5% failed \(2 instances\)/);
  // Every instance as bad: no outlier, nothing to replace.
  load.setInstances(WEB, [
    { instance: "a", release: 2, requests: 100, errors: 40 },
    { instance: "b", release: 2, requests: 100, errors: 35 },
    { instance: "c", release: 2, requests: 100, errors: 30 },
  ]);
  const none = planFor(rule("errors"), view);
  assert.equal(none.action, "none");
  assert.match(none.evidence.join("\n"), /not replace: its peers are bad too/);
  assert.match(none.evidence.join("\n"), /not rollback: v2 is 3600 s old \(window 600 s\)/);
});

test("a pet far worse than its peers is restarted in place, never replaced", () => {
  const now = 1_000_000_000;
  const load = new FakeLoad().setService(WEB, { requests: 300, errors: 40 }).setInstances(WEB, [
    { instance: "a", release: 2, requests: 100, errors: 40 },
    { instance: "b", release: 2, requests: 100, errors: 0 },
    { instance: "c", release: 2, requests: 100, errors: 0 },
  ]);
  const view = viewOf(load, {
    now,
    releases: [{ version: 2, createdAt: now - 3_600_000 }],
    services: [{ name: "web", instances: 3, running: 3 }],
    instances: [
      { id: "a", service: "web", mode: "pet" },
      { id: "b", service: "web" },
      { id: "c", service: "web" },
    ],
  });
  const plan = planFor(rule("errors"), view);
  assert.equal(plan.action, "restart");
  assert.equal(plan.target, "a");
  assert.deepEqual(plan.change, { kind: "restart", service: "web", instance: "a" });
  assert.match(plan.reason, /pet a is far worse than its 2 peers: restart it in place/);
  assert.match(plan.evidence.join("\n"), /not replace: a is a pet: it is restarted in place, never replaced/);
  assert.match(plan.evidence.join("\n"), /peers' median: 0% failed \(2 instances\)/);
  // A rule that allows replace only: nothing for a pet.
  const none = planFor({ ...rule("errors"), actions: ["replace"] }, view);
  assert.equal(none.action, "none");
  assert.match(none.evidence.join("\n"), /a is a pet/);
  // Cattle are never restarted by this action: they are replaced.
  view.instances[0].mode = "cattle";
  const cattle = planFor({ ...rule("errors"), actions: ["restart"] }, view);
  assert.equal(cattle.action, "none");
  assert.match(cattle.evidence.join("\n"), /a is cattle: it is replaced rather than restarted/);
});

test("every instance on one node bad, those elsewhere fine → cordon that node", () => {
  const now = 1_000_000_000;
  const load = new FakeLoad().setService(WEB, { requests: 400, errors: 100 }).setInstances(WEB, [
    { instance: "a", release: 2, requests: 100, errors: 50 },
    { instance: "b", release: 2, requests: 100, errors: 50 },
    { instance: "c", release: 2, requests: 100, errors: 0 },
    { instance: "d", release: 2, requests: 100, errors: 0 },
  ]);
  const view = viewOf(load, {
    now,
    releases: [{ version: 2, createdAt: now - 3_600_000 }],
    services: [{ name: "web", instances: 4, running: 4 }],
    instances: [
      { id: "a", service: "web", node: "bad" },
      { id: "b", service: "web", node: "bad" },
      { id: "c", service: "web", node: "good" },
      { id: "d", service: "web", node: "good" },
    ],
  });
  const plan = planFor(rule("errors"), view);
  assert.equal(plan.action, "cordon");
  assert.deepEqual(plan.change, { kind: "cordon", node: "bad" });
  assert.match(
    plan.evidence.join("\n"),
    /on bad: a \(running, 50% of 100 failed\), b \(running, 50% of 100 failed\)/,
  );
  // A node that stopped heartbeating is the node controller's; one already cordoned is left alone.
  view.nodes = view.nodes.map((n) => (n.name === "bad" ? { ...n, state: "not_ready" as const } : n));
  const notReady = planFor({ ...rule("errors"), actions: ["cordon"] }, view);
  assert.equal(notReady.action, "none");
  assert.match(notReady.evidence.join("\n"), /not cordon: bad is not_ready: the node controller handles it/);
  view.nodes = view.nodes.map((n) =>
    n.name === "bad" ? { ...n, state: "ready" as const, schedulable: false } : n,
  );
  assert.match(
    planFor({ ...rule("errors"), actions: ["cordon"] }, view).evidence.join("\n"),
    /bad is already cordoned/,
  );
});

test("saturation under rising load → scale out, throttling the low-criticality service meanwhile", () => {
  const load = new FakeLoad()
    // 10 s window: 60 rps, 40 in flight on 2 instances; 60 s: 20 rps.
    .setService(WEB, { requests: 600, rps: 60, inflight: 40 }, 10_000)
    .setService(WEB, { requests: 1200, rps: 20, inflight: 10 })
    .setService("t/shop/batch", { requests: 100, rps: 10, inflight: 9 });
  const view = viewOf(load, {
    services: [
      { name: "web", spec: { mode: "cattle", routes: [], criticality: "critical" } },
      { name: "batch", spec: { mode: "cattle", routes: [], criticality: "low" } },
      { name: "api", spec: { mode: "cattle", routes: [] } },
    ],
  });
  const plan = planFor(rule("saturated"), view);
  assert.equal(plan.action, "scale-out");
  // ×3 rising, capped at double: 2 → 4.
  assert.deepEqual(plan.change, {
    kind: "scale-out",
    service: "web",
    from: 2,
    to: 4,
    throttle: [{ service: "batch", concurrency: 4, previous: undefined }],
  });
  assert.match(plan.evidence.join("\n"), /web: 20 requests in flight per instance/);
  assert.match(plan.evidence.join("\n"), /web: 60 rps over 10 s against 20 over 60 s \(×3\)/);
  assert.match(plan.evidence.join("\n"), /batch \(criticality lower than web's critical\): concurrency → 4/);
});

test("saturation under steady load is not answered by more instances", () => {
  const load = new FakeLoad().setService(WEB, { requests: 600, rps: 60, inflight: 40 });
  const plan = planFor(rule("saturated"), viewOf(load, { services: [{ name: "web" }] }));
  assert.equal(plan.action, "none");
  assert.match(plan.evidence.join("\n"), /not scale-out: load is not rising .*got slower, not busier/);
  assert.match(
    plan.evidence.join("\n"),
    /not throttle: no lower-criticality service of shop to throttle for web/,
  );
});

test("an autoscaled service is left to the autoscaler; throttle alone still applies", () => {
  const load = new FakeLoad()
    .setService(WEB, { requests: 600, rps: 60, inflight: 40 }, 10_000)
    .setService(WEB, { requests: 600, rps: 10, inflight: 40 })
    .setService("t/shop/batch", { requests: 100, rps: 10, inflight: 3 });
  const autoscale = {
    min: 1,
    max: 5,
    target: { metric: "rps" as const, value: 10 },
    scaleDownDelayMs: 0,
    maxStep: 1,
    idleAfterMs: 0,
    stableWindowMs: 60_000,
    panicWindowMs: 6_000,
  };
  const view = viewOf(load, {
    services: [
      { name: "web", spec: { mode: "cattle", routes: [], autoscale } },
      { name: "batch", spec: { mode: "cattle", routes: [], criticality: "low", concurrency: 50 } },
    ],
  });
  const plan = planFor(rule("saturated"), view);
  assert.equal(plan.action, "throttle");
  assert.deepEqual(plan.change, {
    kind: "throttle",
    throttle: [{ service: "batch", concurrency: 1, previous: undefined }],
  });
  assert.match(plan.evidence.join("\n"), /not scale-out: web is autoscaled/);
});

test("a dependency failing in spans → the caller's routes answer their fallback", () => {
  const now = 1_000_000_000;
  const load = new FakeLoad().setService(WEB, { requests: 100, errors: 30 });
  const fallback = { status: 200, body: "{}", contentType: "application/json" };
  const view = viewOf(load, {
    now,
    releases: [{ version: 2, createdAt: now - 3_600_000 }],
    services: [{ name: "web", spec: { mode: "cattle", routes: [{ host: "*", path: "/", fallback }] } }],
    calls: [
      { from: "web", to: "payments", calls: 40, errors: 30, errorRate: 0.75 },
      { from: "web", to: "stock", calls: 40, errors: 0, errorRate: 0 },
    ],
  });
  const plan = planFor(rule("errors"), view);
  assert.equal(plan.action, "degrade");
  assert.deepEqual(plan.change, { kind: "degrade", service: "web", dependencies: ["payments"] });
  assert.match(plan.evidence.join("\n"), /spans web → payments: 30 of 40 calls failed \(75%\)/);
  assert.doesNotMatch(plan.evidence.join("\n"), /stock/);
  // Already switched to its fallback: nothing more to do.
  view.services[0].degraded = true;
  const again = planFor(rule("errors"), view);
  assert.equal(again.action, "none");
  assert.match(again.evidence.join("\n"), /not degrade: web's routes already answer their fallback/);
  view.services[0].degraded = undefined;
  // Without a fallback there is nothing to degrade to.
  view.services[0].spec = { mode: "cattle", routes: [{ host: "*", path: "/" }] };
  assert.equal(planFor(rule("errors"), view).action, "none");
});

test("a crash loop on a recent release → roll back; on a rollback → nothing", () => {
  const load = new FakeLoad();
  const view = viewOf(load, { services: [{ name: "web", crashes: 4, running: 0 }] });
  const plan = planFor(rule("crash-loop"), view);
  assert.equal(plan.action, "rollback");
  assert.match(plan.evidence.join("\n"), /web: 4 crashes in a row \(threshold 3\)/);
  const now = view.now;
  view.releases = [
    { version: 1, createdAt: now - 3_600_000 },
    { version: 2, createdAt: now - 120_000 },
    { version: 3, createdAt: now - 60_000, rollbackOf: 1 },
  ];
  view.appRelease = 3;
  view.services[0].release = 3;
  const again = planFor(rule("crash-loop"), view);
  assert.equal(again.action, "none");
  assert.match(again.evidence.join("\n"), /v3 is already a rollback \(of v1\)/);
});

test("a service mid-rollout is not rolled back by the engine (the deploy controller judges it)", () => {
  const load = new FakeLoad()
    .setService(WEB, { requests: 200, errors: 100 })
    .setInstances(WEB, [{ instance: "a", release: 2, requests: 100, errors: 100 }]);
  const plan = planFor(
    { ...rule("errors"), actions: ["rollback"] },
    viewOf(load, { services: [{ name: "web", state: "updating" }] }),
  );
  assert.equal(plan.action, "none");
  assert.match(plan.evidence.join("\n"), /web is updating: a deploy is in progress/);
});

test("latency: p99 over the threshold on a recent release's instances → roll back", () => {
  const load = new FakeLoad().setService(WEB, { requests: 500, p99Ms: 2400 }).setInstances(WEB, [
    { instance: "a", release: 2, requests: 250, p99Ms: 2500 },
    { instance: "b", release: 2, requests: 250, p99Ms: 2300 },
  ]);
  const plan = planFor(rule("slow"), viewOf(load, { services: [{ name: "web" }] }));
  assert.equal(plan.action, "rollback");
  assert.match(plan.evidence.join("\n"), /web: p99 2400 ms over 30 s \(threshold 1000 ms\)/);
});

test("an alert rule firing for the app is a symptom; rising load then scales the service it names", () => {
  const load = new FakeLoad()
    .setService(WEB, { requests: 300, rps: 30 }, 10_000)
    .setService(WEB, { requests: 600, rps: 10 });
  const view = viewOf(load, { services: [{ name: "web" }, { name: "api" }] });
  const r: RemediationRule = {
    name: "queue",
    symptom: "alert",
    alert: "queue-backlog",
    actions: ["scale-out"],
  };
  assert.equal(detect(r, view).length, 0, "not firing: no finding");
  view.alerts = [{ rule: "queue-backlog", service: "web", value: 1200, since: view.now - 90_000 }];
  const findings = detect(r, view);
  assert.deepEqual(
    findings.map((f) => [f.service, f.evidence[0]]),
    [["web", "alert queue-backlog firing for web since 90 s ago (value 1200)"]],
  );
  const plan = decide(findings[0], view, WINDOW);
  assert.equal(plan.action, "scale-out");
  assert.deepEqual(plan.change, { kind: "scale-out", service: "web", from: 2, to: 4, throttle: [] });
});

test("slowness that came with a surge is not put on the release: scale out rather than roll back", () => {
  const load = new FakeLoad()
    .setService(WEB, { requests: 900, rps: 30, p99Ms: 1800 }, 30_000)
    .setService(WEB, { requests: 1800, rps: 10, p99Ms: 900 })
    .setInstances(WEB, [
      { instance: "a", release: 2, requests: 450, p99Ms: 1800 },
      { instance: "b", release: 2, requests: 450, p99Ms: 1700 },
    ]);
  const plan = planFor(rule("slow"), viewOf(load, { services: [{ name: "web" }] }));
  assert.equal(plan.action, "scale-out");
  assert.match(
    plan.evidence.join("\n"),
    /not rollback: load rose ×3 .*the surge, not the release, is the likely cause/,
  );
  // The same slowness under steady load: the recent release is rolled back.
  load.setService(WEB, { requests: 5400, rps: 30, p99Ms: 1800 });
  assert.equal(planFor(rule("slow"), viewOf(load, { services: [{ name: "web" }] })).action, "rollback");
});

test("errors on a recent release are rolled back while load grows a little, not in a ×3 surge", () => {
  const instances = [
    { instance: "a", release: 2, requests: 100, errors: 50 },
    { instance: "b", release: 2, requests: 100, errors: 50 },
  ];
  const load = new FakeLoad()
    .setService(WEB, { requests: 200, errors: 100, rps: 20 }, 10_000)
    .setService(WEB, { requests: 600, errors: 100, rps: 10 })
    .setInstances(WEB, instances);
  assert.equal(planFor(rule("errors"), viewOf(load, { services: [{ name: "web" }] })).action, "rollback");
  load.setService(WEB, { requests: 600, errors: 100, rps: 6 });
  const plan = planFor(
    { ...rule("errors"), actions: ["rollback"] },
    viewOf(load, { services: [{ name: "web" }] }),
  );
  assert.equal(plan.action, "none");
  assert.match(plan.evidence.join("\n"), /not rollback: load rose ×3\.3/);
});

test("saturation by CPU: instances near what they asked for, under rising load → scale out", () => {
  const load = new FakeLoad()
    .setService(WEB, { requests: 300, rps: 30, inflight: 2 }, 10_000)
    .setService(WEB, { requests: 600, rps: 10, inflight: 1 });
  const spec = { mode: "cattle" as const, routes: [], resources: { cpu: 0.5, memory: 1 } };
  const view = viewOf(load, {
    services: [{ name: "web", spec }],
    instances: [
      { id: "a", service: "web", cpuCores: 0.48 },
      { id: "b", service: "web", cpuCores: 0.46 },
    ],
  });
  const plan = planFor(rule("saturated"), view);
  assert.equal(plan.action, "scale-out");
  assert.match(plan.evidence[0], /^web: CPU 94% of its 0\.5 core\(s\) per instance over 2 running/);
  // Half of it: no symptom (in flight is low too).
  view.instances = view.instances.map((i) => ({ ...i, cpuCores: 0.2 }));
  assert.equal(detect(rule("saturated"), view).length, 0);
});
