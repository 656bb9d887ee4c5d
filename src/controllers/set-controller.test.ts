// dependsOn and version sets checked as data: an in-memory store, a manual
// clock, and heartbeats written by the test in place of real agents.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ConfigCenter } from "../config-center/center.ts";
import { normalizeService, type ServiceManifest } from "../model/manifest.ts";
import type { App, Deploy, Instance, Service } from "../model/objects.ts";
import type { Heartbeat, InstanceStatus } from "../model/protocol.ts";
import type { VersionSet } from "../model/version-set.ts";
import { DEFAULT_SETTINGS } from "./context.ts";
import { ControllerManager } from "./manager.ts";
import { testContext } from "./testing.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function setup() {
  const dir = mkdtempSync(join(tmpdir(), "herd-sets-"));
  dirs.push(dir);
  const { ctx, store, clock } = testContext(dir);
  const m = new ControllerManager(ctx);
  return { store, clock, ctx, m };
}
type Harness = ReturnType<typeof setup>;

const hb = (instances: InstanceStatus[] = []): Heartbeat => ({
  address: "127.0.0.1",
  labels: {},
  capacity: { cpu: 16, memory: 32 * 1024 ** 3 },
  agentVersion: "test",
  isolation: { cgroups: "none", reason: "test" },
  instances,
});

const instancesOf = async (h: Harness) =>
  (await h.store.list<Instance>("instance")).items.map((o) => o.value);

/** One agent round trip: instances whose command is `exit 1` exited, every other one is healthy. */
async function agentReports(h: Harness) {
  const now = h.clock.now();
  const statuses: InstanceStatus[] = [];
  for (const d of (await instancesOf(h)).filter((i) => i.node === "n1")) {
    const run = d.desired === "running" || (d.drainUntil !== undefined && Date.parse(d.drainUntil) > now);
    const state = !run ? "stopped" : d.run.command === "exit 1" ? "exited" : "healthy";
    statuses.push({ id: d.id, generation: d.generation, state, port: 20000, pid: 100 });
  }
  await h.m.nodes.handleHeartbeat("n1", hb(statuses));
}

async function settle(h: Harness, rounds = 3) {
  for (let n = 0; n < rounds; n++) {
    await h.m.resync();
    await h.m.idle();
  }
}

/** Rounds of settle + healthy reports until `done` (or fails after 40 rounds). */
async function until(h: Harness, done: () => Promise<boolean>, what: string) {
  for (let n = 0; n < 40; n++) {
    await settle(h, 1);
    if (await done()) return;
    await agentReports(h);
    h.clock.advance(1000);
    await new Promise((r) => setTimeout(r, 2));
  }
  assert.fail(`never: ${what}`);
}

async function deploy(
  h: Harness,
  app: string,
  services: Record<string, Partial<ServiceManifest>>,
  slug = "a",
) {
  if (!(await h.store.get("app", `default/${app}`))) {
    const a: App = {
      tenant: "default",
      name: app,
      createdAt: new Date().toISOString(),
      release: null,
      latestVersion: 0,
    };
    await h.store.put("app", `default/${app}`, a);
  }
  const d = await h.m.deploys.startDeploy("default", app, async () => ({
    source: "b".repeat(64),
    slug: slug.repeat(64),
    services: Object.fromEntries(
      Object.entries(services).map(([n, s]) => [
        n,
        normalizeService(app, n, { command: "node s.js", ...s }, undefined),
      ]),
    ),
    description: "test",
  }));
  return d;
}

const deployOf = async (h: Harness, app: string, id: string) =>
  (await h.store.get<Deploy>("deploy", `default/${app}/${id}`))?.value;

async function deployed(
  h: Harness,
  app: string,
  services: Record<string, Partial<ServiceManifest>>,
  slug = "a",
) {
  const d = await deploy(h, app, services, slug);
  await until(h, async () => (await deployOf(h, app, d.id))?.state === "succeeded", `${app} deployed`);
}

test("a deploy starts a service only once what it dependsOn runs", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  const d = await deploy(h, "shop", { web: { dependsOn: ["db"] }, db: {} });
  await until(h, async () => (await deployOf(h, "shop", d.id))?.state === "rolling_out", "rolling out");
  await settle(h);
  let insts = await instancesOf(h);
  assert.deepEqual(
    insts.map((i) => i.service),
    ["db"],
    "only db starts first",
  );
  const web = (await h.store.get<Service>("service", "default/shop/web"))!.value;
  assert.equal(web.message, "waiting for db (dependsOn)");
  await until(h, async () => (await deployOf(h, "shop", d.id))?.state === "succeeded", "deploy succeeded");
  insts = await instancesOf(h);
  const started = (s: string) => insts.find((i) => i.service === s)!.createdAt;
  assert.ok(started("db") <= started("web"));
  const reasons = (await h.ctx.events.list({ app: "shop" })).map((e) => e.reason);
  assert.ok(reasons.indexOf("WaitingForDependencies") < reasons.indexOf("DependenciesReady"));
});

test("a deploy that would close a dependency cycle across apps fails naming the cycle", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  await deployed(h, "a", { web: {} });
  await deployed(h, "b", { api: { dependsOn: ["a/web"] } });
  const d = await deploy(h, "a", { web: { dependsOn: ["b/api"] } }, "c");
  await until(h, async () => (await deployOf(h, "a", d.id))?.state === "failed", "refused");
  assert.equal(
    (await deployOf(h, "a", d.id))!.message,
    "services.web.dependsOn: dependency cycle: a/web → b/api → a/web",
  );
  const unknown = await deploy(h, "a", { web: { dependsOn: ["zzz/api"] } }, "c");
  await until(h, async () => (await deployOf(h, "a", unknown.id))?.state === "failed", "refused");
  assert.match((await deployOf(h, "a", unknown.id))!.message, /depends on zzz\/api, but there is no app zzz/);
});

/** Apps a → b → c (a depends on b, b on c), each with releases v1 and v2, serving v2. */
async function threeApps(h: Harness) {
  await h.m.nodes.handleHeartbeat("n1", hb());
  for (const app of ["c", "b", "a"]) {
    await deployed(h, app, { web: {} }, "1");
    await deployed(h, app, { web: {} }, "2");
  }
}
const setOf = async (h: Harness, version: number) =>
  (await h.store.get<VersionSet>("version_set", `default/prod/${String(version).padStart(8, "0")}`))!.value;
const serving = async (h: Harness, app: string) =>
  (await h.store.get<App>("app", `default/${app}`))!.value.release;

/** The release content (a rollback counts as the version it reused) the app serves. */
const content = async (h: Harness, app: string) => {
  const r = (await h.store.get<{ version: number; rollbackOf?: number }>(
    "release",
    `default/${app}/${String(await serving(h, app)).padStart(8, "0")}`,
  ))!.value;
  return r.rollbackOf ?? r.version;
};

test("a set moves its apps in dependency order, each healthy before the next; a cycle is refused", async () => {
  const h = setup();
  await threeApps(h);
  await assert.rejects(
    h.m.sets.apply("default", {
      set: "prod",
      apps: { a: { version: 1, dependsOn: ["b"] }, b: { version: 1, dependsOn: ["a"] } },
    }),
    /apps\.a\.dependsOn: dependency cycle: a → b → a/,
  );
  await assert.rejects(
    h.m.sets.apply("default", { set: "prod", apps: { a: { version: 9 } } }),
    /apps\.a\.version: app a has no release v9/,
  );
  const set = await h.m.sets.apply("default", {
    set: "prod",
    apps: { a: { version: 1, dependsOn: ["b"] }, b: { version: 1, dependsOn: ["c"] }, c: { version: 1 } },
  });
  assert.deepEqual(
    set.steps.map((s) => s.app),
    ["c", "b", "a"],
  );
  await until(h, async () => (await setOf(h, 1)).state === "applied", "set applied");
  const done = (await setOf(h, 1)).steps;
  assert.ok(
    done[0]!.doneAt! <= done[1]!.startedAt! && done[1]!.doneAt! <= done[2]!.startedAt!,
    JSON.stringify(done),
  );
  for (const app of ["a", "b", "c"]) assert.equal(await content(h, app), 1, `${app} runs v1's content`);
  // The releases the set made say so.
  const made = await h.store.get<{ createdBy?: string }>(
    "release",
    `default/a/${String(await serving(h, "a")).padStart(8, "0")}`,
  );
  assert.equal(made?.value.createdBy, "version set prod v1");
  assert.deepEqual(
    (await h.m.sets.diff("default", { apps: { a: { version: 1 }, b: { version: 2 } } })).map((e) => e.change),
    ["unchanged", "upgrade"],
  );
});

test("a set whose second app fails rolls the first back; set rollback applies the previous version again", async () => {
  const h = setup();
  await threeApps(h);
  await h.m.sets.apply("default", {
    set: "prod",
    apps: { c: { version: 2 }, b: { version: 2, dependsOn: ["c"] } },
  });
  await until(h, async () => (await setOf(h, 1)).state === "applied", "set v1 applied");
  // b v3 never becomes healthy.
  const bad = await deploy(h, "b", { web: { command: "exit 1" } }, "3");
  await until(h, async () => (await deployOf(h, "b", bad.id))?.state === "failed", "b v3 failed");
  const before = { c: await serving(h, "c"), b: await serving(h, "b") };
  await h.m.sets.apply("default", {
    set: "prod",
    apps: { c: { version: 1 }, b: { version: 3, dependsOn: ["c"] } },
  });
  await until(h, async () => (await setOf(h, 2)).state === "rolled_back", "set v2 rolled back");
  const v2 = await setOf(h, 2);
  assert.deepEqual(
    v2.steps.map((s) => [s.app, s.state]),
    [
      ["c", "reverted"],
      ["b", "reverted"],
    ],
  );
  assert.match(v2.message, /^b: /);
  // c went to v1 and came back to v2's content; b never left v2's.
  assert.equal(await content(h, "c"), before.c === null ? null : 2);
  assert.equal(await content(h, "b"), 2);
  const reasons = (await h.ctx.events.list({})).map((e) => e.reason);
  assert.ok(reasons.includes("SetFailed") && reasons.includes("SetRolledBack"));
  // herd set rollback: the applied version before the current one; with one applied version there is none.
  await assert.rejects(h.m.sets.rollback("default", "prod"), /no applied version before the current one/);
  const again = await h.m.sets.rollback("default", "prod", 1);
  assert.equal(again.rollbackOf, 1);
  await until(h, async () => (await setOf(h, 3)).state === "applied", "set v3 applied");
});

test("a control plane restarted mid-apply resumes the set from its stored steps", async () => {
  const h = setup();
  await threeApps(h);
  await h.m.sets.apply("default", {
    set: "prod",
    apps: { c: { version: 1 }, b: { version: 1, dependsOn: ["c"] } },
  });
  await until(h, async () => (await setOf(h, 1)).steps[0]?.deploy !== undefined, "c moving");
  // A new manager over the same store: nothing but the store carries over.
  h.m.stop();
  h.m = new ControllerManager(h.ctx);
  await until(h, async () => (await setOf(h, 1)).state === "applied", "set applied after the restart");
  assert.deepEqual(
    (await setOf(h, 1)).steps.map((s) => [s.app, s.state]),
    [
      ["c", "done"],
      ["b", "done"],
    ],
  );
  assert.equal(await content(h, "c"), 1);
  assert.equal(await content(h, "b"), 1);
  // One deploy per app: the restart started no second one.
  const deploys = (await h.store.list<Deploy>("deploy", { prefix: "default/c/" })).items;
  assert.equal(deploys.length, 3, "v1, v2 and the set's");
});

/** The app's stable config, as the config center serves it: key → value. */
async function configOf(h: Harness, app: string): Promise<Record<string, string>> {
  return (await new ConfigCenter(h.store).effective("default", app))?.values ?? {};
}

test("a set pins config versions: config moves before the release, and back when the set rolls back", async () => {
  const h = setup();
  await threeApps(h);
  const center = new ConfigCenter(h.store);
  for (const [app, values] of [
    ["c", ["c-one", "c-two"]],
    ["b", ["b-one", "b-two"]],
  ] as const) {
    for (const value of values)
      await center.change({ layer: "app", namespace: `default/${app}`, author: "t", set: { MODE: value } });
  }
  await assert.rejects(
    h.m.sets.apply("default", { set: "prod", apps: { c: { version: 2, config: 9 } } }),
    /apps\.c\.config: app c has no config version 9/,
  );
  // c keeps its release (v2) and goes back to config v1; b moves its release and pins config v2 (in effect).
  const diff = await h.m.sets.diff("default", {
    apps: { c: { version: 2, config: 1 }, b: { version: 1, config: 2 } },
  });
  assert.deepEqual(
    diff.map((e) => [e.app, e.change, e.config?.change]),
    [
      ["c", "unchanged", "changes"],
      ["b", "downgrade", "unchanged"],
    ],
  );
  await h.m.sets.apply("default", {
    set: "prod",
    apps: { c: { version: 2, config: 1 }, b: { version: 1, config: 2, dependsOn: ["c"] } },
  });
  await until(h, async () => (await setOf(h, 1)).state === "applied", "set v1 applied");
  const v1 = await setOf(h, 1);
  assert.deepEqual(
    v1.steps.map((s) => [s.app, s.state, s.configFrom]),
    [
      ["c", "done", 2],
      ["b", "done", 2],
    ],
  );
  assert.deepEqual(await configOf(h, "c"), { MODE: "c-one" });
  assert.equal((await center.head("default", "c")).stable, 3, "a new version with v1's content");
  assert.deepEqual(await configOf(h, "b"), { MODE: "b-two" });
  assert.equal(await content(h, "b"), 1);

  // Applied again: nothing changes (the config already holds v1's content).
  await h.m.sets.apply("default", {
    set: "prod",
    apps: { c: { version: 2, config: 1 }, b: { version: 1, config: 2, dependsOn: ["c"] } },
  });
  await until(h, async () => (await setOf(h, 2)).state === "applied", "set v2 applied");
  assert.deepEqual(
    (await setOf(h, 2)).steps.map((s) => s.state),
    ["unchanged", "unchanged"],
  );
  assert.equal((await center.head("default", "c")).stable, 3);

  // c's config moves to v2, then b fails: the set rolls back and c's config holds v1's content again.
  const bad = await deploy(h, "b", { web: { command: "exit 1" } }, "3");
  await until(h, async () => (await deployOf(h, "b", bad.id))?.state === "failed", "b's bad release failed");
  const badRelease = (await deployOf(h, "b", bad.id))?.release as number;
  await h.m.sets.apply("default", {
    set: "prod",
    apps: { c: { version: 2, config: 2 }, b: { version: badRelease, dependsOn: ["c"] } },
  });
  await until(h, async () => (await setOf(h, 3)).state === "rolled_back", "set v3 rolled back");
  assert.deepEqual(await configOf(h, "c"), { MODE: "c-one" });
  const reasons = (await h.ctx.events.list({})).map((e) => e.reason);
  assert.ok(reasons.includes("SetConfigMoved") && reasons.includes("SetConfigReverted"), reasons.join());
});

test("failover follows dependsOn: after a node loss, web's replacement starts only once db's runs", async () => {
  const h = setup();
  await h.m.nodes.handleHeartbeat("n1", hb());
  await deployed(h, "shop", { db: {}, web: { dependsOn: ["db"] } });
  await h.m.nodes.handleHeartbeat("n2", hb());
  // n1 goes silent: lost; both services' instances were there.
  h.clock.advance(DEFAULT_SETTINGS.nodeLostMs + 1000);
  await h.m.nodes.handleHeartbeat("n2", hb());
  await h.m.nodes.checkNodes();
  await settle(h);
  const alive = async (service: string) =>
    (await instancesOf(h)).filter((i) => i.service === service && i.desired === "running" && i.node !== "n1");
  assert.equal((await alive("db")).length, 1, "db's replacement is made at once");
  assert.equal((await alive("web")).length, 0, "web's waits for db");
  const web = (await h.store.get<Service>("service", "default/shop/web"))!.value;
  assert.equal(web.message, "waiting for db to run again (dependsOn)");

  // db's replacement reports healthy on n2: then web's replacement is made, and runs there.
  const report = async () => {
    const statuses: InstanceStatus[] = (await instancesOf(h))
      .filter((i) => i.node === "n2")
      .map((d) => ({
        id: d.id,
        generation: d.generation,
        state: d.desired === "running" ? "healthy" : "stopped",
        port: 20000,
        pid: 100,
      }));
    await h.m.nodes.handleHeartbeat("n2", hb(statuses));
    await settle(h);
  };
  await report();
  const [db] = await alive("db");
  assert.equal(db?.state, "running");
  const [replacement] = await alive("web");
  assert.ok(replacement, "web's replacement exists once db runs");
  assert.ok(replacement.createdAt >= db!.createdAt);
  await report();
  assert.equal((await alive("web"))[0]?.state, "running");
  const reasons = (await h.ctx.events.list({ app: "shop" })).map((e) => e.reason);
  assert.ok(reasons.includes("WaitingForDependencies"), reasons.join());
});
