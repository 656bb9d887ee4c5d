// The heal step's plan (service-heal.ts) checked as data: plain services and
// instances, a fixed time, no store.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Instance } from "../model/objects.ts";
import { DEFAULT_SETTINGS } from "./context.ts";
import { type HealPlan, planHeal } from "./service-heal.ts";
import { plainInstance as instance, iso, NOW, plainService as service } from "./service-testing.ts";

// rolloutCrashLimit 3, crashLoopLimit 8; backoff 0 for the first crash, then 500 ms, 1 s, 2 s, …
const settings = { ...DEFAULT_SETTINGS, rolloutCrashLimit: 3, crashLoopLimit: 8, backoffBaseMs: 500 };

const crashed = (id: string, over: Partial<Instance> = {}) =>
  instance(id, {
    state: "crashed",
    reason: "Exited",
    message: "exited with code 1",
    logTail: ["boom"],
    ...over,
  });

const actions = (plan: HealPlan) => plan.steps.map((s) => [s.instance, s.action]);

test("heal: a crashed cattle instance is retired (Replacing, failed) after its crash is counted; a running one is left", () => {
  const svc = service("cattle");
  const plan = planHeal(svc, [crashed("shop-web-a"), instance("shop-web-b")], NOW, settings);
  assert.deepEqual(plan.steps, [
    {
      instance: "shop-web-a",
      // The first crash in a row: no backoff.
      service: { crashes: 1, unhealthy: 0, backoffUntil: iso(NOW) },
      action: {
        kind: "retire",
        reason: "Replacing",
        message: "shop-web-a exited with code 1; replacing it",
        state: "failed",
      },
    },
    { instance: "shop-web-b", action: { kind: "skip", why: "ok" } },
  ]);
  assert.equal(plan.service.crashes, 1);
  assert.equal(plan.service.state, "running");
  assert.deepEqual(plan.requeueMs, []);
  // The input is not changed.
  assert.equal(svc.crashes, 0);
});

test("heal: crashes in one pass add up, and one never healthy within its startup time counts as unhealthy", () => {
  const svc = service("cattle", { crashes: 1, unhealthy: 1 });
  const slow = instance("shop-web-b", { state: "ready", startedAt: iso(NOW - 35_001) });
  // Starting, but not yet past startupMs + 5 s: left alone.
  const starting = instance("shop-web-c", { state: "provisioning", startedAt: iso(NOW - 34_999) });
  const plan = planHeal(svc, [crashed("shop-web-a"), slow, starting], NOW, settings);
  assert.deepEqual(
    plan.steps.map((s) => s.service),
    [
      { crashes: 2, unhealthy: 1, backoffUntil: iso(NOW + 500) },
      { crashes: 3, unhealthy: 2, backoffUntil: iso(NOW + 1000) },
      undefined,
    ],
  );
  assert.deepEqual(plan.steps[1]!.action, {
    kind: "retire",
    reason: "Replacing",
    message: "shop-web-b not healthy within 30s of starting; replacing it",
    state: "failed",
  });
  assert.deepEqual(plan.steps[2]!.action, { kind: "skip", why: "ok" });
  assert.equal(plan.service.crashes, 3);
  assert.equal(plan.service.unhealthy, 2);
  assert.equal(plan.service.backoffUntil, iso(NOW + 1000));
});

test("heal: a crashed pet waits out its backoff in place (restartAt, BackOff event), and heal looks again then", () => {
  const svc = service("pet", { crashes: 1, unhealthy: 0 });
  const pet = crashed("shop-db-0", { reason: "Unhealthy", message: "failed its health check" });
  const plan = planHeal(svc, [pet], NOW, settings);
  assert.deepEqual(plan.steps, [
    {
      instance: "shop-db-0",
      service: { crashes: 2, unhealthy: 1, backoffUntil: iso(NOW + 500) },
      action: {
        kind: "backoff",
        patch: {
          state: "crashed",
          restartAt: iso(NOW + 500),
          reason: "BackOff",
          message: "failed its health check",
        },
        event: {
          reason: "BackOff",
          type: "warning",
          message: "pet shop-db-0 failed its health check; restarting it in place in 0.5s",
          details: ["boom"],
        },
      },
    },
  ]);
  assert.deepEqual(plan.requeueMs, [500]);
});

test("heal: a pet whose restartAt passed restarts in place; one still waiting is requeued, neither counted again", () => {
  const svc = service("pet", { crashes: 2, unhealthy: 0, backoffUntil: iso(NOW - 10) });
  const due = crashed("shop-db-0", { restartAt: iso(NOW) });
  const waiting = crashed("shop-db-1", { restartAt: iso(NOW + 700) });
  const plan = planHeal(svc, [due, waiting], NOW, settings);
  assert.deepEqual(actions(plan), [
    ["shop-db-0", { kind: "restart" }],
    ["shop-db-1", { kind: "skip", why: "waiting" }],
  ]);
  assert.ok(plan.steps.every((s) => s.service === undefined && s.record === undefined));
  assert.equal(plan.service, svc);
  assert.deepEqual(plan.requeueMs, [700]);
});

test("heal: the crash-loop limit fails the service and retires the instance (CrashLoop, failed)", () => {
  const svc = service("cattle", { crashes: 7, unhealthy: 0 });
  const plan = planHeal(svc, [crashed("shop-web-a")], NOW, settings);
  assert.deepEqual(plan.steps, [
    {
      instance: "shop-web-a",
      service: { crashes: 8, unhealthy: 0, state: "failed", message: "crash loop: exited with code 1" },
      record: {
        tenant: "default",
        app: "shop",
        service: "web",
        instance: "shop-web-a",
        reason: "CrashLoop",
        type: "warning",
        message:
          "web: 8 crashes in a row, giving up (herd scale or a new deploy retries): exited with code 1",
        details: ["boom"],
      },
      action: { kind: "retire", reason: "CrashLoop", message: "crash loop", state: "failed" },
    },
  ]);
  assert.equal(plan.service.state, "failed");
  // One below the limit backs off instead.
  const below = planHeal(service("cattle", { crashes: 6 }), [crashed("shop-web-a")], NOW, settings);
  assert.equal(below.service.state, "running");
  assert.equal(below.steps[0]!.action.kind === "retire" && below.steps[0]!.action.reason, "Replacing");
});

test("heal: a rollout crash at the rollout crash limit fails the service (RolloutFailed): cattle retired", () => {
  const svc = service("cattle", { state: "updating", release: 3, deploy: "d1", crashes: 2, unhealthy: 0 });
  const plan = planHeal(svc, [crashed("shop-web-a", { release: 3 })], NOW, settings);
  assert.deepEqual(plan.steps, [
    {
      instance: "shop-web-a",
      service: {
        crashes: 3,
        unhealthy: 0,
        state: "failed",
        message: "v3 did not become healthy: exited with code 1",
      },
      record: {
        tenant: "default",
        app: "shop",
        service: "web",
        instance: "shop-web-a",
        deploy: "d1",
        reason: "RolloutFailed",
        type: "warning",
        message: "web: v3 instance shop-web-a exited with code 1; rollout stopped",
        details: ["boom"],
      },
      action: { kind: "retire", reason: "RolloutFailed", message: "its release failed to roll out" },
    },
  ]);
  assert.equal(plan.service.state, "failed");
  // A second crash in the same pass finds the rollout failed already: counted as any crash
  // (Replacing), not a second RolloutFailed; the service's message stays the rollout's.
  const two = planHeal(
    svc,
    [crashed("shop-web-a", { release: 3 }), crashed("shop-web-b", { release: 3, message: "killed" })],
    NOW,
    settings,
  );
  assert.deepEqual(
    two.steps.map((s) => [s.record?.reason, s.action.kind === "retire" && s.action.reason]),
    [
      ["RolloutFailed", "RolloutFailed"],
      [undefined, "Replacing"],
    ],
  );
  assert.equal(two.service.crashes, 4);
  assert.equal(two.service.state, "failed");
  assert.equal(two.service.message, "v3 did not become healthy: exited with code 1");
  // An old release's crash during the rollout is not the rollout's failure (it backs off).
  const old = planHeal(svc, [crashed("shop-web-b", { release: 2 })], NOW, settings);
  assert.equal(old.service.state, "updating");
  assert.equal(old.steps[0]!.record, undefined);
});

test("heal: the rollout crash limit counts the new release's crashes in this rollout, not an old release's", () => {
  const rollout = { deadlineMs: 120_000, best: 2, since: iso(NOW - 10_000) };
  // The old release crashed twice during the rollout: counted on the service (its backoff), not on the rollout.
  const svc = service("cattle", { state: "updating", release: 3, deploy: "d1", crashes: 0, rollout });
  const olds = planHeal(
    svc,
    [crashed("shop-web-a", { release: 2 }), crashed("shop-web-b", { release: 2 })],
    NOW,
    settings,
  );
  assert.equal(olds.service.crashes, 2);
  assert.deepEqual(olds.service.rollout, rollout, "the rollout's count untouched");
  // Then a new-release instance crashes: the service's third crash, the rollout's first. It is replaced.
  const next = planHeal(olds.service, [crashed("shop-web-c", { release: 3 })], NOW, settings);
  assert.equal(next.service.state, "updating");
  assert.equal(next.service.crashes, 3);
  assert.deepEqual(next.service.rollout, { ...rollout, crashes: 1 });
  assert.deepEqual(next.steps[0]!.action, {
    kind: "retire",
    reason: "Replacing",
    message: "shop-web-c exited with code 1; replacing it",
    state: "failed",
  });
  // Two more of the new release: the third fails the rollout.
  const failed = planHeal(
    next.service,
    [crashed("shop-web-d", { release: 3 }), crashed("shop-web-e", { release: 3 })],
    NOW,
    settings,
  );
  assert.deepEqual(
    failed.steps.map((s) => s.record?.reason ?? null),
    [null, "RolloutFailed"],
  );
  assert.equal(failed.service.state, "failed");
});

test("heal: a pet's rollout crash at the limit fails the service but keeps the pet; later pets are left to the rollout", () => {
  const svc = service("pet", { state: "updating", release: 3, deploy: "d1", crashes: 2, unhealthy: 0 });
  const first = crashed("shop-db-0", { release: 3 });
  const second = crashed("shop-db-1", { release: 3 });
  const plan = planHeal(svc, [first, second], NOW, settings);
  assert.deepEqual(actions(plan), [
    ["shop-db-0", { kind: "skip", why: "pet-kept" }],
    // The service is failed now: the second pet is not counted, it waits to go back in place.
    ["shop-db-1", { kind: "skip", why: "pet-in-place" }],
  ]);
  assert.deepEqual(plan.steps[0]!.service, {
    crashes: 3,
    unhealthy: 0,
    state: "failed",
    message: "v3 did not become healthy: exited with code 1",
  });
  assert.equal(plan.steps[0]!.record?.reason, "RolloutFailed");
  assert.equal(
    plan.steps[0]!.record?.message,
    "db: v3 instance shop-db-0 exited with code 1; rollout stopped",
  );
  assert.equal(plan.steps[1]!.service, undefined);
  assert.equal(plan.service.crashes, 3);
});

test("heal: a lost cattle instance is retired (NodeLost); a lost pet waits for its node", () => {
  const cattle = planHeal(service("cattle"), [instance("shop-web-a", { state: "lost" })], NOW, settings);
  assert.deepEqual(actions(cattle), [
    [
      "shop-web-a",
      { kind: "retire", reason: "NodeLost", message: "node n1 is lost; replacing shop-web-a elsewhere" },
    ],
  ]);
  const pet = planHeal(service("pet"), [instance("shop-db-0", { state: "lost" })], NOW, settings);
  assert.deepEqual(actions(pet), [["shop-db-0", { kind: "skip", why: "lost-pet" }]]);
  assert.ok([...cattle.steps, ...pet.steps].every((s) => s.service === undefined));
});

test("heal: a pet an operator moves leaves its node (pending, a new generation), even crashed", () => {
  const svc = service("pet");
  const to = crashed("shop-db-0", { moving: { to: "n2" }, generation: 4 });
  const anywhere = instance("shop-db-1", { node: "n3", moving: {} });
  const plan = planHeal(svc, [to, anywhere], NOW, settings);
  assert.deepEqual(plan.steps, [
    {
      instance: "shop-db-0",
      action: {
        kind: "move",
        patch: { node: null, state: "pending", generation: 5, reason: "Moving", message: "" },
        event: { reason: "PetMoving", message: "pet shop-db-0 moves off n1 to n2; its data stays on n1" },
      },
    },
    {
      instance: "shop-db-1",
      action: {
        kind: "move",
        patch: { node: null, state: "pending", generation: 2, reason: "Moving", message: "" },
        event: { reason: "PetMoving", message: "pet shop-db-1 moves off n3; its data stays on n3" },
      },
    },
  ]);
  assert.equal(plan.service, svc);
});

test("heal: a crashed pet on a release the service no longer runs, or of a failed service, is skipped", () => {
  const wentBack = planHeal(
    service("pet", { release: 2 }),
    [crashed("shop-db-0", { release: 3 })],
    NOW,
    settings,
  );
  assert.deepEqual(actions(wentBack), [["shop-db-0", { kind: "skip", why: "pet-in-place" }]]);
  assert.equal(wentBack.steps[0]!.service, undefined);
  const failed = planHeal(
    service("pet", { state: "failed", crashes: 8 }),
    [crashed("shop-db-0")],
    NOW,
    settings,
  );
  assert.deepEqual(actions(failed), [["shop-db-0", { kind: "skip", why: "pet-in-place" }]]);
  // Cattle of a failed service are still healed.
  const cattle = planHeal(
    service("cattle", { state: "failed", crashes: 2 }),
    [crashed("shop-web-a")],
    NOW,
    settings,
  );
  assert.equal(cattle.steps[0]!.action.kind, "retire");
  assert.equal(cattle.service.crashes, 3);
});
