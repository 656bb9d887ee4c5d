// Controller decisions checked as data: an in-memory store, a manual clock,
// and heartbeats written by the test in place of real agents.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { RouteObject } from "../model/live-config.ts";
import { normalizeService } from "../model/manifest.ts";
import type { App, Deploy, Instance, Node, Release, Service } from "../model/objects.ts";
import type { Heartbeat, InstanceStatus } from "../model/protocol.ts";
import { appShortfalls } from "./capacity-check.ts";
import { DEFAULT_SETTINGS } from "./context.ts";
import { ControllerManager } from "./manager.ts";
import { heartbeatInterval } from "./node-controller.ts";
import { checkQuota } from "./quota.ts";
import { restartServices } from "./restart.ts";
import { scaleServices } from "./scale.ts";
import { judgeRollout } from "./service-rules.ts";
import { testContext } from "./testing.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function setup() {
  const dir = mkdtempSync(join(tmpdir(), "herd-ctl-"));
  dirs.push(dir);
  const { ctx, store, clock } = testContext(dir);
  const m = new ControllerManager(ctx);
  return { store, clock, ctx, m };
}

type Harness = ReturnType<typeof setup>;

function hb(instances: InstanceStatus[] = []): Heartbeat {
  return {
    address: "127.0.0.1",
    labels: {},
    capacity: { cpu: 4, memory: 8 * 1024 ** 3 },
    agentVersion: "test",
    isolation: { cgroups: "none", reason: "test" },
    instances,
  };
}

/** One agent round trip in which every instance the node should run reports `state`. */
async function agentReports(
  h: Harness,
  node: string,
  state: (i: Instance) => InstanceStatus["state"] | undefined,
  base: Heartbeat = hb(),
) {
  // What the node was last told to run (the reply of the previous round trip).
  const now = h.clock.now();
  const statuses: InstanceStatus[] = [];
  for (const d of (await instancesOf(h)).filter((i) => i.node === node)) {
    const run = d.desired === "running" || (d.drainUntil !== undefined && Date.parse(d.drainUntil) > now);
    const s = run ? state(d) : "stopped";
    if (s) statuses.push({ id: d.id, generation: d.generation, state: s, port: 20000, pid: 100 });
  }
  return h.m.nodes.handleHeartbeat(node, { ...base, instances: statuses });
}

/** `herd apps destroy`: the app marked destroying (the app controller takes it apart). */
async function markDestroying(h: Harness, key: string) {
  const app = (await h.store.get<App>("app", key))!;
  await h.store.put("app", key, { ...app.value, destroying: true }, { expectRevision: app.revision });
}

async function settle(h: Harness, rounds = 4) {
  for (let n = 0; n < rounds; n++) {
    await h.m.resync();
    await h.m.idle();
  }
}

const instancesOf = async (h: Harness) =>
  (await h.store.list<Instance>("instance")).items.map((o) => o.value);

async function deploy(
  h: Harness,
  spec: Partial<Parameters<typeof normalizeService>[2]>,
  slug = "a".repeat(64),
  options: { deadlineMs?: number } = {},
): Promise<Deploy> {
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
  const d = await h.m.deploys.startDeploy(
    "default",
    "hello",
    async () => ({
      source: "b".repeat(64),
      slug,
      services: { web: normalizeService("hello", "web", { command: "node server.js", ...spec }, undefined) },
      description: "test",
    }),
    options,
  );
  for (let n = 0; n < 50; n++) {
    const o = await h.store.get<Deploy>("deploy", `default/hello/${d.id}`);
    if (o?.value.state !== "building") return o!.value;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("build did not finish");
}

/** The deploy once it has failed (undefined if it has not within a quarter second). */
/** A harness whose node n1 runs `spec`'s instances, deployed and reported healthy. */
async function runningOnN1(spec: Parameters<typeof deploy>[1]): Promise<Harness> {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  await deploy(h, spec);
  await settle(h);
  await agentReports(h, "n1", () => "healthy");
  await settle(h);
  return h;
}

async function failedDeploy(h: Harness, app: string, id: string): Promise<Deploy | undefined> {
  for (let n = 0; n < 50; n++) {
    const o = (await h.store.get<Deploy>("deploy", `default/${app}/${id}`))!.value;
    if (o.state === "failed") return o;
    await new Promise((r) => setTimeout(r, 5));
  }
}

const deployState = async (h: Harness, id: string) =>
  (await h.store.get<Deploy>("deploy", `default/hello/${id}`))!.value;

test("a deploy places instances, they become running, the deploy succeeds", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  const d = await deploy(h, { instances: 2 });
  await settle(h);
  let insts = await instancesOf(h);
  assert.equal(insts.length, 2);
  assert.ok(insts.every((i) => i.node === "n1" && i.state === "provisioning"));
  await agentReports(h, "n1", () => "healthy");
  await settle(h);
  insts = await instancesOf(h);
  assert.ok(insts.every((i) => i.state === "running"));
  assert.equal((await deployState(h, d.id)).state, "succeeded");
  assert.equal((await h.store.get<App>("app", "default/hello"))!.value.release, 1);
  const events = await h.ctx.events.list({ app: "hello" });
  assert.ok(events.some((e) => e.reason === "Healthy"));
  assert.ok(events.some((e) => e.reason === "DeploySucceeded"));
});

test("a new release keeps the old instances until the new ones run, then drains them", async () => {
  const h = await runningOnN1({ instances: 2 });
  const v1 = (await instancesOf(h)).map((i) => i.id);

  const d2 = await deploy(h, { instances: 2, env: { V: "2" } }, "c".repeat(64));
  await settle(h);
  let insts = await instancesOf(h);
  assert.equal(insts.length, 4, "new instances start beside the old");
  assert.ok(
    insts.filter((i) => v1.includes(i.id)).every((i) => i.state === "running" && i.desired === "running"),
  );

  // New ones start but are not healthy yet: old ones keep serving.
  await agentReports(h, "n1", (i) => (v1.includes(i.id) ? "healthy" : "up"));
  await settle(h);
  insts = await instancesOf(h);
  assert.ok(insts.filter((i) => v1.includes(i.id)).every((i) => i.desired === "running"));

  // New ones healthy: old ones leave the gateway (draining) but keep running for the drain time.
  await agentReports(h, "n1", () => "healthy");
  await settle(h);
  insts = await instancesOf(h);
  const old = insts.filter((i) => v1.includes(i.id));
  assert.ok(old.every((i) => i.desired === "stopped" && i.state === "draining"));
  let reply = await h.m.nodes.handleHeartbeat("n1", hb());
  assert.ok(
    reply.instances.filter((i) => v1.includes(i.id)).every((i) => i.action === "run"),
    "still running while draining",
  );
  h.clock.advance(DEFAULT_SETTINGS.drainMs + 1);
  reply = await h.m.nodes.handleHeartbeat("n1", hb());
  assert.ok(reply.instances.filter((i) => v1.includes(i.id)).every((i) => i.action === "stop"));
  await agentReports(h, "n1", () => "healthy");
  await settle(h);
  insts = await instancesOf(h);
  assert.deepEqual(
    insts.filter((i) => v1.includes(i.id)),
    [],
    "stopped instances are deleted",
  );
  assert.equal((await deployState(h, d2.id)).state, "succeeded");
});

test("a finished deploy deletes the app's releases past --keep-releases that nothing uses; a rollback to one says so", async () => {
  const h = await runningOnN1({ instances: 1 });
  h.ctx.settings.keepReleases = 1;
  for (const slug of ["c", "d", "e"]) {
    const d = await deploy(h, { instances: 1, env: { SLUG: slug } }, slug.repeat(64));
    await settle(h);
    await agentReports(h, "n1", () => "healthy");
    await settle(h);
    h.clock.advance(DEFAULT_SETTINGS.drainMs + 1);
    await agentReports(h, "n1", () => "healthy");
    await settle(h);
    assert.equal((await deployState(h, d.id)).state, "succeeded");
  }
  const versions = (await h.store.list<Release>("release", { prefix: "default/hello/" })).items.map(
    (o) => o.value.version,
  );
  // v4 serves; v3's instance may still drain when v4's deploy ends (in use), the older ones go.
  assert.ok(!versions.includes(1) && !versions.includes(2) && versions.includes(4), versions.join(","));
  const events = await h.ctx.events.list({ app: "hello" });
  assert.ok(
    events.some(
      (e) =>
        e.reason === "ReleasesPruned" &&
        /deleted releases? v1.*: the app keeps its newest 1 and those in use/.test(e.message),
    ),
    JSON.stringify(events.filter((e) => e.reason === "ReleasesPruned")),
  );
  await assert.rejects(
    h.m.deploys.rollback("default", "hello", 1),
    /release v1 of hello was deleted: an app keeps its newest releases \(--keep-releases\) and those in use; it has v\d/,
  );
});

test("an instance the kernel's OOM killer ended is reported as killed for memory, naming its limit", async () => {
  const h = await runningOnN1({ instances: 1 });
  const [first] = await instancesOf(h);
  // As a shell reports it when its child was killed: code 137, no signal; the agent read the cgroup's OOM count.
  await h.m.nodes.handleHeartbeat("n1", {
    ...hb(),
    instances: [
      {
        id: first.id,
        generation: first.generation,
        state: "exited",
        exitCode: 137,
        signal: null,
        oomKilled: true,
      },
    ],
  });
  await settle(h);
  const events = await h.ctx.events.list({ app: "hello" });
  const why = "killed for memory: over its 256 MiB limit (the kernel's OOM killer)";
  assert.equal(events.find((e) => e.reason === "Exited")?.message, `${first.id}: running → crashed (${why})`);
  assert.equal(events.find((e) => e.reason === "Replacing")?.message, `${first.id} ${why}; replacing it`);
  // Without the kernel's word, a 137 is only an exit code.
  const h2 = await runningOnN1({ instances: 1 });
  const [other] = await instancesOf(h2);
  await h2.m.nodes.handleHeartbeat("n1", {
    ...hb(),
    instances: [{ id: other.id, generation: other.generation, state: "exited", exitCode: 137, signal: null }],
  });
  await settle(h2);
  const plain = await h2.ctx.events.list({ app: "hello" });
  assert.equal(
    plain.find((e) => e.reason === "Exited")?.message,
    `${other.id}: running → crashed (exited with code 137)`,
  );
});

test("an instance its node evicted for memory pressure is crashed with reason Evicted, and replaced", async () => {
  const h = await runningOnN1({ instances: 1 });
  const [first] = await instancesOf(h);
  const why =
    "evicted for node memory pressure: 80 MiB available, below 100 MiB; it used 300 MiB of a 128 MiB request (normal, burstable)";
  await h.m.nodes.handleHeartbeat("n1", {
    ...hb(),
    instances: [
      {
        id: first.id,
        generation: first.generation,
        state: "exited",
        exitCode: null,
        signal: "SIGTERM",
        evicted: why,
      },
    ],
  });
  await settle(h);
  const events = await h.ctx.events.list({ app: "hello" });
  assert.equal(
    events.find((e) => e.reason === "Evicted")?.message,
    `${first.id}: running → crashed (${why})`,
  );
  const now = await instancesOf(h);
  assert.ok(
    now.some((i) => i.id !== first.id && i.desired !== "stopped"),
    "a replacement is created",
  );
});

test("a crashed cattle instance is replaced by a new one; a crashed pet restarts in place", async () => {
  const h = await runningOnN1({ instances: 1 });
  const [first] = await instancesOf(h);
  await agentReports(h, "n1", () => "exited");
  await settle(h);
  h.clock.advance(1000);
  await settle(h);
  const alive = (await instancesOf(h)).filter((i) => i.desired === "running");
  assert.equal(alive.length, 1);
  assert.notEqual(alive[0].id, first.id, "cattle are replaced, not restarted");
  const events = await h.ctx.events.list({ app: "hello" });
  assert.ok(events.some((e) => e.reason === "Replacing"));

  const p = await runningOnN1({ instances: 1, mode: "pet" });
  const [pet] = await instancesOf(p);
  assert.equal(pet.id, "hello-web-0");
  await agentReports(p, "n1", () => "exited");
  await settle(p);
  p.clock.advance(1000);
  await settle(p);
  const [again] = await instancesOf(p);
  assert.equal(again.id, pet.id, "a pet keeps its id");
  assert.equal(again.generation, pet.generation + 1);
  assert.equal(again.node, "n1");
  assert.equal(again.restarts, 1);
});

test("a pet of a destroyed app is told to drop its data with its stop; a pet scaled down keeps it", async () => {
  const h = await runningOnN1({ instances: 2, mode: "pet" });
  // Scaled down: the highest ordinal stops, its data kept for a scale back up.
  await scaleServices(
    { store: h.store, events: h.ctx.events, unit: h.ctx.settings.unit },
    { tenant: "default", app: "hello", services: { web: 1 } },
  );
  await settle(h);
  // Past the gateway's drain, when a stop is a stop.
  h.clock.advance(60_000);
  await settle(h);
  let reply = await agentReports(h, "n1", () => "healthy");
  const down = reply.instances.find((d) => d.id === "hello-web-1");
  assert.equal(down?.action, "stop");
  assert.equal(down?.discardData, undefined);
  // Destroyed: the one left stops and its data goes.
  await markDestroying(h, "default/hello");
  await h.m.apps.reconcile("default/hello");
  await settle(h);
  h.clock.advance(60_000);
  await settle(h);
  reply = await agentReports(h, "n1", () => "healthy");
  const last = reply.instances.find((d) => d.id === "hello-web-0");
  assert.equal(last?.action, "stop");
  assert.equal(last?.discardData, true);
});

test("a pet scaled down and up again goes back to the node that holds its data, not where spread would put it", async () => {
  const h = await runningOnN1({ instances: 1, mode: "pet" });
  const scale = (n: number) =>
    scaleServices(
      { store: h.store, events: h.ctx.events, unit: h.ctx.settings.unit },
      { tenant: "default", app: "hello", services: { web: n } },
    );
  // Scaled to 0, past the drain; n1's agent stops the pet.
  const scaledAway = async () => {
    await scale(0);
    await settle(h);
    h.clock.advance(60_000);
    await settle(h);
    await agentReports(h, "n1", () => "healthy");
    await settle(h);
  };
  await scaledAway();
  assert.deepEqual(
    (await instancesOf(h)).filter((i) => i.desired === "running"),
    [],
  );
  // n1 keeps hello-web-0's volume and says so; n2, four times as big, is where a new instance would go.
  const big = { ...hb(), capacity: { cpu: 16, memory: 32 * 1024 ** 3 } };
  await h.m.nodes.handleHeartbeat("n1", { ...hb(), volumes: ["hello-web-0"] });
  await h.m.nodes.handleHeartbeat("n2", big);
  await scale(1);
  await settle(h);
  const [back] = (await instancesOf(h)).filter((i) => i.desired === "running");
  assert.deepEqual([back?.id, back?.node], ["hello-web-0", "n1"]);

  // Once n1 holds its volume no more (the node removed, or the data discarded), it goes where the scheduler says.
  await scaledAway();
  await h.m.nodes.handleHeartbeat("n1", hb());
  await scale(1);
  await settle(h);
  const [free] = (await instancesOf(h)).filter((i) => i.desired === "running");
  assert.deepEqual([free?.id, free?.node], ["hello-web-0", "n2"]);
});

test("a heartbeat's pet volumes of a destroyed app are named back to discard; a live or unknown app's stay", async () => {
  const h = await runningOnN1({ instances: 1, mode: "pet" });
  await h.store.put("app_tombstone", "acme/hello", {
    tenant: "acme",
    app: "hello",
    destroyedAt: "2026-12-01T00:00:00Z",
  });
  // Its own pet; a scaled-down one of hello; acme's destroyed hello; an app this store never knew.
  const volumes = ["hello-web-0", "hello-web-7", "acme.hello-web-0", "never-db-0"];
  let reply = await agentReports(h, "n1", () => "healthy", { ...hb(), volumes });
  assert.deepEqual(reply.discardVolumes, ["acme.hello-web-0"]);
  // hello destroyed: its tombstone written (one past 30 days goes), and its copy left here (hello-web-7) goes.
  const ancient = new Date(h.clock.now() - 31 * 86_400_000).toISOString();
  await h.store.put("app_tombstone", "default/ancient", {
    tenant: "default",
    app: "ancient",
    destroyedAt: ancient,
  });
  await markDestroying(h, "default/hello");
  for (let n = 0; n < 5 && (await h.store.get("app", "default/hello")); n++) {
    await h.m.apps.reconcile("default/hello");
    await settle(h);
    h.clock.advance(60_000);
    await settle(h);
    await agentReports(h, "n1", () => "stopped");
    await settle(h);
    await h.m.apps.reconcile("default/hello");
  }
  assert.equal(await h.store.get("app", "default/hello"), undefined, "hello destroyed");
  assert.ok(await h.store.get("app_tombstone", "default/hello"));
  assert.equal(
    await h.store.get("app_tombstone", "default/ancient"),
    undefined,
    "a tombstone past 30 days stays",
  );
  reply = await agentReports(h, "n1", () => "healthy", { ...hb(), volumes: ["hello-web-7", "never-db-0"] });
  assert.deepEqual(reply.discardVolumes, ["hello-web-7"]);
});

test("an instance its node's herd stopped (herd up shutting down) restarts in place, counted as no crash", async () => {
  const h = await runningOnN1({ instances: 1 });
  const [before] = await instancesOf(h);
  // It ran for a while; the next herd up's agent adopts it as stopped, says so, and starts it again.
  h.clock.advance(600_000);
  await agentReports(h, "n1", () => "stopped");
  await settle(h);
  h.clock.advance(2000);
  await settle(h);
  const [stopped] = await instancesOf(h);
  assert.deepEqual(
    [stopped?.id, stopped?.state, stopped?.reason],
    [before?.id, "provisioning", "Restarting"],
  );
  await agentReports(h, "n1", () => "healthy");
  await settle(h);
  const all = await instancesOf(h);
  assert.deepEqual(
    all.map((i) => [i.id, i.state, i.generation]),
    [[before?.id, "running", before?.generation]],
    "the same instance runs again: not replaced, not restarted as a crash",
  );
  const service = (await h.ctx.store.get<Service>("service", "default/hello/web"))?.value;
  assert.equal(service?.crashes ?? 0, 0);
  const events = await h.ctx.events.list({ app: "hello" });
  assert.ok(events.some((e) => e.reason === "Restarting" && e.type === "normal"));
  assert.ok(!events.some((e) => e.reason === "Replacing" || e.type === "warning"));
});

test("a release that never becomes healthy fails its deploy and the old one keeps serving", async () => {
  const h = await runningOnN1({ instances: 1 });
  const [v1] = await instancesOf(h);
  const d2 = await deploy(h, { instances: 1, command: "exit 1" }, "d".repeat(64));
  for (let n = 0; n < 6; n++) {
    await settle(h);
    await agentReports(h, "n1", (i) => (i.id === v1.id ? "healthy" : "exited"));
    h.clock.advance(5000);
  }
  await settle(h);
  const d = await deployState(h, d2.id);
  assert.equal(d.state, "failed");
  assert.match(d.message, /v1 keeps serving/);
  // Heal's RolloutFailed (planned by service-heal.ts, recorded by reconcile): one about the service,
  // naming the deploy, and the retired instance's own.
  const failures = (await h.ctx.events.list({ app: "hello" })).filter((e) => e.reason === "RolloutFailed");
  assert.equal(failures.length, 2);
  assert.match(
    failures.find((e) => e.deploy === d2.id)?.message ?? "",
    /^web: v2 instance hello-web-\S+ exit status unknown; rollout stopped$/,
  );
  assert.ok(failures.some((e) => e.message === "its release failed to roll out"));
  const svc = (await h.store.get<Service>("service", "default/hello/web"))!.value;
  assert.equal(svc.release, 1);
  const alive = (await instancesOf(h)).filter((i) => i.desired === "running");
  assert.deepEqual(
    alive.map((i) => [i.id, i.state]),
    [[v1.id, "running"]],
  );
});

test("a lost node's cattle move to another node", async () => {
  const h = await runningOnN1({ instances: 2 });
  await h.m.nodes.handleHeartbeat("n2", hb());
  h.clock.advance(DEFAULT_SETTINGS.nodeLostMs + 1000);
  await h.m.nodes.handleHeartbeat("n2", hb());
  await h.m.nodes.checkNodes();
  await settle(h);
  const alive = (await instancesOf(h)).filter((i) => i.desired === "running");
  assert.equal(alive.length, 2);
  assert.ok(
    alive.every((i) => i.node === "n2"),
    "replacements on the node that is left",
  );
  const events = await h.ctx.events.list({ platform: true });
  assert.ok(events.some((e) => e.reason === "NodeLost"));
});

test("scaling to zero and back", async () => {
  const h = await runningOnN1({ instances: 3 });
  const scale = async (instances: number) => {
    const o = (await h.store.get<Service>("service", "default/hello/web"))!;
    await h.store.put("service", o.key, { ...o.value, instances, state: "scaling" });
    await settle(h);
  };
  const first = (await instancesOf(h)).map((i) => i.id).sort();
  assert.equal(first.length, 3);

  await scale(0);
  assert.deepEqual(
    (await instancesOf(h)).filter((i) => i.desired === "running"),
    [],
    "none left running",
  );
  assert.ok((await instancesOf(h)).every((i) => i.reason === "ScaledDown" && /scaled to 0/.test(i.message)));
  // Past the drain, the agent stops them all and says so: nothing is left of the three.
  h.clock.advance(3000);
  await agentReports(h, "n1", () => "healthy");
  await settle(h);
  assert.deepEqual(await instancesOf(h), [], "at zero, no instance at all");

  await scale(2);
  await agentReports(h, "n1", () => "healthy");
  await settle(h);
  const back = (await instancesOf(h)).filter((i) => i.desired === "running");
  assert.equal(back.length, 2);
  assert.ok(
    back.every((i) => i.state === "running" && i.node === "n1"),
    JSON.stringify(back),
  );
  assert.ok(
    back.every((i) => !first.includes(i.id)),
    "new instances, not the stopped ones",
  );
  const svc = (await h.store.get<Service>("service", "default/hello/web"))!.value;
  assert.deepEqual([svc.instances, svc.state], [2, "running"]);
});

test("a new release updates pets in place, one at a time", async () => {
  const h = await runningOnN1({ instances: 2, mode: "pet" });
  const d2 = await deploy(h, { instances: 2, mode: "pet", env: { V: "2" } }, "e".repeat(64));
  await settle(h);
  let pets = await instancesOf(h);
  assert.deepEqual(pets.map((p) => p.id).sort(), ["hello-web-0", "hello-web-1"]);
  assert.equal(pets.filter((p) => p.release === 2).length, 1, "one pet at a time");
  for (let n = 0; n < 3; n++) {
    await agentReports(h, "n1", () => "healthy");
    await settle(h);
  }
  pets = await instancesOf(h);
  assert.ok(pets.every((p) => p.release === 2 && p.generation === 2 && p.state === "running"));
  assert.equal((await deployState(h, d2.id)).state, "succeeded");
});

test("a pet whose new release never becomes healthy goes back to the old one in place: same id, node and data", async () => {
  const h = await runningOnN1({ instances: 1, mode: "pet" });
  const [pet] = await instancesOf(h);
  const d2 = await deploy(h, { instances: 1, mode: "pet", command: "exit 1" }, "d".repeat(64));
  for (let n = 0; n < 8; n++) {
    await settle(h);
    await agentReports(h, "n1", (i) => (i.release === 1 ? "healthy" : "exited"));
    h.clock.advance(5000);
  }
  await settle(h);
  const d = await deployState(h, d2.id);
  assert.equal(d.state, "failed");
  assert.match(d.message, /v1 comes back in place/);
  const alive = (await instancesOf(h)).filter((i) => i.desired === "running");
  assert.deepEqual(
    alive.map((i) => [i.id, i.release, i.node, i.state]),
    [[pet.id, 1, "n1", "running"]],
    "the pet keeps its id (and so its data), not a new hello-web-1",
  );
  const events = await h.ctx.events.list({ app: "hello" });
  assert.ok(events.some((e) => e.reason === "Updating" && /from v2 to v1/.test(e.message)));
});

test("pets on a lost node wait for it and run there again when it returns", async () => {
  const h = await runningOnN1({ instances: 1, mode: "pet" });
  await h.m.nodes.handleHeartbeat("n2", hb());
  h.clock.advance(DEFAULT_SETTINGS.nodeLostMs + 1000);
  await h.m.nodes.handleHeartbeat("n2", hb());
  await h.m.nodes.checkNodes();
  await settle(h);
  let pets = await instancesOf(h);
  assert.deepEqual(
    pets.map((p) => [p.id, p.node, p.state]),
    [["hello-web-0", "n1", "lost"]],
    "not moved",
  );
  const events = await h.ctx.events.list({ app: "hello" });
  assert.ok(events.some((e) => e.reason === "InstanceLost" && /waits for the node/.test(e.message)));
  // The node comes back with the pet still running.
  await agentReports(h, "n1", () => "healthy");
  await settle(h);
  pets = await instancesOf(h);
  assert.deepEqual(
    pets.map((p) => [p.id, p.node, p.state]),
    [["hello-web-0", "n1", "running"]],
  );
});

test("a deploy whose route another app serves fails before making a release", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  await deploy(h, { instances: 1 });
  await settle(h);
  await h.store.put("app", "default/other", {
    tenant: "default",
    name: "other",
    createdAt: new Date().toISOString(),
    release: null,
    latestVersion: 0,
  } satisfies App);
  const d = await h.m.deploys.startDeploy("default", "other", async () => ({
    source: "b".repeat(64),
    slug: "f".repeat(64),
    services: {
      web: normalizeService(
        "other",
        "web",
        { command: "x", routes: [{ host: "hello.localhost" }] },
        undefined,
      ),
    },
    description: "clash",
  }));
  const failed = await failedDeploy(h, "other", d.id);
  assert.match(failed?.message ?? "", /route hello\.localhost\/ of web is already served by hello\/web/);
  assert.equal((await h.store.list("release", { prefix: "default/other/" })).items.length, 0);
});

const GiB = 1024 ** 3;
const small = (cpu: number, memory: number): Heartbeat => ({ ...hb(), capacity: { cpu, memory } });

async function setNode(h: Harness, name: string, change: Partial<Node>) {
  const o = (await h.store.get<Node>("node", name))!;
  await h.store.put("node", name, { ...o.value, ...change }, { expectRevision: o.revision });
}

const running = async (h: Harness) =>
  (await instancesOf(h)).filter((i) => i.desired === "running" && i.state === "running");

test("drain replaces each cattle instance elsewhere before stopping it, never going below the count", async () => {
  const h = await runningOnN1({ instances: 2 });
  await h.m.nodes.handleHeartbeat("n2", hb());
  await setNode(h, "n1", { schedulable: false, draining: true });
  await settle(h);
  // Replacements are placed on n2 while both old ones keep running.
  let all = await instancesOf(h);
  assert.equal(all.filter((i) => i.node === "n2" && i.desired === "running").length, 2);
  assert.equal((await running(h)).filter((i) => i.node === "n1").length, 2);
  // n1's heartbeats go on during the drain, and rewrite its Node now and then: it stays draining.
  h.clock.advance(6000);
  await agentReports(h, "n1", () => "healthy");
  await h.m.nodes.handleHeartbeat("n2", hb());
  await settle(h);
  const n1 = (await h.store.get<Node>("node", "n1"))!.value;
  assert.equal(n1.draining, true, "a heartbeat keeps the node draining");
  assert.equal(n1.schedulable, false);
  await agentReports(h, "n2", () => "healthy");
  await settle(h);
  all = await instancesOf(h);
  assert.deepEqual(
    all.filter((i) => i.desired === "running").map((i) => [i.node, i.state]),
    [
      ["n2", "running"],
      ["n2", "running"],
    ],
  );
  assert.ok(all.filter((i) => i.node === "n1").every((i) => i.desired === "stopped" && i.reason === "Moved"));
});

test("a drain with nowhere to put replacements waits, and the old instances keep running", async () => {
  const h = await runningOnN1({ instances: 1, resources: { memory: "1Gi" } });
  await h.m.nodes.handleHeartbeat("n2", small(4, GiB / 2));
  await setNode(h, "n1", { schedulable: false, draining: true });
  await settle(h);
  const all = await instancesOf(h);
  assert.equal((await running(h)).length, 1, "the old instance keeps serving");
  const waiting = all.find((i) => i.state === "pending");
  assert.match(waiting?.message ?? "", /2 nodes: 1 cordoned, 1 insufficient memory/);
});

test("a critical service preempts a low one when capacity is short, with an event", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", small(1, 4 * GiB));
  await h.store.put("app", "default/hello", {
    tenant: "default",
    name: "hello",
    createdAt: new Date().toISOString(),
    release: null,
    latestVersion: 0,
  } satisfies App);
  const spec = (criticality: "low" | "critical", instances: number) =>
    normalizeService(
      "hello",
      "x",
      { command: "x", criticality, instances, resources: { cpu: 0.5 } },
      undefined,
    );
  await h.m.deploys.startDeploy("default", "hello", async () => ({
    source: "b".repeat(64),
    slug: "a".repeat(64),
    services: { batch: spec("low", 2) },
    description: "low",
  }));
  await settle(h);
  await agentReports(h, "n1", () => "healthy", small(1, 4 * GiB));
  await settle(h);
  // Another app's critical service (a deploy of batch and api together could never finish: it fails at once).
  await h.store.put("app", "default/shop", {
    tenant: "default",
    name: "shop",
    createdAt: new Date().toISOString(),
    release: null,
    latestVersion: 0,
  } satisfies App);
  await h.m.deploys.startDeploy("default", "shop", async () => ({
    source: "b".repeat(64),
    slug: "c".repeat(64),
    services: { api: spec("critical", 1) },
    description: "critical",
  }));
  await settle(h);
  const all = (await instancesOf(h)).filter((i) => i.desired === "running");
  assert.equal(all.filter((i) => i.service === "api" && i.node === "n1").length, 1);
  const events = await h.ctx.events.list({ app: "hello" });
  assert.ok(
    events.some((e) => e.reason === "Preempted" && /to make room for shop-api/.test(e.message)),
    JSON.stringify(events.map((e) => [e.reason, e.message])),
  );
});

test("a scale past the tenant's quota is refused; a deploy past it fails before a release", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  await h.store.put("tenant", "default", { name: "default", createdAt: "", quota: { units: 3 } });
  await deploy(h, { instances: 2 });
  await settle(h);
  await assert.rejects(
    checkQuota(
      h.store,
      h.ctx.settings.unit,
      "default",
      "hello",
      { web: { instances: 4, resources: { cpu: 0.1, memory: 128 * 1024 ** 2 } } },
      false,
    ),
    /tenant default is over its quota: 2 units in use, this asks for 4 \(web: 4 × 1\) on top of 0 elsewhere, making 4; the limit is 3 units/,
  );
  const d = await deploy(h, { instances: 5 }, "e".repeat(64));
  const failed = await failedDeploy(h, "hello", d.id);
  assert.match(failed?.message ?? "", /over its quota/);
  assert.equal((await instancesOf(h)).length, 2, "nothing changed");
});

test("user: image deploys only in a tenant allowed it, and an instance gets it only while the tenant still is", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", { ...hb(), drivers: ["docker"] });
  const spec = { image: "herd-base:1", user: "image" as const };
  const refused = await deploy(h, { ...spec, instances: 1 });
  const failed = await failedDeploy(h, "hello", refused.id);
  assert.match(
    failed?.message ?? "",
    /services\.web\.user: tenant default may not run containers as their image's user .*herd tenants image-user default allow/,
  );
  assert.equal((await instancesOf(h)).length, 0, "nothing placed");

  await h.store.put("tenant", "default", { name: "default", createdAt: "", allowImageUser: true });
  await deploy(h, { ...spec, instances: 1 }, "e".repeat(64));
  await settle(h);
  const [first] = await instancesOf(h);
  assert.equal(first?.run.imageUser, true);

  // Denied again: what runs keeps its spec; an instance made after it runs as the tenant's uid.
  await h.store.put("tenant", "default", { name: "default", createdAt: "" });
  const svc = (await h.store.get<Service>("service", "default/hello/web"))!;
  await h.store.put("service", svc.key, { ...svc.value, instances: 2 }, { expectRevision: svc.revision });
  await settle(h);
  const all = await instancesOf(h);
  assert.equal(all.length, 2);
  assert.deepEqual(all.map((i) => i.run.imageUser ?? false).sort(), [false, true]);
});

test("a cordon written between a heartbeat's read and write: the heartbeat retries, keeps the cordon, answers no 409", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  h.clock.advance(60_000); // the next heartbeat writes the node (its last write is old)
  const put = h.store.put.bind(h.store);
  let cordoned = false;
  h.store.put = (async (kind, key, value, options) => {
    if (kind === "node" && !cordoned) {
      cordoned = true;
      const o = (await h.store.get<Node>("node", "n1"))!;
      await put("node", "n1", { ...o.value, schedulable: false }, { expectRevision: o.revision });
    }
    return put(kind, key, value, options);
  }) as typeof h.store.put;
  await h.m.nodes.handleHeartbeat("n1", hb());
  assert.ok(cordoned, "the competing write happened");
  const n = (await h.store.get<Node>("node", "n1"))!.value;
  assert.equal(n.schedulable, false, "the cordon stays");
  assert.equal(n.lastHeartbeat, new Date(h.clock.now()).toISOString(), "the heartbeat was written");
});

test("an operator moves a pet to another node: same id, new node", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  await h.m.nodes.handleHeartbeat("n2", hb());
  await deploy(h, { instances: 1, mode: "pet" });
  await settle(h);
  const pet = (await instancesOf(h))[0];
  await agentReports(h, pet.node!, () => "healthy");
  await settle(h);
  const to = pet.node === "n1" ? "n2" : "n1";
  const o = (await h.store.get<Instance>("instance", pet.id))!;
  await h.store.put("instance", pet.id, { ...o.value, moving: { to } }, { expectRevision: o.revision });
  await settle(h);
  const moved = (await instancesOf(h))[0];
  assert.deepEqual(
    [moved.id, moved.node, moved.state, moved.moving],
    [pet.id, to, "provisioning", undefined],
  );
});

test("heartbeats that jitter by up to 2 s never make a node not ready; silence makes it lost within 10 s", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  // A minute of heartbeats every 1 s ± 2 s (gaps of 1 to 3 s), checked every half second.
  let next = 1000;
  let seed = 7;
  const jitter = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return 1000 + (seed / 2 ** 31) * 2000;
  };
  for (let t = 0; t < 60_000; t += 500) {
    h.clock.advance(500);
    if (t + 500 >= next) {
      await h.m.nodes.handleHeartbeat("n1", hb());
      next += jitter();
    }
    await h.m.nodes.checkNodes();
    assert.equal((await h.store.get<Node>("node", "n1"))?.value.state, "ready", `at ${t} ms`);
  }
  // Then silence: lost once the timeout passes, checked every half second as the server does.
  let lostAfter = 0;
  while ((await h.store.get<Node>("node", "n1"))?.value.state !== "lost") {
    h.clock.advance(500);
    lostAfter += 500;
    await h.m.nodes.checkNodes();
  }
  assert.ok(
    lostAfter > DEFAULT_SETTINGS.nodeLostMs - 3000 && lostAfter <= 10_500,
    `lost after ${lostAfter} ms`,
  );
});

test("a placement round and a heartbeat write one event per service and reason, naming every instance", async () => {
  const h = await runningOnN1({ instances: 3 });
  const ids = (await instancesOf(h)).map((i) => i.id).sort();
  const events = await h.ctx.events.list({ tenant: "default", app: "hello" });
  for (const reason of ["Scheduled", "Healthy"]) {
    const of = events.filter((e) => e.reason === reason);
    assert.equal(of.length, 1, `one ${reason} event`);
    assert.match(of[0]!.message, /^3 instances: /);
    for (const id of ids) assert.ok(of[0]!.message.includes(id), `${reason} names ${id}`);
    assert.equal(of[0]!.service, "web");
    assert.equal(of[0]!.node, "n1");
  }
  // One alone keeps its own event, with its instance.
  const one = (await instancesOf(h))[0]!;
  await agentReports(h, "n1", (i) => (i.id === one.id ? "unhealthy" : "healthy"));
  const crashed = (await h.ctx.events.list({ tenant: "default", app: "hello" })).filter(
    (e) => e.reason === "Unhealthy",
  );
  assert.deepEqual(
    crashed.map((e) => e.instance),
    [one.id],
  );
});

test("a server that was behind excuses its nodes that long: not lost for the time it could not listen", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  await h.m.nodes.handleHeartbeat("n2", hb());
  // The server stalled past the lost timeout; n2's heartbeat was read at its end, n1's was not yet.
  h.clock.advance(DEFAULT_SETTINGS.nodeLostMs + 1000);
  await h.m.nodes.handleHeartbeat("n2", hb());
  h.m.nodes.excuse(DEFAULT_SETTINGS.nodeLostMs + 1000);
  await h.m.nodes.checkNodes();
  assert.equal((await h.store.get<Node>("node", "n1"))?.value.state, "ready");
  // Silence after the stall counts as usual.
  h.clock.advance(DEFAULT_SETTINGS.nodeLostMs + 1000);
  await h.m.nodes.handleHeartbeat("n2", hb());
  await h.m.nodes.checkNodes();
  assert.equal((await h.store.get<Node>("node", "n1"))?.value.state, "lost");
  assert.equal((await h.store.get<Node>("node", "n2"))?.value.state, "ready");
});

test("most nodes silent at once are held off for two lost timeouts, then lost; one silent among many is lost at once", async () => {
  const h = setup();
  const state = async (n: string) => (await h.store.get<Node>("node", n))?.value.state;
  for (const n of ["n1", "n2", "n3", "n4"]) await h.m.nodes.handleHeartbeat(n, hb());
  // Only n4 keeps heartbeating: 3 of 4 silent looks like a server that cannot hear them.
  h.clock.advance(DEFAULT_SETTINGS.nodeLostMs + 1000);
  await h.m.nodes.handleHeartbeat("n4", hb());
  await h.m.nodes.checkNodes();
  assert.deepEqual([await state("n1"), await state("n2"), await state("n3")], ["ready", "ready", "ready"]);
  // Past the hold (two lost timeouts from when it began): the silence is real.
  h.clock.advance(2 * DEFAULT_SETTINGS.nodeLostMs);
  await h.m.nodes.handleHeartbeat("n4", hb());
  await h.m.nodes.checkNodes();
  assert.deepEqual([await state("n1"), await state("n2"), await state("n3")], ["lost", "lost", "lost"]);
  // Back, then one alone goes silent: lost without a hold.
  for (const n of ["n1", "n2", "n3", "n4"]) await h.m.nodes.handleHeartbeat(n, hb());
  h.clock.advance(DEFAULT_SETTINGS.nodeLostMs + 1000);
  for (const n of ["n2", "n3", "n4"]) await h.m.nodes.handleHeartbeat(n, hb());
  await h.m.nodes.checkNodes();
  assert.equal(await state("n1"), "lost");
});

test("a node's silence counts from its last answer, not from when its heartbeat came", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  // The server took longer than the not-ready timeout to answer that heartbeat.
  h.clock.advance(DEFAULT_SETTINGS.nodeNotReadyMs + 500);
  h.m.nodes.answered("n1");
  h.clock.advance(1000);
  await h.m.nodes.checkNodes();
  assert.equal((await h.store.get<Node>("node", "n1"))?.value.state, "ready");
});

test("a deploy whose route a route object (of any app) serves fails; API traffic overrides survive a deploy", async () => {
  const h = await runningOnN1({ instances: 1 });
  assert.equal((await h.store.get<App>("app", "default/hello"))?.value.release, 1);
  await h.store.put("route", "default/hello/beta", {
    tenant: "default",
    app: "hello",
    name: "beta",
    spec: { service: "web", host: "beta.localhost" },
    createdAt: "",
    updatedAt: "",
  } satisfies RouteObject);
  const web = (await h.store.get<Service>("service", "default/hello/web"))!;
  await h.store.put("service", web.key, { ...web.value, traffic: { concurrency: 7, breaker: null } });
  const d = await h.m.deploys.startDeploy("default", "hello", async () => ({
    source: "c".repeat(64),
    slug: "f".repeat(64),
    services: {
      web: normalizeService(
        "hello",
        "web",
        { command: "x", routes: [{ host: "hello.localhost" }, { host: "beta.localhost" }] },
        undefined,
      ),
    },
    description: "clash with a route object",
  }));
  const failed = await failedDeploy(h, "hello", d.id);
  assert.match(
    failed?.message ?? "",
    /route beta\.localhost\/ of web is already served by route hello\/beta/,
  );

  // A deploy that leaves the traffic policies alone keeps the overrides; one that changes the breaker drops that one.
  await deploy(h, { instances: 1, breaker: { failures: 3 } });
  const kept = (await h.store.get<Service>("service", "default/hello/web"))!.value;
  assert.deepEqual(kept.traffic, { concurrency: 7 });
});

test("a drain with nowhere to go stops instances down to minAvailable, no further", async () => {
  const h = await runningOnN1({ instances: 3, minAvailable: 2, resources: { memory: "1Gi" } });
  // n2 has room for no replacement.
  await h.m.nodes.handleHeartbeat("n2", small(4, GiB / 2));
  await setNode(h, "n1", { schedulable: false, draining: true });
  await settle(h);
  const all = await instancesOf(h);
  const stillRunning = all.filter((i) => i.node === "n1" && i.desired === "running");
  assert.equal(stillRunning.length, 2, "the budget keeps 2 running");
  assert.equal(all.filter((i) => i.reason === "Moved").length, 1, "one stopped early");
  assert.equal(all.filter((i) => i.state === "pending").length, 3, "replacements wait for room");
});

test("an operator moves a cattle instance: a replacement starts on another node, then the old one stops", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  await h.m.nodes.handleHeartbeat("n2", hb());
  await deploy(h, { instances: 1 });
  await settle(h);
  const old = (await instancesOf(h))[0];
  await agentReports(h, old.node!, () => "healthy");
  await settle(h);
  const o = (await h.store.get<Instance>("instance", old.id))!;
  await h.store.put("instance", old.id, { ...o.value, moving: {} }, { expectRevision: o.revision });
  await settle(h);
  let all = await instancesOf(h);
  const replacement = all.find((i) => i.id !== old.id);
  assert.ok(replacement, "a replacement was created");
  assert.notEqual(replacement.node, old.node, "on another node");
  assert.equal(all.find((i) => i.id === old.id)?.desired, "running", "the old one serves until then");
  await agentReports(h, replacement.node!, () => "healthy");
  await settle(h);
  all = await instancesOf(h);
  assert.equal(all.find((i) => i.id === old.id)?.desired, "stopped");
  assert.equal(all.find((i) => i.id === old.id)?.reason, "Moved");
});

test("a cattle instance moved off the only node: its replacement waits, saying why, and the old one keeps serving", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  await deploy(h, { instances: 1 });
  await settle(h);
  const old = (await instancesOf(h))[0];
  await agentReports(h, "n1", () => "healthy");
  await settle(h);
  const o = (await h.store.get<Instance>("instance", old.id))!;
  await h.store.put("instance", old.id, { ...o.value, moving: {} }, { expectRevision: o.revision });
  await settle(h);
  const all = await instancesOf(h);
  const replacement = all.find((i) => i.id !== old.id);
  assert.equal(replacement?.state, "pending");
  assert.equal(replacement?.message, "1 node: 1 being moved off");
  assert.equal(all.find((i) => i.id === old.id)?.state, "running");
});

/** A harness whose node n1 (`cpu` cores) runs `instances` of web v1, healthy. */
async function fullNode(cpu: number, spec: Parameters<typeof deploy>[1]) {
  const h = setup();
  const base = small(cpu, 8 * GiB);
  await h.m.nodes.handleHeartbeat("n1", base);
  await deploy(h, spec);
  await settle(h);
  await agentReports(h, "n1", () => "healthy", base);
  await settle(h);
  return { h, base };
}

test("a deploy that cannot be placed on today's nodes fails at once, with the reason in numbers; the old release keeps serving", async () => {
  const { h } = await fullNode(1.9, { instances: 1 });
  const [v1] = await instancesOf(h);
  assert.equal(v1?.state, "running");
  const d2 = await deploy(h, { instances: 12, resources: { cpu: 0.5 } }, "c".repeat(64));
  await settle(h); // no time passes
  const d = await deployState(h, d2.id);
  assert.equal(d.state, "failed");
  assert.equal(
    d.message,
    "web: v2: 9 of 12 instances cannot be placed: needs 6.0 CPU, 1.9 free on 1 node: n1 1.9 free of 1.9. v1 keeps serving.",
  );
  const svc = (await h.store.get<Service>("service", "default/hello/web"))!.value;
  assert.deepEqual([svc.release, svc.state, svc.rollout], [1, "running", undefined]);
  assert.deepEqual(
    (await instancesOf(h)).filter((i) => i.desired === "running").map((i) => [i.id, i.state]),
    [[v1.id, "running"]],
    "v1 serves; v2's instances are gone",
  );
  const events = await h.ctx.events.list({ app: "hello" });
  assert.ok(events.some((e) => e.reason === "RolloutUnschedulable" && e.deploy === d2.id));
});

test("a first deploy that cannot be placed fails and leaves nothing waiting for room: more room later runs nothing", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", small(1.9, 8 * GiB));
  const d1 = await deploy(h, { instances: 3, resources: { cpu: 0.8 } });
  await settle(h);
  const d = await deployState(h, d1.id);
  assert.equal(d.state, "failed");
  assert.match(d.message, /1 of 3 instances cannot be placed.*Nothing was running before\./);
  // The two that fit stay (they were placed); the third, waiting for a node, is gone.
  const waiting = (await instancesOf(h)).filter((i) => i.desired === "running" && !i.node);
  assert.deepEqual(waiting, []);
  const events = await h.ctx.events.list({ app: "hello" });
  assert.equal(events.filter((e) => e.reason === "ServiceFailed").length, 1, JSON.stringify(events));
  // A bigger node joins: nothing of the failed deploy is placed on it.
  await h.m.nodes.handleHeartbeat("n2", small(8, 8 * GiB));
  await settle(h);
  assert.deepEqual(
    (await instancesOf(h)).filter((i) => i.node === "n2").map((i) => i.id),
    [],
  );
});

test("a rollout without progress fails at its deadline: 120 s by default, herd.yaml's, the deploy's; the old release keeps serving", async () => {
  // n1 has room for the 4 running v1 instances only: v2's cannot start beside them, and v1's stay until v2's run.
  const { h } = await fullNode(0.4, { instances: 4 });
  const v1 = (await running(h)).map((i) => i.id).sort();
  assert.equal(v1.length, 4);
  const serving = async () => (await running(h)).map((i) => i.id).sort();

  const d2 = await deploy(h, { instances: 4, env: { V: "2" } }, "c".repeat(64));
  await settle(h);
  assert.equal(
    (await deployState(h, d2.id)).state,
    "rolling_out",
    "it could fit once v1 is gone: no fail-fast",
  );
  h.clock.advance(119_000);
  await settle(h);
  assert.equal((await deployState(h, d2.id)).state, "rolling_out");
  h.clock.advance(2000);
  await settle(h);
  const failed = await deployState(h, d2.id);
  assert.equal(failed.state, "failed");
  assert.equal(
    failed.message,
    "web: v2 made no progress for 120s (its rollout deadline): 0 of 4 instances running, 4 pending (1 node: 1 insufficient cpu). v1 keeps serving.",
  );
  assert.deepEqual(await serving(), v1);
  const events = await h.ctx.events.list({ app: "hello" });
  assert.ok(events.some((e) => e.reason === "ProgressDeadlineExceeded" && e.deploy === d2.id));

  // herd.yaml's deadline.
  const d3 = await deploy(h, { instances: 4, env: { V: "3" }, rollout: { deadline: "30s" } }, "d".repeat(64));
  await settle(h);
  h.clock.advance(29_000);
  await settle(h);
  assert.equal((await deployState(h, d3.id)).state, "rolling_out");
  h.clock.advance(2000);
  await settle(h);
  assert.match((await deployState(h, d3.id)).message, /^web: v3 made no progress for 30s/);

  // The deploy's deadline wins over herd.yaml's.
  const d4 = await deploy(
    h,
    { instances: 4, env: { V: "4" }, rollout: { deadline: "30s" } },
    "e".repeat(64),
    {
      deadlineMs: 10_000,
    },
  );
  await settle(h);
  h.clock.advance(11_000);
  await settle(h);
  assert.match((await deployState(h, d4.id)).message, /^web: v4 made no progress for 10s/);
  assert.deepEqual(await serving(), v1, "v1 served throughout");
});

test("a slow rollout that keeps making progress outlives its deadline", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  const spec = { instances: 2, health: { startup: 200 }, rollout: { deadline: 100 } };
  const d = await deploy(h, spec);
  await settle(h); // both placed
  const [a, b] = await instancesOf(h);
  h.clock.advance(90_000);
  await agentReports(h, "n1", (i) => (i.id === a?.id ? "healthy" : "up"));
  await settle(h);
  h.clock.advance(90_000);
  await settle(h);
  assert.equal((await deployState(h, d.id)).state, "rolling_out", "90 s since the last progress");
  await agentReports(h, "n1", () => "healthy");
  await settle(h);
  assert.equal((await deployState(h, d.id)).state, "succeeded", `${b?.id} ran 180 s after the start`);
});

test("a scale says how many of the asked instances cannot be placed, and why; they wait for room", async () => {
  const { h } = await fullNode(0.4, { instances: 1 });
  const o = (await h.store.get<Service>("service", "default/hello/web"))!;
  await h.store.put("service", o.key, { ...o.value, instances: 12, state: "scaling" });
  const short = [
    {
      service: "web",
      unplaced: 8,
      of: 12,
      message: "8 of 12 instances cannot be placed: needs 1.2 CPU, 0.4 free on 1 node: n1 0.4 free of 0.4",
    },
  ];
  assert.deepEqual(await appShortfalls(h.store, "default", "hello", ["web"]), short);
  // From the informer with the scheduler's live view: what does not plainly fit gets the full question.
  const live = () => h.m.services.clusterState();
  assert.deepEqual(await appShortfalls(h.m.informer, "default", "hello", ["web"], live), short);
  await h.store.put("service", o.key, { ...o.value, instances: 4, state: "scaling" });
  assert.deepEqual(await appShortfalls(h.m.informer, "default", "hello", ["web"], live), [], "4 fit");
  await h.store.put("service", o.key, { ...o.value, instances: 5, state: "scaling" });
  assert.equal((await appShortfalls(h.m.informer, "default", "hello", ["web"], live))[0]?.unplaced, 1);
  await h.store.put("service", o.key, { ...o.value, instances: 12, state: "scaling" });
  await settle(h);
  const all = (await instancesOf(h)).filter((i) => i.desired === "running");
  assert.equal(all.filter((i) => i.node === "n1").length, 4);
  assert.equal(all.filter((i) => i.state === "pending").length, 8, "a scale is not failed: the rest wait");
  assert.deepEqual(await appShortfalls(h.store, "default", "hello", ["web"]).then((s) => s.length), 1);
  const svc = (await h.store.get<Service>("service", "default/hello/web"))!.value;
  assert.equal(svc.state, "scaling");
});

test("the replacement of a killed instance is placed in the room it left, without a FailedScheduling event", async () => {
  // n1 is full with 4 instances of 0.25 CPU.
  const { h, base } = await fullNode(0.4, { instances: 4 });
  const [victim] = await running(h);
  await agentReports(h, "n1", (i) => (i.id === victim?.id ? "exited" : "healthy"), base);
  await settle(h);
  const alive = (await instancesOf(h)).filter((i) => i.desired === "running");
  assert.equal(alive.length, 4);
  assert.ok(alive.every((i) => i.node === "n1" && i.id !== victim?.id));
  const events = await h.ctx.events.list({ app: "hello" });
  assert.ok(events.some((e) => e.reason === "Replacing"));
  assert.deepEqual(
    events.filter((e) => e.reason === "FailedScheduling").map((e) => e.message),
    [],
  );
});

test("a service that fills its node rolls out when minAvailable lets it stop an old instance first", async () => {
  const { h, base } = await fullNode(0.4, { instances: 4 });
  const d2 = await deploy(h, { instances: 4, env: { V: "2" }, minAvailable: 3 }, "c".repeat(64));
  let lowest = 4;
  for (let round = 0; round < 12 && (await deployState(h, d2.id)).state === "rolling_out"; round++) {
    await settle(h);
    lowest = Math.min(lowest, (await instancesOf(h)).filter((i) => i.state === "running").length);
    h.clock.advance(DEFAULT_SETTINGS.drainMs + 1);
    await agentReports(h, "n1", () => "healthy", base);
  }
  await settle(h);
  assert.equal((await deployState(h, d2.id)).state, "succeeded");
  assert.equal(lowest, 3, "never below minAvailable running");
  const alive = (await instancesOf(h)).filter((i) => i.desired === "running");
  assert.deepEqual(
    alive.map((i) => [i.release, i.state]),
    Array.from({ length: 4 }, () => [2, "running"]),
  );
});

test("judgeRollout, as data: progress is recorded, silence fails at the deadline, a shortfall fails at once", () => {
  const spec = normalizeService("hello", "web", { command: "x", instances: 2 }, undefined);
  const t0 = Date.parse("2026-01-01T00:00:00Z");
  const svc: Service = {
    tenant: "default",
    app: "hello",
    name: "web",
    release: 2,
    spec,
    instances: 2,
    state: "updating",
    message: "",
    crashes: 0,
    rollout: { deadlineMs: 60_000, best: 1, since: new Date(t0).toISOString() },
  };
  const inst = (state: Instance["state"], node: string | null): Instance =>
    ({ id: `i-${state}-${node}`, state, node, release: 2, message: "" }) as Instance;
  const placedOne = [inst("provisioning", "n1"), inst("pending", null)];
  assert.deepEqual(judgeRollout(svc, placedOne, t0 + 59_000, 120_000), { recheckMs: 1000 });
  assert.deepEqual(judgeRollout(svc, [inst("running", "n1"), inst("pending", null)], t0 + 59_000, 120_000), {
    progress: { deadlineMs: 60_000, best: 2, since: new Date(t0 + 59_000).toISOString() },
    recheckMs: 60_000,
  });
  assert.deepEqual(judgeRollout(svc, placedOne, t0 + 60_000, 120_000), {
    fail: {
      reason: "ProgressDeadlineExceeded",
      message:
        "v2 made no progress for 60s (its rollout deadline): 0 of 2 instances running, 1 starting, 1 pending",
    },
  });
  const short = { unplaced: 1, of: 2, message: "1 of 2 instances cannot be placed: 1 node: 1 cordoned" };
  assert.deepEqual(judgeRollout(svc, placedOne, t0, 120_000, short), {
    fail: { reason: "RolloutUnschedulable", message: `v2: ${short.message}` },
  });
  // A service without a recorded rollout (one from before the deadline existed) starts its clock now.
  const { rollout: _, ...fresh } = svc;
  assert.deepEqual(judgeRollout(fresh, placedOne, t0, 120_000), {
    progress: { deadlineMs: 120_000, best: 1, since: new Date(t0).toISOString() },
    recheckMs: 120_000,
  });
});

test("a deploy keeps the count the autoscaler reached, inside the new release's bounds", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  const autoscale = (max: number) => ({ max, target: { rps: 10 } });
  await deploy(h, { instances: 1, autoscale: autoscale(4) });
  await settle(h);
  const web = async () => (await h.store.get<Service>("service", "default/hello/web"))!.value;
  assert.equal((await web()).instances, 1);
  await scaleServices(
    { store: h.store, events: h.ctx.events, unit: h.ctx.settings.unit },
    { tenant: "default", app: "hello", services: { web: 3 }, reason: "Autoscaled" },
  );
  // herd.yaml's start count changed: without autoscale that count would win.
  await deploy(h, { instances: 2, autoscale: autoscale(4) }, "c".repeat(64));
  await settle(h);
  assert.equal((await web()).instances, 3, "the autoscaled count, not herd.yaml's start count");
  await deploy(h, { instances: 1, autoscale: autoscale(2) }, "d".repeat(64));
  await settle(h);
  assert.equal((await web()).instances, 2, "clamped into the new max");
});

test("a big cluster's heartbeats are spread out: the replies ask for a longer interval, and silence is judged by it", async () => {
  const h = setup();
  const small = await h.m.nodes.handleHeartbeat("n0", hb());
  assert.equal(small.intervalMs, DEFAULT_SETTINGS.heartbeatMs);
  assert.equal(small.minIntervalMs, undefined, "a small cluster sets no floor");
  // 500 nodes: at most HEARTBEATS_PER_S (200) a second in all is one every 2.5 s each.
  const names = Array.from({ length: 500 }, (_, n) => `n${n}`);
  for (const n of names) await h.m.nodes.handleHeartbeat(n, hb());
  const big = await h.m.nodes.handleHeartbeat("n1", hb());
  assert.equal(heartbeatInterval(DEFAULT_SETTINGS.heartbeatMs, 500), 2500);
  assert.deepEqual([big.intervalMs, big.minIntervalMs], [2500, 2500]);
  // n0 goes silent, the others heartbeat every 2.5 s: past the settings' not-ready time (3.6 s)
  // n0 is still ready; past 2.5 times it (9 s), not ready; past 2.5 times the lost time (22.5 s), lost.
  const state = async () => (await h.store.get<Node>("node", "n0"))?.value.state;
  const seen: string[] = [];
  for (let t = 2500; t <= 25_000; t += 2500) {
    h.clock.advance(2500);
    for (const n of names.slice(1)) await h.m.nodes.handleHeartbeat(n, hb());
    await h.m.nodes.checkNodes();
    seen.push(`${t} ${await state()}`);
  }
  assert.deepEqual(seen, [
    "2500 ready",
    "5000 ready",
    "7500 ready",
    "10000 not_ready",
    "12500 not_ready",
    "15000 not_ready",
    "17500 not_ready",
    "20000 not_ready",
    "22500 not_ready",
    "25000 lost",
  ]);
});

/** `herd restart` of hello's `services` (all when none) at the harness's now. */
const restartHello = (h: Harness, services?: string[]) =>
  restartServices(
    { store: h.store, events: h.ctx.events },
    {
      tenant: "default",
      app: "hello",
      ...(services ? { services } : {}),
      by: "user admin",
      now: new Date(h.clock.now()).toISOString(),
    },
  );

test("herd restart replaces cattle as a rollout does: the new ones run before the old ones go", async () => {
  const h = await runningOnN1({ instances: 2 });
  const before = (await instancesOf(h)).map((i) => i.id);
  h.clock.advance(1000);
  const asked = await restartHello(h);
  assert.deepEqual(asked.services, ["web"]);
  await settle(h);
  let all = await instancesOf(h);
  assert.equal(all.length, 4, "two new beside the two old");
  assert.ok(
    all.filter((i) => before.includes(i.id)).every((i) => i.desired === "running"),
    "old serve meanwhile",
  );
  await agentReports(h, "n1", () => "healthy");
  await settle(h);
  all = await instancesOf(h);
  const old = all.filter((i) => before.includes(i.id));
  assert.ok(
    old.every((i) => i.desired === "stopped" && i.reason === "Restarted"),
    JSON.stringify(old),
  );
  assert.equal(all.filter((i) => !before.includes(i.id) && i.state === "running").length, 2);
  // Done: nothing more is replaced at the next rounds.
  h.clock.advance(DEFAULT_SETTINGS.drainMs + 1);
  await agentReports(h, "n1", () => "healthy");
  await settle(h);
  all = await instancesOf(h);
  assert.deepEqual(
    all.map((i) => i.id).filter((id) => before.includes(id)),
    [],
  );
  assert.equal(all.length, 2);
  await assert.rejects(restartHello(h, ["nope"]), /app hello has no service nope \(it has web\)/);
});

test("herd restart restarts pets in place, one at a time, with their ids and data", async () => {
  const h = await runningOnN1({ instances: 2, mode: "pet" });
  h.clock.advance(1000);
  await restartHello(h, ["web"]);
  await settle(h);
  let pets = await instancesOf(h);
  assert.deepEqual(pets.map((p) => p.id).sort(), ["hello-web-0", "hello-web-1"]);
  assert.equal(pets.filter((p) => p.generation === 2).length, 1, "one pet at a time");
  assert.equal(pets.find((p) => p.generation === 2)?.reason, "Restarting");
  for (let n = 0; n < 3; n++) {
    await agentReports(h, "n1", () => "healthy");
    await settle(h);
  }
  pets = await instancesOf(h);
  assert.ok(
    pets.every((p) => p.generation === 2 && p.state === "running" && p.release === 1),
    JSON.stringify(pets),
  );
});
