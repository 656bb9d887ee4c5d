// Crash safety and many nodes: kill -9 of `herd up` leaves the apps serving
// and a restart re-adopts them without duplicates; a second agent joins, and
// when it is killed its instances move.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { Instance, Node } from "../../src/model/objects.ts";
import { alive, cleanupHerd, type Herd, killRecordedInstances, ROOT, startHerd, waitFor } from "./harness.ts";

const herds: Herd[] = [];
const dirs: string[] = [];
const procs: ChildProcess[] = [];
after(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
  for (const h of herds) await cleanupHerd(h, { keepDir: true });
  for (const d of dirs) {
    killRecordedInstances(d);
    rmSync(d, { recursive: true, force: true });
  }
});

const instances = async (herd: Herd) =>
  (await herd.api<{ items: Instance[] }>("GET", "/apps/hello/instances")).body.items;

function direct(port: number): Promise<number> {
  return new Promise((resolve) => {
    http
      .get({ host: "127.0.0.1", port, path: "/", agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on("error", () => resolve(0));
  });
}

/** A new herd up (cleaned up after the tests) serving examples/hello, and its two running instances. */
async function helloOnNewHerd(): Promise<{ first: Herd; before: Instance[] }> {
  const first = await startHerd();
  herds.push(first);
  dirs.push(first.dataDir);
  const d = await first.cli(["deploy", join(ROOT, "examples/hello")]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const before = (await instances(first)).filter((i) => i.state === "running");
  assert.equal(before.length, 2);
  return { first, before };
}

test("kill -9 of herd up: apps keep serving; a restart re-adopts them, no orphans or duplicates", async () => {
  const { first, before } = await helloOnNewHerd();

  // What this test is about happens from the kill on (an instance that crashed during the deploy, say on a
  // port another process took meanwhile on a shared machine, was replaced before it and is not a restart).
  const killedAt = new Date().toISOString();
  await first.kill9();
  for (const i of before) {
    assert.ok(alive(i.pid!), `${i.id} survived`);
    assert.equal(await direct(i.port!), 200, `${i.id} still answers on its port`);
  }

  const second = await startHerd({ dataDir: first.dataDir });
  herds.push(second);
  await waitFor(
    "the gateway to serve hello again",
    async () => (await second.request("hello.localhost")).status === 200,
  );
  // Give the controllers a few heartbeats to (wrongly) start anything extra.
  await new Promise((r) => setTimeout(r, 4000));
  const after = await instances(second);
  assert.deepEqual(
    after.map((i) => [i.id, i.pid, i.state]).sort(),
    before.map((i) => [i.id, i.pid, "running"]).sort(),
    "the same processes, adopted",
  );
  const events = (
    await second.api<{ items: { reason: string; message: string; time: string; instance?: string }[] }>(
      "GET",
      "/events?app=hello&limit=500",
    )
  ).body.items;
  const restarts = events.filter(
    (e) => (e.reason === "Exited" || e.reason === "Replacing") && e.time >= killedAt,
  );
  assert.deepEqual(
    restarts.map((e) => `${e.time} ${e.reason} ${e.instance}: ${e.message}`),
    [],
    `nothing was restarted after the kill (every event: ${events.map((e) => `${e.time} ${e.reason}`).join(", ")})`,
  );
});

test("Ctrl-C of herd up stops its apps; the next herd up starts the same instances again, not as crashes", async () => {
  const { first, before } = await helloOnNewHerd();

  await first.stop();
  for (const i of before) assert.ok(!alive(i.pid!), `${i.id} was stopped with herd`);

  const second = await startHerd({ dataDir: first.dataDir });
  herds.push(second);
  const after = await waitFor("both instances running again", async () => {
    const items = await instances(second);
    return items.length === 2 && items.every((i) => i.state === "running") ? items : undefined;
  });
  assert.deepEqual(after.map((i) => i.id).sort(), before.map((i) => i.id).sort(), "the same instances");
  // The new herd up's gateway learns them from the store a moment after they run.
  await waitFor("hello served again", async () => (await second.request("hello.localhost")).status === 200);
  const list = async () =>
    (
      await second.api<{ items: { reason: string; type: string; count?: number }[] }>(
        "GET",
        "/events?app=hello&limit=500",
      )
    ).body.items;
  // Both restarts, as one event each or one for the two (EventRecorder.recordAll), recorded within
  // half a second of the heartbeats that reported them (settings.eventBatchMs).
  const restartsIn = (events: { reason: string; count?: number }[]) =>
    events.filter((e) => e.reason === "Restarting").reduce((n, e) => n + (e.count ?? 1), 0);
  await waitFor("both restarts recorded", async () => restartsIn(await list()) >= 2, 5000);
  const events = await list();
  assert.equal(restartsIn(events), 2);
  assert.ok(
    !events.some((e) => ["Exited", "Replacing", "BackOff", "CrashLoop"].includes(e.reason)),
    "no crash: nothing replaced",
  );
});

test("a second agent joins; killed, its instances move to the first node", async () => {
  const herd = await startHerd();
  herds.push(herd);
  dirs.push(herd.dataDir);
  const agentDir = mkdtempSync(join(tmpdir(), "herd-agent2-"));
  dirs.push(agentDir);
  const agent = spawn(
    process.execPath,
    [
      join(ROOT, "src/cli/main.ts"),
      "agent",
      "--server",
      herd.url,
      "--token",
      herd.token,
      "--name",
      "second",
      "--data",
      agentDir,
    ],
    {
      cwd: ROOT,
      stdio: "ignore",
    },
  );
  procs.push(agent);
  await waitFor("two ready nodes", async () => {
    const n = (await herd.api<{ items: Node[] }>("GET", "/nodes")).body.items;
    return n.length === 2 && n.every((x) => x.state === "ready");
  });
  const d = await herd.cli(["deploy", join(ROOT, "examples/hello")]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const s = await herd.cli(["scale", "web=4", "--app", "hello"]);
  assert.equal(s.code, 0, s.stderr);
  const placed = await waitFor("4 running, some on the second node", async () => {
    const r = (await instances(herd)).filter((i) => i.state === "running" && i.desired === "running");
    return r.length === 4 && r.some((i) => i.node === "second") ? r : undefined;
  });
  const onSecond = placed.filter((i) => i.node === "second");

  const killedAt = Date.now();
  agent.kill("SIGKILL");
  // The machine is gone: so are its processes (one that already exited is gone too).
  for (const i of onSecond) {
    try {
      process.kill(-i.pid!, "SIGKILL");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }
  const moved = await waitFor(
    "the second node's instances to run on the first",
    async () => {
      const r = (await instances(herd)).filter((i) => i.state === "running" && i.desired === "running");
      return r.length === 4 && r.every((i) => i.node !== "second") ? r : undefined;
    },
    30_000,
  );
  const seconds = (Date.now() - killedAt) / 1000;
  assert.equal(moved.length, 4);
  assert.ok(seconds <= 20, `moved after ${seconds}s`);
  const nodes = (await herd.api<{ items: Node[] }>("GET", "/nodes")).body.items;
  assert.equal(nodes.find((n) => n.name === "second")?.state, "lost");
  // The gateway's table follows the move a moment later.
  await waitFor(
    "hello served from the first node",
    async () => (await herd.request("hello.localhost")).status === 200,
  );
});
