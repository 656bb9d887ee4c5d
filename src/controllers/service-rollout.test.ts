// The scale and roll-out steps' plan (service-rollout.ts) checked as data: plain
// services and instances, a fixed time, no store.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Instance, Service } from "../model/objects.ts";
import type { ProgressiveState } from "../model/progressive.ts";
import { DEFAULT_SETTINGS } from "./context.ts";
import { planRollout, type RolloutInput, type RolloutPlan, scaleTarget } from "./service-rollout.ts";
import { iso, NOW, plainInstance, plainService } from "./service-testing.ts";

// drainMs 2000.
const settings = DEFAULT_SETTINGS;

/** shop's web (cattle) or db (pet), with a disruption budget when `minAvailable` is given. */
function service(mode: "cattle" | "pet", over: Partial<Service> = {}, minAvailable?: number): Service {
  const svc = plainService(mode, over);
  return minAvailable === undefined ? svc : { ...svc, spec: { ...svc.spec, minAvailable } };
}

/** An instance made and started `age` seconds ago (running on n1, release 2, unless `over` says otherwise). */
const instance = (id: string, age: number, over: Partial<Instance> = {}) =>
  plainInstance(id, { createdAt: iso(NOW - age * 1000), startedAt: iso(NOW - age * 1000), ...over });

/** A new instance waiting for a node. */
const pending = (id: string, age: number, over: Partial<Instance> = {}) =>
  instance(id, age, { node: null, state: "pending", reason: "Unschedulable", ...over });

/** The input as reconcile builds it: current and old as given, active both; `leaving` ids of old ones. */
function input(
  svc: Service,
  current: Instance[],
  old: Instance[] = [],
  over: Partial<RolloutInput> = {},
): RolloutInput {
  return {
    service: svc,
    active: [...current, ...old],
    current,
    old,
    leaving: new Set(),
    movingOff: [],
    down: undefined,
    ...over,
  };
}

const plan = (i: RolloutInput) => planRollout(i, NOW, settings);
/** The retirements as [id, reason, drain ms]. */
const retired = (p: RolloutPlan) => p.retire.map((r) => [r.instance, r.reason, r.drainMs]);

test("rollout plan: cattle scale up creates the missing instances (away from nodes moved off), and nothing else", () => {
  const svc = service("cattle", { instances: 3 });
  const p = plan(input(svc, [instance("shop-web-a", 60)], [], { movingOff: ["n3"] }));
  assert.deepEqual(p, { create: { count: 2, avoid: ["n3"] }, retire: [], requeueMs: [] });
});

test("rollout plan: cattle scale down retires the surplus, not running first, then the newest (ScaledDown, drained)", () => {
  const svc = service("cattle", { instances: 2 });
  const current = [
    instance("shop-web-old", 300),
    instance("shop-web-new", 10),
    pending("shop-web-waits", 200),
    instance("shop-web-mid", 100),
  ];
  const p = plan(input(svc, current));
  assert.deepEqual(p.retire, [
    {
      instance: "shop-web-waits",
      reason: "ScaledDown",
      message: "shop-web-waits stopped: scaled to 2",
      drainMs: 2000,
    },
    {
      instance: "shop-web-new",
      reason: "ScaledDown",
      message: "shop-web-new stopped: scaled to 2",
      drainMs: 2000,
    },
  ]);
  assert.equal(p.create, undefined);
});

test("rollout plan: pets scale down from the highest ordinal, and count whatever release they run", () => {
  const svc = service("pet", { instances: 1 });
  // By ordinal, not by age nor as text: shop-db-10 (the oldest), then shop-db-2, and shop-db-0 (the newest) stays.
  // Pets on an old release count too: nothing is created for them (they are updated in place).
  const p = plan(
    input(
      svc,
      [instance("shop-db-0", 10), instance("shop-db-10", 300)],
      [instance("shop-db-2", 100, { release: 1 })],
    ),
  );
  assert.deepEqual(retired(p), [
    ["shop-db-10", "ScaledDown", 2000],
    ["shop-db-2", "ScaledDown", 2000],
  ]);
  assert.equal(p.retire[0]!.message, "shop-db-10 stopped: scaled to 1");
  assert.equal(p.create, undefined);
  // The old pet it scales away is not also updated in place (that write would undo its retirement).
  assert.equal(p.updatePet, undefined);
  const two = plan(
    input(
      service("pet", { instances: 2 }),
      [instance("shop-db-0", 60)],
      [instance("shop-db-2", 60, { release: 1 }), instance("shop-db-1", 60, { release: 1 })],
    ),
  );
  assert.deepEqual(retired(two), [["shop-db-2", "ScaledDown", 2000]]);
  assert.equal(two.updatePet, "shop-db-1", "the old pet that stays is updated");
  const up = plan(
    input(
      service("pet", { instances: 3 }),
      [instance("shop-db-0", 60)],
      [instance("shop-db-1", 60, { release: 1 })],
    ),
  );
  assert.deepEqual(up.create, { count: 1, avoid: [] });
  // What counts: every pet (active), not only the current ones.
  const active = [instance("shop-db-0", 60), instance("shop-db-1", 60, { release: 1 })];
  assert.deepEqual(scaleTarget(service("pet", { instances: 3 }), active, active.slice(0, 1)).counted, active);
});

test("rollout plan: a failed service creates nothing and leaves its old instances and pets alone; a surplus still goes", () => {
  const failed = service("cattle", { state: "failed", instances: 3, release: 3 });
  const old = [instance("shop-web-v2a", 300), instance("shop-web-v2b", 200)];
  const short = plan(input(failed, [instance("shop-web-v3", 10, { release: 3 })], old));
  assert.deepEqual(short, { retire: [], requeueMs: [] });
  assert.deepEqual(scaleTarget(failed, [], [instance("shop-web-v3", 10, { release: 3 })]).want, 1);
  // Scaled below what it has: the surplus goes, the old release stays.
  const below = service("cattle", { state: "failed", instances: 1, release: 3 });
  const current = [instance("shop-web-x", 20, { release: 3 }), instance("shop-web-y", 10, { release: 3 })];
  assert.deepEqual(retired(plan(input(below, current, old))), [["shop-web-y", "ScaledDown", 2000]]);
  // One still waiting for a node (a deploy that could not be placed) goes now, undrained: it must
  // not run when room appears later. The placed ones stay.
  const unplaced = service("cattle", { state: "failed", instances: 3, release: 3 });
  const waiting = [instance("shop-web-p", 30, { release: 3 }), pending("shop-web-q", 30, { release: 3 })];
  const stopped = plan(input(unplaced, waiting));
  assert.deepEqual(retired(stopped), [["shop-web-q", "ServiceFailed", 0]]);
  assert.equal(stopped.retire[0]!.message, "shop-web-q stopped before it was placed: web has failed");
  assert.equal(stopped.create, undefined);
  assert.deepEqual(scaleTarget(unplaced, waiting, waiting), { counted: [waiting[0]], want: 1 });
  // A failed pet service: no update in place.
  const pets = service("pet", { state: "failed", release: 3 });
  assert.equal(
    plan(input(pets, [instance("shop-db-0", 60, { release: 3 })], [instance("shop-db-1", 60)])).updatePet,
    undefined,
  );
});

/** A canary from v1 to v2 at its first step, but for `over`. */
const progressive = (over: Partial<ProgressiveState>): ProgressiveState => {
  const canary = { strategy: "canary", baseline: 1, release: 2, phase: "steps", step: 0, weight: 0 } as const;
  return { ...canary, analyses: [], ...over };
};

test("rollout plan: a canary step runs its share of the new release and keeps the baseline; another old release goes", () => {
  // 4 instances: the first step (10 %) runs 1 new one, the second (50 %) 2.
  const svc = service("cattle", { state: "updating", instances: 4, progressive: progressive({ step: 1 }) });
  const baseline = [1, 2, 3, 4].map((n) => instance(`shop-web-b${n}`, 300 + n, { release: 1 }));
  // An instance of a rollout this one superseded (v3, say) goes; one leaving its node stays for now.
  const stray = instance("shop-web-v0", 400, { release: 0 });
  const strayLeaving = instance("shop-web-v0m", 400, { release: 0, moving: {} });
  const p = plan(
    input(svc, [instance("shop-web-c1", 10)], [...baseline, stray, strayLeaving], {
      leaving: new Set(["shop-web-v0m"]),
    }),
  );
  assert.deepEqual(p.create, { count: 1, avoid: [] });
  assert.deepEqual(p.retire, [
    {
      instance: "shop-web-v0",
      reason: "Superseded",
      message: "shop-web-v0 (v0) replaced by v2",
      drainMs: 2000,
    },
  ]);
  // The step's share running: nothing more, the baseline all kept (no rolling replacement).
  const full = plan(input(svc, [instance("shop-web-c1", 10), instance("shop-web-c2", 10)], baseline));
  assert.deepEqual(full, { retire: [], requeueMs: [] });
});

test("rollout plan: a blue/green preview runs the full count beside the baseline; promoted, the baseline drains", () => {
  const preview = progressive({ strategy: "bluegreen", phase: "preview" });
  const svc = service("cattle", { state: "updating", instances: 2, progressive: preview });
  const baseline = [
    instance("shop-web-b1", 300, { release: 1 }),
    instance("shop-web-b2", 200, { release: 1 }),
  ];
  const p = plan(input(svc, [instance("shop-web-g1", 10)], baseline));
  assert.deepEqual(p, { create: { count: 1, avoid: [] }, retire: [], requeueMs: [] });
  // Promoted: no longer held, the old ones are replaced as any rollout's.
  const promoted = service("cattle", { state: "updating", progressive: { ...preview, phase: "promoted" } });
  const running = [instance("shop-web-g1", 10), instance("shop-web-g2", 10)];
  assert.deepEqual(retired(plan(input(promoted, running, baseline))), [
    ["shop-web-b1", "Superseded", 2000],
    ["shop-web-b2", "Superseded", 2000],
  ]);
});

test("rollout plan: a rolling update retires old instances only as new ones run, never below the count running", () => {
  const svc = service("cattle", { state: "updating", instances: 3 });
  const old = [
    instance("shop-web-o2", 200, { release: 1 }),
    instance("shop-web-o1", 300, { release: 1 }),
    instance("shop-web-o3", 100, { release: 1 }),
  ];
  const starting = (id: string) => instance(id, 5, { state: "provisioning" });
  // None of the new ones runs yet: every old one stays.
  assert.deepEqual(
    plan(input(svc, [starting("shop-web-n1"), starting("shop-web-n2"), starting("shop-web-n3")], old)),
    {
      retire: [],
      requeueMs: [],
    },
  );
  // One runs: the oldest old one goes (drained), 3 still run.
  const one = plan(
    input(svc, [instance("shop-web-n1", 5), starting("shop-web-n2"), starting("shop-web-n3")], old),
  );
  assert.deepEqual(one.retire, [
    {
      instance: "shop-web-o1",
      reason: "Superseded",
      message: "shop-web-o1 (v1) replaced by v2",
      drainMs: 2000,
    },
  ]);
  // All run: every old one, oldest first.
  const all = plan(
    input(svc, [instance("shop-web-n1", 5), instance("shop-web-n2", 5), instance("shop-web-n3", 5)], old),
  );
  assert.deepEqual(retired(all), [
    ["shop-web-o1", "Superseded", 2000],
    ["shop-web-o2", "Superseded", 2000],
    ["shop-web-o3", "Superseded", 2000],
  ]);
  // An old one not running (crashed, starting) goes at once, with no drain, before the running ones.
  const crashed = instance("shop-web-oc", 50, { release: 1, state: "crashed" });
  const mixed = plan(
    input(
      svc,
      [instance("shop-web-n1", 5), starting("shop-web-n2"), starting("shop-web-n3")],
      [...old, crashed],
    ),
  );
  assert.deepEqual(retired(mixed), [
    ["shop-web-oc", "Superseded", 0],
    ["shop-web-o1", "Superseded", 2000],
  ]);
});

test("rollout plan: minAvailable lets instances leaving a drained node stop before their replacements run", () => {
  // Three on a draining node, their replacements waiting (no room): by default all stay.
  const draining = [
    instance("shop-web-d1", 300, { node: "n2" }),
    instance("shop-web-d2", 200, { node: "n2" }),
    instance("shop-web-d3", 100, { node: "n2" }),
  ];
  const leaving = new Set(draining.map((i) => i.id));
  const current = [pending("shop-web-r1", 1), pending("shop-web-r2", 1), pending("shop-web-r3", 1)];
  const strict = service("cattle", { instances: 3 });
  assert.deepEqual(plan(input(strict, current, draining, { leaving })).retire, []);
  // minAvailable 1: two may stop now, the oldest first (Moved, drained); one keeps running.
  const budget = service("cattle", { instances: 3 }, 1);
  const p = plan(input(budget, current, draining, { leaving }));
  assert.deepEqual(p.retire, [
    { instance: "shop-web-d1", reason: "Moved", message: "shop-web-d1 moved off n2", drainMs: 2000 },
    { instance: "shop-web-d2", reason: "Moved", message: "shop-web-d2 moved off n2", drainMs: 2000 },
  ]);
});

test("rollout plan: a replacement waiting for a node lets an old instance stop, within minAvailable", () => {
  const old = [instance("shop-web-o1", 300, { release: 1 }), instance("shop-web-o2", 200, { release: 1 })];
  const svc = service("cattle", { state: "updating", instances: 2 }, 1);
  // One new instance waits for a node (the old ones hold the room): one old one stops for it.
  const waits = plan(
    input(svc, [pending("shop-web-n1", 1), instance("shop-web-n2", 1, { state: "provisioning" })], old),
  );
  assert.deepEqual(retired(waits), [["shop-web-o1", "Superseded", 2000]]);
  // Both placed (starting): none waits, none stops early, although minAvailable would allow one.
  const placed = [1, 2].map((n) => instance(`shop-web-n${n}`, 1, { state: "provisioning" }));
  assert.deepEqual(plan(input(svc, placed, old)).retire, []);
  // Without a budget below the count, a waiting one lets nothing stop.
  const strict = service("cattle", { state: "updating", instances: 2 });
  assert.deepEqual(
    plan(input(strict, [pending("shop-web-n1", 1), pending("shop-web-n2", 1)], old)).retire,
    [],
  );
});

test("rollout plan: why an old instance is replaced: Superseded, Moved (moved, drained node) or Restarted (herd restart)", () => {
  const restartedAt = iso(NOW - 50_000);
  const svc = service("cattle", { instances: 5, restartedAt });
  const old = [
    instance("shop-web-v1", 500, { release: 1 }),
    instance("shop-web-mv", 400, { moving: { to: "n3" } }),
    // Moved by an operator and due a restart: moved.
    instance("shop-web-md", 300, { moving: {} }),
    // On a draining node, made after the restart: moved.
    instance("shop-web-dr", 20, { node: "n2" }),
    // Made before the restart.
    instance("shop-web-rs", 100),
  ];
  const current = [1, 2, 3, 4, 5].map((n) => instance(`shop-web-n${n}`, 5));
  const leaving = new Set(["shop-web-mv", "shop-web-md", "shop-web-dr", "shop-web-rs"]);
  const p = plan(input(svc, current, old, { leaving }));
  assert.deepEqual(
    p.retire.map((r) => [r.instance, r.reason, r.message]),
    [
      ["shop-web-v1", "Superseded", "shop-web-v1 (v1) replaced by v2"],
      ["shop-web-mv", "Moved", "shop-web-mv moved off n1"],
      ["shop-web-md", "Moved", "shop-web-md moved off n1"],
      ["shop-web-rs", "Restarted", "shop-web-rs replaced by a new instance (herd restart)"],
      ["shop-web-dr", "Moved", "shop-web-dr moved off n2"],
    ],
  );
});

test("rollout plan: backoffUntil delays the replacements: look again then, create once it passed", () => {
  const svc = service("cattle", { instances: 2, crashes: 2, backoffUntil: iso(NOW + 1500) });
  const waits = plan(input(svc, [instance("shop-web-a", 60)]));
  assert.deepEqual(waits, { retire: [], requeueMs: [1500] });
  const passed = plan(input({ ...svc, backoffUntil: iso(NOW) }, [instance("shop-web-a", 60)]));
  assert.deepEqual(passed, { create: { count: 1, avoid: [] }, retire: [], requeueMs: [] });
});

test("rollout plan: with a dependency down, replacements wait: the message and its event once, a look again in 250 ms", () => {
  const svc = service("cattle", { instances: 3 });
  const p = plan(input(svc, [instance("shop-web-a", 60)], [], { down: ["db", "auth/api"] }));
  const note = "waiting for db, auth/api to run again (dependsOn)";
  assert.deepEqual(p, {
    wait: {
      message: note,
      record: {
        tenant: "default",
        app: "shop",
        service: "web",
        reason: "WaitingForDependencies",
        message: `web: 2 instance(s) to start; ${note}`,
      },
    },
    retire: [],
    requeueMs: [250],
  });
  // Already saying so: nothing written, still looked at again.
  const again = plan(
    input({ ...svc, message: note }, [instance("shop-web-a", 60)], [], { down: ["db", "auth/api"] }),
  );
  assert.deepEqual(again, { retire: [], requeueMs: [250] });
});

test("rollout plan: pets are updated in place one at a time, once every current pet runs", () => {
  const svc = service("pet", { state: "updating", instances: 3, release: 3 });
  const old = [instance("shop-db-1", 300), instance("shop-db-2", 300)];
  const updated = instance("shop-db-0", 300, { release: 3 });
  assert.equal(plan(input(svc, [updated], old)).updatePet, "shop-db-1");
  // The one updated before is still starting: the next waits.
  const starting = { ...updated, state: "provisioning" as const };
  assert.deepEqual(plan(input(svc, [starting], old)), { retire: [], requeueMs: [] });
});
