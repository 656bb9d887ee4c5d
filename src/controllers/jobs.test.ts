// The jobs controller on a memory store and a manual clock: schedules fire
// once per time (also across a restart of the controller), forbid skips,
// history is trimmed, and a run goes through its agent's statuses to its
// exit code or its deadline.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { Run } from "../model/job.ts";
import { normalizeService } from "../model/manifest.ts";
import {
  type App,
  type Deploy,
  type Node,
  type Release,
  releaseKey,
  type Service,
} from "../model/objects.ts";
import { JobsController, LOG_GRACE_MS, scheduledRunId } from "./jobs.ts";
import { testContext } from "./testing.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A store with app `a` at v1 (service web with job `tick` every 10 s), and a ready node n1. */
async function setup(job: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "herd-jobs-"));
  dirs.push(dir);
  const h = testContext(dir);
  const { store, clock } = h;
  const spec = normalizeService(
    "a",
    "web",
    {
      command: "node server.js",
      env: { GREETING: "hi" },
      jobs: { tick: { schedule: "*/10 * * * * *", command: "echo tick", history: 2, ...job } },
    },
    undefined,
  );
  const created = new Date(clock.now()).toISOString();
  const app: App = { tenant: "t", name: "a", createdAt: created, release: 1, latestVersion: 1 };
  await store.put("app", "t/a", app);
  const release: Release = {
    tenant: "t",
    app: "a",
    version: 1,
    createdAt: created,
    description: "",
    source: "s",
    slug: "slug1",
    services: { web: spec },
  };
  await store.put("release", releaseKey("t", "a", 1), release);
  const svc: Service = {
    tenant: "t",
    app: "a",
    name: "web",
    release: 1,
    spec,
    instances: 0,
    state: "running",
    message: "",
    crashes: 0,
  };
  await store.put("service", "t/a/web", svc);
  const node: Node = {
    name: "n1",
    address: "127.0.0.1",
    labels: {},
    capacity: { cpu: 4, memory: 8 * 2 ** 30 },
    allocatable: { cpu: 4, memory: 8 * 2 ** 30 },
    state: "ready",
    lastHeartbeat: created,
    registeredAt: created,
    agentVersion: "test",
    isolation: { cgroups: "none" },
    schedulable: true,
  };
  await store.put("node", "n1", node);
  return { ...h, jobs: new JobsController(h.ctx) };
}

const runs = async (store: { list: <T>(k: "run") => Promise<{ items: { value: T }[] }> }) =>
  (await store.list<Run>("run")).items.map((o) => o.value);

test("a scheduled time gets one run, also after the controller restarts; a missed span runs its latest time once", async () => {
  const { store, clock, ctx, jobs } = await setup();
  clock.advance(10_000);
  await jobs.tick();
  await jobs.tick();
  let all = await runs(store);
  assert.equal(all.length, 1, "one run for the time that fired");
  assert.equal(all[0].id, scheduledRunId("t", "a", "tick", clock.now()));
  assert.equal(all[0].node, "n1", "placed by the scheduler");
  assert.equal(all[0].kind, "job");

  // A restarted control plane: a new controller on the same store.
  const again = new JobsController(ctx);
  await again.tick();
  assert.equal((await runs(store)).length, 1, "no duplicate after a restart");

  // Finish it, then stay away for a minute: only the latest missed time runs.
  await again.heartbeat("n1", [{ id: all[0].id, generation: 1, state: "exited", exitCode: 0 }]);
  clock.advance(60_000);
  await again.tick();
  all = await runs(store);
  assert.equal(all.length, 2, "one catch-up run");
  assert.ok(all.some((r) => r.scheduledAt === new Date(clock.now()).toISOString()));
});

test("concurrency forbid skips a time while a run still runs; history keeps the newest", async () => {
  const { store, clock, jobs } = await setup({ concurrency: "forbid" });
  clock.advance(10_000);
  await jobs.tick();
  const [first] = await runs(store);
  await jobs.heartbeat("n1", [{ id: first.id, generation: 1, state: "up", pid: 42 }]);
  clock.advance(10_000);
  await jobs.tick();
  const skipped = (await runs(store)).find((r) => r.state === "skipped");
  assert.ok(skipped, "the second time was skipped");
  assert.match(skipped.message, /still runs \(concurrency: forbid\)/);
  // First ends; later times run; only `history: 2` finished runs stay.
  await jobs.heartbeat("n1", [{ id: first.id, generation: 1, state: "exited", exitCode: 1 }]);
  for (let n = 0; n < 3; n++) {
    clock.advance(10_000);
    await jobs.tick();
    const running = (await runs(store)).filter((r) => r.state === "starting");
    await jobs.heartbeat(
      "n1",
      running.map((r) => ({ id: r.id, generation: 1, state: "exited" as const, exitCode: 0 })),
    );
  }
  clock.advance(LOG_GRACE_MS + 1); // finished runs stay while their last lines ship
  await jobs.tick();
  const left = await runs(store);
  assert.equal(left.length, 2, left.map((r) => `${r.scheduledAt} ${r.state}`).join("; "));
  assert.ok(left.every((r) => r.state === "succeeded"));
});

test("a one-off run: agent statuses to its exit code; kept in the reply for its last lines, then dropped", async () => {
  const { clock, jobs } = await setup();
  const run = await jobs.startRun({
    tenant: "t",
    app: "a",
    command: "exit 3",
    timeoutMs: 60_000,
    kind: "one-off",
  });
  assert.equal(run.node, "n1");
  assert.equal(run.service, "web");
  let reply = await jobs.heartbeat("n1", []);
  assert.equal(reply[0].action, "run");
  assert.match(
    reply[0].run.command,
    /^\(exit 3\n\); code=\$\?; echo \$code > "\$HERD_DATA_DIR\/\.herd-exit-code"; exit \$code$/,
  );
  assert.deepEqual(reply[0].run.env, { GREETING: "hi" });
  assert.equal(reply[0].run.health.kind, "process");
  await jobs.heartbeat("n1", [{ id: run.id, generation: 1, state: "up", pid: 7 }]);
  assert.equal((await jobs.getRun("t", "a", run.id)).state, "running");
  reply = await jobs.heartbeat("n1", [
    { id: run.id, generation: 1, state: "exited", exitCode: 3, logTail: ["bye"] },
  ]);
  const done = await jobs.getRun("t", "a", run.id);
  assert.equal(done.state, "failed");
  assert.equal(done.exitCode, 3);
  assert.deepEqual(done.logTail, ["bye"]);
  assert.equal(reply[0].action, "stop", "kept (stopped) while its last lines ship");
  clock.advance(LOG_GRACE_MS + 1);
  assert.deepEqual(await jobs.heartbeat("n1", []), [], "then the agent removes it");
});

test("a run past its deadline is stopped and ends timed out; a run on a lost node fails", async () => {
  const { store, clock, jobs } = await setup();
  const run = await jobs.startRun({
    tenant: "t",
    app: "a",
    command: "sleep 99",
    timeoutMs: 5000,
    kind: "one-off",
  });
  await jobs.heartbeat("n1", [{ id: run.id, generation: 1, state: "up", pid: 7 }]);
  clock.advance(5001);
  await jobs.tick();
  const reply = await jobs.heartbeat("n1", [{ id: run.id, generation: 1, state: "up", pid: 7 }]);
  assert.equal(reply.find((d) => d.id === run.id)?.action, "stop");
  await jobs.heartbeat("n1", [{ id: run.id, generation: 1, state: "stopped", signal: "SIGTERM" }]);
  assert.equal((await jobs.getRun("t", "a", run.id)).state, "timed_out");

  const other = await jobs.startRun({
    tenant: "t",
    app: "a",
    command: "sleep 99",
    timeoutMs: 60_000,
    kind: "one-off",
  });
  const n1 = (await store.get<Node>("node", "n1"))!;
  await store.put("node", "n1", { ...n1.value, state: "lost" });
  await jobs.tick();
  const lost = await jobs.getRun("t", "a", other.id);
  assert.equal(lost.state, "failed");
  assert.match(lost.message, /node n1 is lost/);
});

test("startRun names the field when the service is not in the release", async () => {
  const { jobs } = await setup();
  await assert.rejects(
    jobs.startRun({
      tenant: "t",
      app: "a",
      service: "worker",
      command: "x",
      timeoutMs: 1000,
      kind: "one-off",
    }),
    (err: { details?: { field: string }[]; message: string }) =>
      err.details?.[0]?.field === "service" && /no service worker/.test(err.message),
  );
});

test("an app being destroyed: its runs are stopped, and once it is gone they are deleted", async () => {
  const { store, clock, jobs } = await setup();
  const run = await jobs.startRun({
    tenant: "t",
    app: "a",
    command: "sleep 99",
    timeoutMs: 60_000,
    kind: "one-off",
  });
  await jobs.heartbeat("n1", [{ id: run.id, generation: 1, state: "up", pid: 7 }]);
  const app = (await store.get<App>("app", "t/a"))!;
  await store.put("app", "t/a", { ...app.value, destroying: true });
  await jobs.tick();
  const reply = await jobs.heartbeat("n1", [{ id: run.id, generation: 1, state: "up", pid: 7 }]);
  assert.equal(reply[0].action, "stop");
  await jobs.heartbeat("n1", [{ id: run.id, generation: 1, state: "stopped" }]);
  assert.equal((await jobs.getRun("t", "a", run.id)).state, "stopped");
  await store.delete("app", "t/a");
  clock.advance(LOG_GRACE_MS + 1);
  await jobs.tick();
  assert.deepEqual(await runs(store), []);
});

test("a run of a container service runs its image, on a node with the docker driver only", async () => {
  const { store, jobs } = await setup();
  const release = (await store.get<Release>("release", releaseKey("t", "a", 1)))?.value as Release;
  const web = { ...release.services.web, image: "127.0.0.1:5000/team/web:1", runtime: "docker" as const };
  await store.put("release", releaseKey("t", "a", 1), { ...release, services: { web } });
  const run = await jobs.startRun({
    tenant: "t",
    app: "a",
    command: "migrate",
    timeoutMs: 60_000,
    kind: "one-off",
  });
  assert.equal(run.node, null, "n1 has no docker driver");
  assert.match(run.message, /runtime driver missing/);
  assert.equal(run.spec.image, "127.0.0.1:5000/team/web:1");
  assert.equal(run.spec.runtime, "docker");

  const n1 = (await store.get<Node>("node", "n1"))?.value as Node;
  await store.put("node", "n2", { ...n1, name: "n2", drivers: ["docker"] });
  await jobs.tick();
  assert.equal((await jobs.getRun("t", "a", run.id)).node, "n2");
  const [desired] = await jobs.heartbeat("n2", []);
  assert.equal(desired.run.image, "127.0.0.1:5000/team/web:1");
  assert.equal(desired.run.runtime, "docker");
});

test("a release phase shows its output as it reaches the log store; without it, the node's last lines", async () => {
  const output: { seq: number; line: string }[] = [];
  const h = await setup();
  const stored = (await h.store.get<Release>("release", releaseKey("t", "a", 1)))?.value as Release;
  const web = stored.services.web as Release["services"][string];
  const release: Release = {
    ...stored,
    services: { web: { ...web, release: { command: "migrate", timeoutMs: 60_000 } } },
  };
  const waitUntil = async <T>(what: string, f: () => Promise<T | undefined> | T | undefined): Promise<T> => {
    for (let n = 0; n < 200; n++) {
      const v = await f();
      if (v !== undefined) return v;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.fail(`no ${what}`);
  };
  const phase = async (jobs: JobsController, deploy: string, tail: string[]) => {
    const steps: string[] = [];
    const done = jobs.releasePhase({ id: deploy, tenant: "t", app: "a" } as Deploy, release, (m) => {
      steps.push(m);
      h.ctx.deployLogs.append(deploy, "step", m);
    });
    const run = await waitUntil("release run", async () =>
      (await runs(h.store)).find(
        (r) => r.kind === "release" && r.deploy === deploy && r.state !== "succeeded",
      ),
    );
    return {
      steps,
      done,
      run,
      end: () =>
        jobs.heartbeat("n1", [{ id: run.id, generation: 1, state: "exited", exitCode: 0, logTail: tail }]),
    };
  };

  // Live: the first line is in the deploy's log while the run still runs; the last one arrives after its end.
  const live = await phase(
    new JobsController(h.ctx, (_run, after) => output.filter((o) => o.seq > after)),
    "d1",
    ["migrated", "indexed"],
  );
  output.push({ seq: 1, line: "migrated" });
  await waitUntil("the first line", () =>
    live.steps.includes("web: release phase output:") ? true : undefined,
  );
  assert.ok(!live.steps.includes("web: release phase succeeded"), "shown before the phase ended");
  await live.end();
  setTimeout(() => output.push({ seq: 2, line: "indexed" }), 300);
  await live.done;
  assert.deepEqual(
    h.ctx.deployLogs.read("d1").map((e) => `${e.type} ${e.message}`),
    [
      "step web: release phase: migrate (deadline 60s)",
      "step web: release phase output:",
      "build   web release | migrated",
      "build   web release | indexed",
      "step web: release phase succeeded",
    ],
  );

  // Nothing reached this server's store (another server took the node's lines): the last lines at the end.
  const elsewhere = await phase(new JobsController(h.ctx), "d2", ["migrated", "indexed"]);
  await elsewhere.end();
  await elsewhere.done;
  assert.deepEqual(elsewhere.steps, [
    "web: release phase: migrate (deadline 60s)",
    "web: release phase output:\n  web release | migrated\n  web release | indexed",
    "web: release phase succeeded",
  ]);
});
