// Dependencies and version sets on a real herd: a deploy starts a service only
// once what it dependsOn runs; a set with a cycle is refused; a 3-app set
// moves its apps dependencies first, each healthy before the next; a set whose
// second app fails rolls the first one back to where it was.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { App, Event, Instance, Release } from "../../src/model/objects.ts";
import type { VersionSet } from "../../src/model/version-set.ts";
import { cleanupHerd, type Herd, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-sets-"));

before(async () => {
  herd = await startHerd();
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

/** An app of workers that listen on PORT after `STARTUP_MS`; `command` overrides the start (a broken release). */
function writeApp(
  name: string,
  services: Record<string, { dependsOn?: string[]; startupMs?: number; command?: string }>,
): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name, private: true, type: "module" }));
  writeFileSync(
    join(dir, "server.js"),
    [
      'import { createServer } from "node:http";',
      "setTimeout(() => createServer((req, res) => res.end(process.env.HERD_SERVICE)).listen(Number(process.env.PORT)), Number(process.env.STARTUP_MS ?? 0));",
    ].join("\n"),
  );
  const lines = [`app: ${name}`, "services:"];
  for (const [svc, s] of Object.entries(services)) {
    lines.push(
      `  ${svc}:`,
      `    command: ${s.command ?? "node server.js"}`,
      "    resources: { cpu: 0.05, memory: 32Mi }",
      "    health: { tcp: true }",
      `    env: { STARTUP_MS: ${s.startupMs ?? 0} }`,
    );
    if (s.dependsOn) lines.push(`    dependsOn: [${s.dependsOn.join(", ")}]`);
  }
  writeFileSync(join(dir, "herd.yaml"), `${lines.join("\n")}\n`);
  return dir;
}

async function deploy(dir: string, ok = true) {
  const r = await herd.cli(["deploy", dir], { timeoutMs: 120_000 });
  assert.equal(r.code === 0, ok, r.stdout + r.stderr);
  return r;
}

const events = async (app?: string) =>
  (await herd.api<{ items: Event[] }>("GET", `/events${app ? `?app=${app}` : ""}`)).body.items;

/** The release content an app serves (a rollback to vN counts as vN). */
async function content(app: string): Promise<number | null> {
  const a = (await herd.api<{ app: App }>("GET", `/apps/${app}`)).body.app;
  const rel = (await herd.api<{ items: Release[] }>("GET", `/apps/${app}/releases`)).body.items;
  const r = rel.find((x) => x.version === a.release);
  return r ? (r.rollbackOf ?? r.version) : null;
}

test("a deploy starts a service only once the service it dependsOn is healthy", async () => {
  const r = await deploy(writeApp("stack", { web: { dependsOn: ["db"] }, db: { startupMs: 1500 } }));
  assert.match(r.stdout, /v1 is serving|succeeded|Release v1/, r.stdout);
  const insts = (await herd.api<{ items: Instance[] }>("GET", "/apps/stack/instances")).body.items;
  const web = insts.find((i) => i.service === "web");
  // The agents' transitions are recorded within half a second (settings.eventBatchMs), at their own time.
  let ev: Event[] = [];
  const dbHealthy = await waitFor(
    "db's Healthy event",
    async () => {
      ev = await events("stack");
      return ev.find((e) => e.service === "db" && e.reason === "Healthy");
    },
    5000,
  ).catch(() => undefined);
  assert.ok(web && dbHealthy, JSON.stringify(ev.map((e) => e.reason)));
  assert.ok(web.createdAt >= dbHealthy.time, `web created ${web.createdAt}, db healthy ${dbHealthy.time}`);
  assert.ok(ev.some((e) => e.reason === "WaitingForDependencies" && e.service === "web"));
});

test("a deploy that would close a cycle across apps is refused with a 400 naming it, before it uploads", async () => {
  await deploy(writeApp("edge", { web: { dependsOn: ["stack/web"] } }));
  const check = await herd.api<{ message: string }>("POST", "/apps/stack/dependencies/check", {
    services: { web: { dependsOn: ["db", "edge/web"] }, db: {} },
  });
  assert.equal(check.status, 400);
  assert.match(check.body.message, /dependency cycle: stack\/web → edge\/web → stack\/web/);
  const r = await deploy(writeApp("stack", { web: { dependsOn: ["db", "edge/web"] }, db: {} }), false);
  assert.match(r.stderr + r.stdout, /dependency cycle: stack\/web → edge\/web → stack\/web/);
  assert.doesNotMatch(r.stdout, /Packing/, "refused before it packs and uploads");
  const unknown = await herd.api<{ message: string }>("POST", "/apps/stack/dependencies/check", {
    services: { web: { dependsOn: ["nope/api"] } },
  });
  assert.equal(unknown.status, 400);
  assert.match(unknown.body.message, /there is no app nope/);
});

test("a set with a dependency cycle is refused with a 400 naming it", async () => {
  await deploy(writeApp("c", { web: {} }));
  await deploy(writeApp("b", { web: {} }));
  await deploy(writeApp("a", { web: {} }));
  const bad = await herd.api<{ code: string; message: string }>("POST", "/sets", {
    set: "prod",
    apps: {
      a: { version: 1, dependsOn: ["b"] },
      b: { version: 1, dependsOn: ["c"] },
      c: { version: 1, dependsOn: ["a"] },
    },
  });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /dependency cycle: a → b → c → a/);
  writeFileSync(
    join(work, "cycle.set.yaml"),
    "set: prod\napps:\n  a: { version: 1, dependsOn: [b] }\n  b: { version: 1, dependsOn: [a] }\n",
  );
  const cli = await herd.cli(["set", "apply", "-f", join(work, "cycle.set.yaml")]);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr + cli.stdout, /dependency cycle: a → b → a/);
});

test("a 3-app set moves its apps dependencies first, each healthy before the next", async () => {
  for (const app of ["c", "b", "a"]) await deploy(join(work, app)); // each now serves v2
  writeFileSync(
    join(work, "herd.set.yaml"),
    "set: prod\napps:\n  a: { version: 1, dependsOn: [b] }\n  b: { version: 1, dependsOn: [c] }\n  c: { version: 1 }\n",
  );
  const diff = await herd.cli(["set", "diff"], { cwd: work });
  assert.match(diff.stdout, /a\s+v2\s+v1\s+downgrade/, diff.stdout);
  const r = await herd.cli(["set", "apply"], { cwd: work, timeoutMs: 180_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /set prod v1: c v1 → b v1 → a v1/);
  const set = (await herd.api<VersionSet>("GET", "/sets/prod/versions/1")).body;
  assert.equal(set.state, "applied");
  const [c, b, a] = set.steps;
  assert.deepEqual([c?.app, b?.app, a?.app], ["c", "b", "a"]);
  assert.ok(c!.doneAt! <= b!.startedAt! && b!.doneAt! <= a!.startedAt!, JSON.stringify(set.steps));
  const applied = (await events()).filter((e) => e.reason === "SetAppApplied").map((e) => e.app);
  assert.deepEqual(applied, ["c", "b", "a"]);
  for (const app of ["a", "b", "c"]) assert.equal(await content(app), 1, app);
  const history = await herd.cli(["set", "history", "--set", "prod"]);
  assert.match(history.stdout, /v1\s+applied/);
});

test("a set whose second app fails rolls the first back to where it was", async () => {
  // b v4 never becomes healthy (v3 is the set's rollback of b to v1).
  await deploy(writeApp("b", { web: { command: "node -e 'process.exit(3)'" } }), false);
  writeFileSync(
    join(work, "bad.set.yaml"),
    "set: prod\napps:\n  c: { version: 2 }\n  b: { version: 4, dependsOn: [c] }\n",
  );
  const r = await herd.cli(["set", "apply", "-f", "bad.set.yaml"], { cwd: work, timeoutMs: 180_000 });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /c: runs v2, healthy/);
  assert.match(r.stdout, /set prod v2 rolled back: b: /);
  const set = (await herd.api<VersionSet>("GET", "/sets/prod/versions/2")).body;
  assert.deepEqual(
    set.steps.map((s) => [s.app, s.state]),
    [
      ["c", "reverted"],
      ["b", "reverted"],
    ],
  );
  assert.equal(await content("c"), 1, "c is back on the previous set's v1");
  assert.equal(await content("b"), 1);
  const reasons = (await events()).map((e) => e.reason);
  assert.ok(reasons.includes("SetFailed") && reasons.includes("SetRolledBack"));
});
