// The choice of action checked as data: a view, the live figures, a finding → the plan.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ManualClock } from "../../common/clock.ts";
import { LATENCY_BUCKETS_MS, type ServiceLoad } from "../../model/load.ts";
import { BUILT_IN_RULES, type RemediationRule } from "../../model/remediation.ts";
import { LiveLoad } from "../../observe/live-load.ts";
import { decide } from "./decide.ts";
import { detect, detectOne, overloadedNow } from "./symptoms.ts";
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

/** web (critical) saturated under rising load beside batch (low) with traffic: 60 rps over the 10 s window, 40 in flight on 2 instances (30 over the last 2 s: draining), 20 rps over 60 s; `fits`: web's instances today's nodes hold. */
function risingWeb(fits?: number): AppView {
  const load = new FakeLoad()
    .setService(WEB, { requests: 120, rps: 60, inflight: 30 }, 2_000)
    .setService(WEB, { requests: 600, rps: 60, inflight: 40 }, 10_000)
    .setService(WEB, { requests: 1200, rps: 20, inflight: 10 })
    .setService("t/shop/batch", { requests: 100, rps: 10, inflight: 9 });
  const view = viewOf(load, {
    services: [
      { name: "web", spec: { mode: "cattle", routes: [], criticality: "critical" } },
      { name: "batch", spec: { mode: "cattle", routes: [], criticality: "low" } },
    ],
  });
  if (fits === undefined) return view;
  const asked: number[] = [];
  return Object.assign(view, {
    asked,
    shortfall: (service: string, count: number) => {
      assert.equal(service, "web");
      asked.push(count);
      return count > fits
        ? `${count - fits} of ${count} instances cannot be placed: needs more CPU`
        : undefined;
    },
  });
}

test("saturation under rising load → scale out, throttling the low-criticality service meanwhile", () => {
  const plan = planFor(rule("saturated"), risingWeb());
  assert.equal(plan.action, "scale-out");
  // ×3 rising, capped at double: 2 → 4.
  assert.deepEqual(plan.change, {
    kind: "scale-out",
    service: "web",
    from: 2,
    to: 4,
    throttle: [{ service: "batch", concurrency: 4, previous: undefined }],
  });
  assert.match(plan.evidence.join("\n"), /web: 20 requests in flight per instance over 10 s/);
  assert.match(plan.evidence.join("\n"), /web: 60 rps over 10 s against 20 over 60 s \(×3\)/);
  assert.match(plan.evidence.join("\n"), /batch \(criticality lower than web's critical\): concurrency → 4/);
});

test("without a machine provider a scale-out adds only what today's nodes hold, and says so", () => {
  const plan = planFor(rule("saturated"), risingWeb(3));
  assert.equal(plan.action, "scale-out");
  assert.equal(plan.change?.kind === "scale-out" && plan.change.to, 3);
  assert.match(plan.evidence.join("\n"), /web: 3 of the 4 instances asked fit on today's nodes/);
  // Room for all that was asked: the question is asked once.
  const all = risingWeb(10);
  assert.equal(planFor(rule("saturated"), all).change?.kind === "scale-out" && 4, 4);
  assert.deepEqual((all as AppView & { asked: number[] }).asked, [4]);
});

test("without a machine provider and no room for one more instance, the engine throttles instead of scaling out", () => {
  const plan = planFor(rule("saturated"), risingWeb(2));
  assert.equal(plan.action, "throttle");
  assert.match(
    plan.evidence.join("\n"),
    /not scale-out: 1 of 3 instances cannot be placed: needs more CPU; no machine provider adds nodes/,
  );
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
  const spec = { mode: "cattle" as const, routes: [], resources: { cpu: 0.5, cpuLimit: 0.5, memory: 1 } };
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

test("without a CPU ceiling, CPU far past the request is no saturation (burstable instances use idle CPU)", () => {
  const load = new FakeLoad().setService(WEB, { requests: 20, rps: 2, inflight: 0 });
  const spec = { mode: "cattle" as const, routes: [], resources: { cpu: 0.1, memory: 1 } };
  const view = viewOf(load, {
    services: [{ name: "web", spec }],
    instances: [
      { id: "a", service: "web", cpuCores: 0.38 },
      { id: "b", service: "web", cpuCores: 0.4 },
    ],
  });
  assert.equal(detect(rule("saturated"), view).length, 0);
});

test("saturation by CPU wait: burstable instances busy on their CPU that wait for one → scale out, the low service throttled", () => {
  // Steady load (nothing rising), a short queue: only the agents' CPU figures tell.
  const API = "t/shop/api";
  const load = new FakeLoad()
    .setService(API, { requests: 940, rps: 94, inflight: 2 })
    .setService("t/shop/batch", { requests: 2000, rps: 200, inflight: 16 });
  const view = viewOf(load, {
    services: [
      {
        name: "api",
        instances: 1,
        running: 1,
        spec: { mode: "cattle", routes: [], criticality: "critical", resources: { cpu: 0.25, memory: 1 } },
      },
      { name: "batch", instances: 1, running: 1, spec: { mode: "cattle", routes: [], criticality: "low" } },
    ],
    instances: [
      { id: "a", service: "api", cpuCores: 0.38, cpuWaitShare: 0.25 },
      { id: "b", service: "batch", cpuCores: 0.85, cpuWaitShare: 0.05 },
    ],
  });
  const [finding] = detect(rule("saturated"), view);
  assert.equal(finding?.service, "api");
  assert.equal(
    finding.evidence[0],
    "api: waited for a CPU 25% of its runnable time, using 0.38 of the 0.25 core(s) it asked, per instance over 1 running (starved from 10%)",
  );
  const plan = planFor(rule("saturated"), view);
  assert.equal(plan.action, "scale-out");
  assert.equal(plan.target, "api 1 → 2");
  assert.match(plan.reason, /^api is starved of CPU: scale out to 2, throttling batch/);
  // Sized by CPU: api needs its 0.38 cores again; batch keeps 1 − 0.38 / 0.85 of its 16 in flight.
  assert.deepEqual(plan.change.kind === "scale-out" && plan.change.throttle, [
    { service: "batch", concurrency: 8, previous: undefined },
  ]);
  // batch, saturated too (16 in flight), does not get the node's last room while api starves.
  const batch = detect(rule("saturated"), view).find((f) => f.service === "batch");
  assert.ok(batch);
  const forBatch = decide(batch, view, WINDOW);
  assert.notEqual(forBatch.action, "scale-out");
  assert.match(forBatch.evidence.join("\n"), /not scale-out: api \(critical\) is overloaded too/);
  // Waiting as much under its request (the node's weights hold it back): no symptom, more instances would not help.
  const apiFindings = () => detect(rule("saturated"), view).filter((f) => f.service === "api");
  view.instances = view.instances.map((i) => (i.service === "api" ? { ...i, cpuCores: 0.2 } : i));
  assert.deepEqual(apiFindings(), []);
  // Just started (its readings cover its start): no symptom.
  view.instances = view.instances.map((i) =>
    i.service === "api" ? { ...i, cpuCores: 0.38, startedAt: view.now - 10_000 } : i,
  );
  assert.deepEqual(apiFindings(), []);
  view.instances = view.instances.map((i) =>
    i.service === "api" ? { ...i, startedAt: view.now - 60_000 } : i,
  );
  assert.equal(apiFindings().length, 1, "a minute after its start it is starved again");
  // Past its request but hardly waiting: no symptom either.
  view.instances = view.instances.map((i) => (i.service === "api" ? { ...i, cpuWaitShare: 0.05 } : i));
  assert.deepEqual(apiFindings(), []);
});

test("a load step: the queue over the last 2 s is seen before the 10 s average crosses; scale out, throttle sized to the need", () => {
  const API = "t/shop/api";
  const load = new FakeLoad()
    // 2 s: 24 in flight on the one instance (it serves 65/s); 10 s: 5 on average (mostly before the step).
    .setService(API, { requests: 130, rps: 65, inflight: 24 }, 2_000)
    .setService(API, { requests: 200, rps: 20, inflight: 5 }, 10_000)
    .setService(API, { requests: 700, rps: 11.7, inflight: 1 })
    .setService("t/shop/batch", { requests: 500, rps: 250, inflight: 5 }, 2_000)
    .setService("t/shop/batch", { requests: 1500, rps: 150, inflight: 2 });
  const view = viewOf(load, {
    services: [
      {
        name: "api",
        instances: 1,
        running: 1,
        spec: { mode: "cattle", routes: [], criticality: "critical" },
      },
      { name: "batch", instances: 1, running: 1, spec: { mode: "cattle", routes: [], criticality: "low" } },
    ],
  });
  const [finding] = detect(rule("saturated"), view);
  assert.equal(finding?.service, "api");
  assert.equal(finding.windowMs, 2_000);
  assert.match(
    finding.evidence[0],
    /^api: 24 requests in flight per instance over the last 2 s \(24 on 1 running; 5 over 10 s; threshold 8\)/,
  );
  const plan = decide(finding, view, WINDOW);
  assert.equal(plan.action, "scale-out");
  // api needs twice what it has (1 → 2); without CPU figures batch keeps half of what it has in flight now (5 over 2 s, not 2 over 10 s).
  assert.deepEqual(plan.change, {
    kind: "scale-out",
    service: "api",
    from: 1,
    to: 2,
    throttle: [{ service: "batch", concurrency: 2, previous: undefined }],
  });
  assert.match(plan.evidence.join("\n"), /api: 65 rps over 2 s against 11\.7 over 60 s \(×5\.6\)/);
  // The same 10 s average without the queue now: no finding (a spike that is over, or noise).
  load.setService(API, { requests: 130, rps: 65, inflight: 3 }, 2_000);
  assert.equal(detect(rule("saturated"), view).length, 0);
});

test("a throttle's service is overloaded now only while the last 2 s show the queue, whatever the 10 s average", () => {
  const load = new FakeLoad()
    .setService(WEB, { requests: 120, rps: 60, inflight: 4 }, 2_000)
    .setService(WEB, { requests: 600, rps: 60, inflight: 40 });
  const view = viewOf(load, { services: [{ name: "web" }] });
  const web = view.services[0];
  assert.ok(detectOne(rule("saturated"), view, web), "the 10 s average still holds the overload");
  assert.equal(overloadedNow(rule("saturated"), view, web), false);
  load.setService(WEB, { requests: 120, rps: 60, inflight: 20 }, 2_000);
  assert.equal(overloadedNow(rule("saturated"), view, web), true);
});

test("saturation longer than the rise span: no longer rising, but CPU-bound instances → scale out by one", () => {
  const load = new FakeLoad().setService(WEB, { requests: 3600, rps: 60, inflight: 40 });
  const spec = { mode: "cattle" as const, routes: [], resources: { cpu: 0.25, cpuLimit: 0.25, memory: 1 } };
  const view = viewOf(load, {
    services: [{ name: "web", spec }],
    instances: [
      { id: "a", service: "web", cpuCores: 0.2 },
      { id: "b", service: "web", cpuCores: 0.21 },
    ],
  });
  // 82 % of the CPU asked: not CPU-bound, and load is steady: none.
  let plan = planFor(rule("saturated"), view);
  assert.equal(plan.action, "none");
  assert.match(
    plan.evidence.join("\n"),
    /load is not rising .* and the instances are not CPU-bound \(CPU 82%\)/,
  );
  view.instances = view.instances.map((i) => ({ ...i, cpuCores: 0.24 }));
  plan = planFor(rule("saturated"), view);
  assert.equal(plan.action, "scale-out");
  assert.equal(plan.target, "web 2 → 3");
  assert.match(plan.reason, /^web is CPU-bound: scale out to 3/);
});

test("throttle sized by CPU: the low service gives up what the critical one needs of the CPU", () => {
  const API = "t/shop/api";
  const load = new FakeLoad()
    .setService(API, { requests: 130, rps: 65, inflight: 20 }, 2_000)
    .setService(API, { requests: 700, rps: 11.7, inflight: 1 })
    .setService("t/shop/batch", { requests: 500, rps: 250, inflight: 10 });
  const view = viewOf(load, {
    services: [
      {
        name: "api",
        instances: 1,
        running: 1,
        spec: {
          mode: "cattle",
          routes: [],
          criticality: "critical",
          resources: { cpu: 0.25, cpuLimit: 0.25, memory: 1 },
        },
      },
      { name: "batch", instances: 1, running: 1, spec: { mode: "cattle", routes: [], criticality: "low" } },
    ],
    instances: [
      { id: "a", service: "api", cpuCores: 0.24 },
      { id: "b", service: "batch", cpuCores: 0.9 },
    ],
  });
  const plan = planFor(rule("saturated"), view);
  // api needs 0.24 cores more until its second instance serves: batch keeps 1 − 0.24 / 0.9 of its 10 in flight.
  assert.deepEqual(plan.change, {
    kind: "scale-out",
    service: "api",
    from: 1,
    to: 2,
    throttle: [{ service: "batch", concurrency: 7, previous: undefined }],
  });
  // CPU figures still from before the step (api at 20 % of its CPU): they say nothing of the need, batch keeps half.
  view.instances = view.instances.map((i) => ({ ...i, cpuCores: i.service === "api" ? 0.05 : 0.2 }));
  const early = planFor(rule("saturated"), view);
  assert.deepEqual(early.change.kind === "scale-out" && early.change.throttle, [
    { service: "batch", concurrency: 5, previous: undefined },
  ]);
});

test("a low service saturated while a critical one is overloaded now is not scaled out: the room goes to the critical one", () => {
  const API = "t/shop/api";
  const BATCH = "t/shop/batch";
  const load = new FakeLoad()
    .setService(API, { requests: 130, rps: 65, inflight: 24 }, 2_000)
    .setService(API, { requests: 700, rps: 11.7, inflight: 1 })
    .setService(BATCH, { requests: 130, rps: 65, inflight: 16 }, 2_000)
    .setService(BATCH, { requests: 700, rps: 11.7, inflight: 1 });
  const view = viewOf(load, {
    services: [
      { name: "batch", instances: 1, running: 1, spec: { mode: "cattle", routes: [], criticality: "low" } },
      {
        name: "api",
        instances: 1,
        running: 1,
        spec: { mode: "cattle", routes: [], criticality: "critical" },
      },
    ],
  });
  const findings = detect(rule("saturated"), view);
  assert.deepEqual(
    findings.map((f) => f.service),
    ["api", "batch"],
  );
  const plan = decide(findings[1], view, WINDOW);
  assert.equal(plan.action, "none");
  assert.match(
    plan.evidence.join("\n"),
    /not scale-out: api \(critical\) is overloaded too: new capacity goes to it first/,
  );
  // api's queue gone: batch may grow.
  load.setService(API, { requests: 130, rps: 65, inflight: 2 }, 2_000);
  assert.equal(decide(findings[1], view, WINDOW).action, "scale-out");
});

test("a low service whose step came with the critical one's (in flight, no answers yet) is throttled too", () => {
  const API = "t/shop/api";
  const load = new FakeLoad()
    .setService(API, { requests: 130, rps: 65, inflight: 24 }, 2_000)
    .setService(API, { requests: 700, rps: 11.7, inflight: 1 })
    .setService("t/shop/batch", { requests: 0, inflight: 6 });
  const view = viewOf(load, {
    services: [
      {
        name: "api",
        instances: 1,
        running: 1,
        spec: { mode: "cattle", routes: [], criticality: "critical" },
      },
      { name: "batch", instances: 1, running: 1, spec: { mode: "cattle", routes: [], criticality: "low" } },
    ],
  });
  const plan = planFor(rule("saturated"), view);
  assert.deepEqual(plan.change.kind === "scale-out" && plan.change.throttle, [
    { service: "batch", concurrency: 3, previous: undefined },
  ]);
  // No traffic at all: nothing to throttle.
  load.setService("t/shop/batch", { requests: 0, inflight: 0 });
  assert.deepEqual(
    planFor(rule("saturated"), view).change.kind === "scale-out" && planFor(rule("saturated"), view).change,
    {
      kind: "scale-out",
      service: "api",
      from: 1,
      to: 2,
      throttle: [],
    },
  );
});

test("under saturation answers per second are what instances serve: the queue sizes the scale-out", () => {
  // Served rps rose ×1.3 only, but 20 in flight per instance against a threshold of 8: ×2.
  const load = new FakeLoad()
    .setService(WEB, { requests: 104, rps: 52, inflight: 40 }, 2_000)
    .setService(WEB, { requests: 2400, rps: 40, inflight: 5 });
  const plan = planFor(rule("saturated"), viewOf(load, { services: [{ name: "web" }] }));
  assert.equal(plan.target, "web 2 → 4");
});

test("what is asked is what was answered plus what the queue grew by: a step shows as rising at once, a slowdown does not", () => {
  const API = "t/shop/api";
  const load = new FakeLoad()
    // The last report: 11 answered, 12 in flight; the one before: 0 in flight (2 s mean 6).
    .setService(API, { requests: 11, rps: 11, inflight: 12 }, 1_000)
    .setService(API, { requests: 22, rps: 11, inflight: 6 }, 2_000)
    .setService(API, { requests: 600, rps: 9.9, inflight: 1 });
  const view = viewOf(load, {
    services: [
      {
        name: "api",
        instances: 1,
        running: 1,
        spec: { mode: "cattle", routes: [], criticality: "critical" },
      },
    ],
  });
  // 6 per instance over 2 s is under 8: the 1 s figure alone is not a finding; a threshold of 5 is.
  const r = { ...rule("saturated"), threshold: 5 };
  let plan = planFor(r, view);
  assert.equal(plan.action, "scale-out");
  assert.match(
    plan.evidence.join("\n"),
    /api: 11 answered \+ the queue growing 12\/s = 23 rps asked over the last 1 s against 9\.9 over 60 s \(×2\.3\)/,
  );
  // The same answers and a queue that stays (12 in flight in both reports): slower, not busier.
  load.setService(API, { requests: 22, rps: 11, inflight: 12 }, 2_000);
  plan = planFor(r, view);
  assert.equal(plan.action, "none");
  assert.match(plan.evidence.join("\n"), /not scale-out: load is not rising \(api: 11 rps over 2 s/);
});

test("over the control plane's live figures: a step is a finding on its second report, rising by what is asked", () => {
  const clock = new ManualClock();
  const live = new LiveLoad(clock);
  const report = (requests: number, inflight: number) => {
    clock.advance(1000);
    const latency = new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);
    latency[2] = requests;
    const s: ServiceLoad = {
      service: "t/shop/api",
      requests,
      errors: 0,
      shed: 0,
      inflight,
      waiting: 0,
      latency,
      instances: [],
    };
    live.record("gw", { at: clock.now(), intervalMs: 1000, services: [s] });
  };
  for (let i = 0; i < 60; i++) report(10, 0);
  const view = () =>
    viewOf(live, {
      now: clock.now(),
      services: [
        {
          name: "api",
          instances: 1,
          running: 1,
          spec: { mode: "cattle", routes: [], criticality: "critical" },
        },
      ],
    });
  // The step's first second: 17 answered, 12 left in flight: (0 + 12) / 2 over 2 s is under 8.
  report(17, 12);
  assert.equal(detect(rule("saturated"), view()).length, 0);
  // Its second: 14 answered, 24 in flight: 18 over 2 s.
  report(14, 24);
  const plan = planFor(rule("saturated"), view());
  assert.equal(plan.action, "scale-out");
  assert.equal(plan.target, "api 1 → 2");
  assert.match(plan.evidence[0], /^api: 18 requests in flight per instance over the last 2 s/);
  // Asked: 14 answered + 2 × (24 − 18) = 12 more in flight = 26 a second, against ~10 over 60 s.
  assert.match(
    plan.evidence.join("\n"),
    /api: 14 answered \+ the queue growing 12\/s = 26 rps asked over the last 1 s against 10\.\d over 60 s/,
  );
});
