// Canary and blue/green rollouts checked as data: a memory store, a manual
// clock, heartbeats written by the test, and live figures per release set by
// the test in place of gateways.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { HerdError } from "../common/errors.ts";
import type { EndpointFigures } from "../model/endpoint-analysis.ts";
import type { LoadFigures } from "../model/load.ts";
import { normalizeService, type ServiceManifest } from "../model/manifest.ts";
import type { App, Deploy, Instance, Service } from "../model/objects.ts";
import type { ReleaseFigures } from "../model/progressive.ts";
import type { Heartbeat, InstanceStatus } from "../model/protocol.ts";
import { DEFAULT_SETTINGS } from "./context.ts";
import { ControllerManager } from "./manager.ts";
import { restartServices } from "./restart.ts";
import type { EndpointSource } from "./rollout-controller.ts";
import { testContext } from "./testing.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Live figures per release, as the test sets them. */
class TestLoad implements LoadFigures {
  figures: ReleaseFigures[] = [];
  windows: number[] = [];
  service() {
    return undefined;
  }
  instances() {
    return [];
  }
  releases(_key: string, windowMs: number): ReleaseFigures[] {
    this.windows.push(windowMs);
    return this.figures;
  }
}

function setup(endpoints?: EndpointSource) {
  const dir = mkdtempSync(join(tmpdir(), "herd-rollout-"));
  dirs.push(dir);
  const load = new TestLoad();
  const { ctx, store, clock } = testContext(dir, { load });
  const m = new ControllerManager(ctx, endpoints ? { endpoints } : {});
  return { store, clock, ctx, m, load, dir };
}
type Harness = ReturnType<typeof setup>;

const KEY = "default/hello/web";

function hb(instances: InstanceStatus[] = []): Heartbeat {
  return {
    address: "127.0.0.1",
    labels: {},
    capacity: { cpu: 8, memory: 16 * 1024 ** 3 },
    agentVersion: "test",
    isolation: { cgroups: "none", reason: "test" },
    instances,
  };
}

const instancesOf = async (h: Harness) =>
  (await h.store.list<Instance>("instance")).items.map((o) => o.value);
const service = async (h: Harness) => (await h.store.get<Service>("service", KEY))!.value;
const deployOf = async (h: Harness, id: string) =>
  (await h.store.get<Deploy>("deploy", `default/hello/${id}`))!.value;

/** One agent round trip: every instance it should run is healthy; drained ones stop. */
async function agentRound(h: Harness) {
  const now = h.clock.now();
  const statuses: InstanceStatus[] = [];
  for (const d of (await instancesOf(h)).filter((i) => i.node === "n1")) {
    const run = d.desired === "running" || (d.drainUntil !== undefined && Date.parse(d.drainUntil) > now);
    statuses.push({
      id: d.id,
      generation: d.generation,
      state: run ? "healthy" : "stopped",
      port: 20000,
      pid: 1,
    });
  }
  await h.m.nodes.handleHeartbeat("n1", hb(statuses));
}

/** Controllers and the agent go round until nothing changes (`rounds` times). */
async function settle(h: Harness, rounds = 4) {
  for (let n = 0; n < rounds; n++) {
    await h.m.resync();
    await h.m.idle();
    await agentRound(h);
    await h.m.idle();
  }
}

async function deploy(h: Harness, spec: Partial<ServiceManifest>, slug: string): Promise<Deploy> {
  if (!(await h.store.get("app", "default/hello"))) {
    const app: App = {
      tenant: "default",
      name: "hello",
      createdAt: new Date().toISOString(),
      release: null,
      latestVersion: 0,
    };
    await h.store.put("app", "default/hello", app);
  }
  const d = await h.m.deploys.startDeploy("default", "hello", async () => ({
    source: "b".repeat(64),
    slug,
    services: { web: normalizeService("hello", "web", { command: "node server.js", ...spec }, undefined) },
    description: "test",
  }));
  for (let n = 0; n < 50; n++) {
    const o = await deployOf(h, d.id);
    if (o.state !== "building") return o;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("build did not finish");
}

const CANARY: Partial<ServiceManifest> = {
  instances: 4,
  rollout: {
    strategy: "canary",
    steps: [{ weight: 25, pause: "10s" }, { weight: 50 }],
    analysis: { interval: "5s", minRequests: 20, errorRate: "< 1%", p99: "< 1.5x baseline" },
  },
};

/** v1 running on n1 (4 instances), then v2 deployed as a canary and its first instance running. */
async function canaryStarted(endpoints?: EndpointSource): Promise<{ h: Harness; d2: Deploy }> {
  const h = setup(endpoints);
  await h.m.nodes.handleHeartbeat("n1", hb());
  await deploy(h, CANARY, "a".repeat(64));
  await settle(h);
  const d2 = await deploy(h, CANARY, "c".repeat(64));
  await settle(h);
  return { h, d2 };
}

const good = (release: number, requests: number): ReleaseFigures => ({
  release,
  requests,
  errors: 0,
  errorRate: 0,
  p50Ms: 20,
  p99Ms: 40,
});

test("a good canary goes step by step, then the new release takes over and the old one drains", async () => {
  const { h, d2 } = await canaryStarted();
  let svc = await service(h);
  assert.equal(svc.progressive?.phase, "steps");
  assert.equal(svc.progressive?.weight, 25, "the first step's weight once its instance runs");
  let insts = await instancesOf(h);
  assert.equal(insts.filter((i) => i.release === 2 && i.desired === "running").length, 1, "25% of 4");
  assert.equal(insts.filter((i) => i.release === 1 && i.desired === "running").length, 4, "v1 stays whole");

  h.load.figures = [good(1, 300), good(2, 100)];
  h.clock.advance(5000);
  await h.m.rollouts.reconcile(KEY);
  svc = await service(h);
  assert.equal(svc.progressive?.analyses.at(-1)?.verdict, "pass");
  assert.equal(svc.progressive?.step, 0, "held for its pause");
  assert.equal(h.load.windows.at(-1), 5000, "analysed over one interval");

  h.clock.advance(5000);
  await h.m.rollouts.reconcile(KEY);
  assert.equal((await service(h)).progressive?.step, 1, "the pause is over: next step");
  await settle(h);
  svc = await service(h);
  assert.equal(svc.progressive?.weight, 50);
  insts = await instancesOf(h);
  assert.equal(insts.filter((i) => i.release === 2 && i.desired === "running").length, 2);

  h.clock.advance(5000);
  await h.m.rollouts.reconcile(KEY);
  assert.equal((await service(h)).progressive?.phase, "promoting");
  await settle(h);
  svc = await service(h);
  insts = await instancesOf(h);
  assert.equal(insts.filter((i) => i.release === 2 && i.desired === "running").length, 4);
  assert.ok(
    insts.filter((i) => i.release === 1).every((i) => i.desired === "stopped"),
    "v1 drains once v2 takes every request",
  );
  h.clock.advance(DEFAULT_SETTINGS.drainMs + 1);
  await settle(h);
  assert.equal((await deployOf(h, d2.id)).state, "succeeded");
  svc = await service(h);
  assert.equal(svc.progressive, undefined);
  assert.equal(svc.release, 2);
  const log = h.ctx.deployLogs.read(d2.id).map((e) => e.message);
  assert.ok(
    log.some((l) => /canary of v2 beside v1 \(4 instances\): 25% 10s → 50% → promote/.test(l)),
    log.join("\n"),
  );
  assert.ok(
    log.some((l) => /step 1\/2 \(25%\): analysis passed: error rate 0% < 1%/.test(l)),
    log.join("\n"),
  );
  assert.ok(
    log.some((l) => /web: v2 takes every request; v1 drains/.test(l)),
    log.join("\n"),
  );
});

test("herd restart is refused while a canary runs, naming it and how to end it; nothing is stamped", async () => {
  const { h } = await canaryStarted();
  await assert.rejects(
    restartServices(
      { store: h.store, events: h.ctx.events },
      { tenant: "default", app: "hello", by: "user admin", now: new Date(h.clock.now()).toISOString() },
    ),
    (err: HerdError) =>
      err.code === "conflict" &&
      /^service web of app hello is in a canary of v2 \(25% of requests\): restart it once the rollout ends, or end it now with herd rollout promote \(or abort\) --app hello$/.test(
        err.message,
      ),
  );
  assert.equal((await service(h)).restartedAt, undefined);
});

test("a canary with 5% errors aborts at its analysis: weight 0, its instances stop, the deploy fails with the figures", async () => {
  const { h, d2 } = await canaryStarted();
  h.load.figures = [good(1, 300), { ...good(2, 100), errors: 5, errorRate: 0.05 }];
  h.clock.advance(5000);
  await h.m.rollouts.reconcile(KEY);
  let svc = await service(h);
  assert.equal(svc.state, "failed");
  assert.equal(svc.progressive?.phase, "aborted");
  assert.equal(svc.progressive?.weight, 0);
  await settle(h);
  const d = await deployOf(h, d2.id);
  assert.equal(d.state, "failed");
  assert.match(
    d.message,
    /canary v2 failed its analysis at step 1\/2 \(25%\): error rate 5% ≥ 1% \(canary v2: 100 requests, 5% errors/,
  );
  assert.match(d.message, /v1 keeps serving/);
  svc = await service(h);
  assert.equal(svc.release, 1);
  const insts = await instancesOf(h);
  assert.ok(insts.filter((i) => i.release === 2).every((i) => i.desired === "stopped"));
  assert.equal(insts.filter((i) => i.release === 1 && i.desired === "running").length, 4);
  h.clock.advance(DEFAULT_SETTINGS.drainMs + 1);
  await settle(h);
  assert.equal((await service(h)).progressive, undefined, "forgotten once the canary is gone");
});

test("a canary 3x slower aborts; too few requests waits instead of judging", async () => {
  const { h, d2 } = await canaryStarted();
  h.load.figures = [good(1, 300), good(2, 5)];
  h.clock.advance(5000);
  await h.m.rollouts.reconcile(KEY);
  let svc = await service(h);
  assert.equal(svc.progressive?.analyses.at(-1)?.verdict, "wait");
  assert.equal(svc.state, "updating");
  h.load.figures = [good(1, 300), { ...good(2, 100), p50Ms: 60, p99Ms: 120 }];
  h.clock.advance(5000);
  await h.m.rollouts.reconcile(KEY);
  svc = await service(h);
  assert.equal(svc.state, "failed");
  assert.match(svc.message, /p99 120ms ≥ 60ms/);
  await settle(h);
  assert.equal((await deployOf(h, d2.id)).state, "failed");
});

test("pause holds a step, resume lets it go on, promote skips the rest; a restarted controller resumes from the store", async () => {
  const { h } = await canaryStarted();
  await h.m.rollouts.act("default", "hello", "pause", { by: "user alice" });
  h.load.figures = [good(1, 300), good(2, 100)];
  h.clock.advance(10_000);
  await h.m.rollouts.reconcile(KEY);
  assert.equal((await service(h)).progressive?.step, 0, "paused: not advanced");
  // A new control plane on the same store: the rollout is where it was.
  h.m.stop();
  const m2 = new ControllerManager(h.ctx);
  await m2.rollouts.act("default", "hello", "resume");
  h.clock.advance(5000);
  await m2.rollouts.reconcile(KEY);
  assert.equal((await service(h)).progressive?.step, 1);
  await m2.rollouts.act("default", "hello", "promote");
  assert.equal((await service(h)).progressive?.phase, "promoting");
  await assert.rejects(m2.rollouts.act("default", "hello", "pause", { service: "nope" }), /no service nope/);
  m2.stop();
});

test("blue/green: the new release starts in full beside the old one at weight 0, and switches on promote", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  const spec: Partial<ServiceManifest> = { instances: 2, rollout: { strategy: "bluegreen" } };
  await deploy(h, spec, "a".repeat(64));
  await settle(h);
  const d2 = await deploy(h, spec, "c".repeat(64));
  await settle(h);
  let svc = await service(h);
  assert.equal(svc.progressive?.phase, "preview");
  assert.equal(svc.progressive?.weight, 0);
  assert.ok(svc.progressive?.stepStartedAt, "in full");
  const insts = await instancesOf(h);
  assert.equal(insts.filter((i) => i.release === 2 && i.state === "running").length, 2);
  assert.equal(insts.filter((i) => i.release === 1 && i.state === "running").length, 2);
  const log = h.ctx.deployLogs.read(d2.id).map((e) => e.message);
  assert.ok(
    log.some((l) => l.includes("preview at http://v2.hello.localhost:8080/")),
    log.join("\n"),
  );

  await h.m.rollouts.act("default", "hello", "promote");
  await h.m.rollouts.reconcile(KEY);
  svc = await service(h);
  assert.equal(svc.progressive?.weight, 100, "every request to v2 at once");
  await settle(h);
  assert.ok(
    (await instancesOf(h)).filter((i) => i.release === 1).every((i) => i.desired === "stopped"),
    "v1 drains",
  );
  assert.equal((await deployOf(h, d2.id)).state, "succeeded");
  assert.equal((await service(h)).progressive, undefined);
});

test("herd.yaml rollout: problems name the field", () => {
  const bad: [Partial<ServiceManifest>["rollout"], RegExp][] = [
    [
      { strategy: "canary", steps: [{ weight: 50 }, { weight: 20 }] },
      /rollout\.steps\.1\.weight: must be more than/,
    ],
    [{ strategy: "canary", analysis: { errorRate: "< 1" } }, /rollout\.analysis\.errorRate: must be `< 1%`/],
    [{ strategy: "canary", analysis: { p99: "< 0.5x baseline" } }, /rollout\.analysis\.p99: a factor/],
    [
      { strategy: "canary", steps: [{ weight: 5, pause: "soon" }] },
      /rollout\.steps\.0\.pause: must be a duration/,
    ],
    [{ strategy: "rolling", steps: [{ weight: 5 }] }, /rollout\.steps: only for strategy canary/],
    [{ strategy: "canary", promote: "1m" }, /rollout\.promote: only for strategy bluegreen/],
  ];
  return import("../model/manifest.ts").then(({ validateManifest }) => {
    for (const [rollout, message] of bad) {
      assert.throws(
        () => validateManifest({ app: "a", services: { web: { command: "x", rollout } } }),
        (err: Error) => message.test(err.message),
        JSON.stringify(rollout),
      );
    }
    assert.throws(
      () =>
        validateManifest({
          app: "a",
          services: { db: { command: "x", mode: "pet", rollout: { strategy: "canary" } } },
        }),
      /services\.db\.rollout\.strategy: canary runs two releases/,
    );
  });
});

test("a deploy during a canary replaces it: the new canary runs beside the release that serves, the old canary stops", async () => {
  const { h, d2 } = await canaryStarted();
  const d3 = await deploy(h, CANARY, "d".repeat(64));
  await settle(h);
  assert.equal((await deployOf(h, d2.id)).state, "failed", "superseded");
  const svc = await service(h);
  assert.deepEqual(
    [svc.release, svc.progressive?.baseline, svc.progressive?.weight],
    [3, 1, 25],
    "v3 beside v1, at its first step",
  );
  const insts = await instancesOf(h);
  assert.ok(
    insts.filter((i) => i.release === 2).every((i) => i.desired === "stopped"),
    "v2's canary stops",
  );
  assert.equal(insts.filter((i) => i.release === 1 && i.desired === "running").length, 4);
  assert.equal((await deployOf(h, d3.id)).state, "rolling_out");
});

test("per endpoint from traces: a canary slower on one route only aborts naming it; within bounds it passes", async () => {
  const asked: Parameters<EndpointSource>[0][] = [];
  let figures: EndpointFigures[] = [];
  const route = (release: number, name: string, p99Ms: number): EndpointFigures => ({
    route: name,
    release,
    requests: 30,
    errors: 0,
    p50Ms: p99Ms / 2,
    p99Ms,
  });
  const { h, d2 } = await canaryStarted(async (q) => {
    asked.push(q);
    return figures;
  });
  // Service-wide the canary is fine, and so is every route: the analysis passes and says how many routes.
  h.load.figures = [good(1, 300), good(2, 100)];
  figures = [
    route(1, "GET /", 40),
    route(2, "GET /", 42),
    route(1, "GET /search", 80),
    route(2, "GET /search", 90),
  ];
  h.clock.advance(5000);
  await h.m.rollouts.reconcile(KEY);
  let svc = await service(h);
  const passed = svc.progressive?.analyses.at(-1);
  assert.equal(passed?.verdict, "pass");
  assert.match(passed?.summary ?? "", /2 endpoints within bounds \(traces\)/);
  assert.equal(passed?.endpoints?.length, 2, "p99 of each route (the spec bounds p99 only)");
  const q = asked.at(-1)!;
  assert.equal(q.service, "hello/web");
  assert.equal(q.to - q.from, 5000 * 1000, "the analysis window, in µs");
  const byRelease = Object.values(q.releases).sort();
  assert.deepEqual([byRelease.filter((r) => r === 1).length > 0, byRelease.includes(2)], [true, true]);

  // One route 3.75x slower on the canary: the step fails, naming the route, though the service-wide p99 passes.
  figures = [
    route(1, "GET /", 40),
    route(2, "GET /", 41),
    route(1, "GET /search", 80),
    route(2, "GET /search", 300),
  ];
  h.clock.advance(5000);
  await h.m.rollouts.reconcile(KEY);
  svc = await service(h);
  assert.equal(svc.state, "failed");
  assert.match(svc.message, /per endpoint from traces: GET \/search p99 300ms ≥ 120ms \(baseline 80ms\)/);
  const failed = svc.progressive?.analyses.at(-1);
  assert.equal(failed?.endpoints?.[0]?.route, "GET /search");
  assert.equal(failed?.endpoints?.[0]?.passed, false);
  await settle(h);
  assert.equal((await deployOf(h, d2.id)).state, "failed");
});

test("per endpoint: routes with too few spans on either side are not compared; unreadable traces leave the gateway's verdict", async () => {
  let fail = false;
  const { h } = await canaryStarted(async () => {
    if (fail) throw new Error("worker gone");
    return [
      { route: "GET /rare", release: 1, requests: 30, errors: 0, p50Ms: 10, p99Ms: 20 },
      { route: "GET /rare", release: 2, requests: 3, errors: 0, p50Ms: 500, p99Ms: 900 },
    ];
  });
  h.load.figures = [good(1, 300), good(2, 100)];
  h.clock.advance(5000);
  await h.m.rollouts.reconcile(KEY);
  let last = (await service(h)).progressive?.analyses.at(-1);
  assert.equal(last?.verdict, "pass");
  assert.equal(last?.endpoints, undefined);
  fail = true;
  h.clock.advance(5000);
  await h.m.rollouts.reconcile(KEY);
  last = (await service(h)).progressive?.analyses.at(-1);
  assert.equal(last?.verdict, "pass");
});
