// Deploys that cannot finish end, and say why: a release that cannot be placed
// on this machine fails its deploy at once with the reason in numbers, while
// the old release keeps serving every request; `herd scale` says how many of
// the asked instances cannot be placed; an instance killed on a full node is
// replaced in the room it left.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Event, Instance, Node, Service } from "../../src/model/objects.ts";
import { cores } from "../../src/scheduler/shortfall.ts";
import { cleanupHerd, type Herd, served, sleep, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-rollout-"));
const app = join(work, "slow");
const HOST = "slow.localhost";

before(async () => {
  herd = await startHerd();
  mkdirSync(app);
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({ name: "slow", private: true, type: "module", scripts: { start: "node server.js" } }),
  );
  writeFileSync(
    join(app, "server.js"),
    [
      'import { createServer } from "node:http";',
      'createServer((req, res) => res.end("release " + process.env.HERD_RELEASE)).listen(Number(process.env.PORT));',
    ].join("\n"),
  );
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

/** herd.yaml for `instances` of web at `cpu` each (in `dir`, app `name`). */
function manifest(instances: number, cpu: number, dir = app, name = "slow", host = HOST): void {
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      `app: ${name}`,
      "services:",
      "  web:",
      "    command: node server.js",
      `    instances: ${instances}`,
      `    resources: { cpu: ${cpu}, memory: 32Mi }`,
      "    health: { path: / }",
      `    routes: [{ host: ${host} }]`,
      "",
    ].join("\n"),
  );
}

test("a deploy that cannot be placed fails at once with the reason in numbers; the old release keeps serving", async () => {
  manifest(1, 0.25);
  const v1 = await herd.cli(["deploy", app]);
  assert.equal(v1.code, 0, v1.stdout + v1.stderr);
  // The requests below must all meet v1: they start once the gateway has its route (a moment after the deploy).
  await served(herd, HOST, "release 1");

  // More half-cores than this machine's node has: only some fit, whatever the machine.
  const [node] = (await herd.api<{ items: Node[] }>("GET", "/nodes")).body.items;
  assert.ok(node, "one node");
  // What the scheduler fills: allocatable CPU times the node's overcommit ratio (docs/resources.md).
  const cpu = node.allocatable.cpu * (node.cpuOvercommit ?? 1);
  const fit = Math.floor(cpu / 0.5 + 1e-9);
  const asked = fit + 4;
  manifest(asked, 0.5);

  // Steady requests while the deploy runs: every one is answered by v1.
  const answers: string[] = [];
  let deploying = true;
  const load = (async () => {
    while (deploying) {
      const r = await herd.request(HOST).catch((err: Error) => ({ status: 0, body: err.message }));
      answers.push(r.status === 200 ? r.body : `${r.status} ${r.body}`);
      await sleep(50);
    }
  })();
  const started = Date.now();
  const v2 = await herd.cli(["deploy", app, "--deadline", "60s"]);
  const took = Date.now() - started;
  deploying = false;
  await load;

  assert.equal(v2.code, 1, v2.stdout + v2.stderr);
  assert.match(v2.stdout, /web: rolling out v2 to \d+ instances \(fails after 60s without progress\)/);
  const reason = `needs ${cores(asked * 0.5)} CPU, ${cores(cpu)} free on 1 node: ${node.name} ${cores(cpu)} free of ${cores(cpu)}`;
  assert.equal(
    v2.stderr,
    `herd: web: v2: ${asked - fit} of ${asked} instances cannot be placed: ${reason}. v1 keeps serving.\n`,
  );
  assert.ok(took < 30_000, `failed after ${took} ms, not at a deadline`);
  assert.ok(answers.length > 5, `${answers.length} requests during the deploy`);
  assert.deepEqual(
    answers.filter((a) => a !== "release 1"),
    [],
    "v1 answered every request",
  );

  const detail = (await herd.api<{ app: { release: number }; services: Service[] }>("GET", "/apps/slow"))
    .body;
  assert.equal(detail.app.release, 1);
  assert.deepEqual(
    detail.services.map((s) => [s.name, s.release, s.instances, s.state]),
    [["web", 1, 1, "running"]],
  );
  assert.equal((await herd.request(HOST)).body, "release 1");

  // herd scale: accepted (exit 0), and it says how many cannot be placed and why.
  const many = Math.floor(cpu / 0.25 + 1e-9) + 3;
  const scaled = await herd.cli(["scale", `web=${many}`, "--app", "slow"]);
  assert.equal(scaled.code, 0, scaled.stderr);
  assert.equal(
    scaled.stderr,
    `herd: web: ${many - Math.floor(cpu / 0.25 + 1e-9)} of ${many} instances cannot be placed: needs ${cores(many * 0.25)} CPU, ${cores(cpu)} free on 1 node: ${node.name} ${cores(cpu)} free of ${cores(cpu)}. They wait as pending until there is room (herd ps shows them).\n`,
  );
  const back = await herd.cli(["scale", "web=1", "--app", "slow"]);
  assert.equal(back.code, 0, back.stderr);
  assert.equal(back.stderr, "");
});

test("a deadline that is not a duration in range is refused before anything is uploaded, and by the API", async () => {
  const r = await herd.cli(["deploy", app, "--deadline", "2d"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--deadline must be a duration like 90s, 5m or 1h/);
  const api = await fetch(`${herd.url}/api/v1/apps/slow/deploys?deadline=0s`, {
    method: "POST",
    headers: { authorization: `Bearer ${herd.token}`, "content-type": "application/gzip" },
    body: new Uint8Array([0x1f, 0x8b, 0x08]),
  });
  assert.equal(api.status, 400);
  const body = (await api.json()) as { details: { field: string }[] };
  assert.equal(body.details[0]?.field, "querystring.deadline");
});

test("kill -9 of an instance on a full node: its replacement takes the room it left, with no FailedScheduling", async () => {
  // A second app whose 3 instances fill what the node has left.
  const full = join(work, "full");
  mkdirSync(full);
  for (const f of ["package.json", "server.js"]) writeFileSync(join(full, f), readFileSync(join(app, f)));
  const [node] = (await herd.api<{ items: Node[] }>("GET", "/nodes")).body.items;
  const instances = async (name: string) =>
    (await herd.api<{ items?: Instance[] }>("GET", `/apps/${name}/instances`)).body.items ?? [];
  // What the first test left running (nothing when this test runs alone), once its scale-down is done.
  const left = await waitFor("the first app's scale-down to finish", async () => {
    const all = await instances("slow");
    return all.every((i) => i.desired === "running") && all;
  });
  const held = left.reduce((sum, i) => sum + i.run.resources.cpu, 0);
  const share = Math.floor(((node!.allocatable.cpu * (node!.cpuOvercommit ?? 1) - held) / 3) * 100) / 100;
  manifest(3, share, full, "full", "full.localhost");
  const d = await herd.cli(["deploy", full]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const before = (await instances("full")).filter((i) => i.state === "running");
  assert.equal(before.length, 3);

  const victim = before[0]!;
  const killedAt = new Date().toISOString();
  process.kill(victim.pid!, "SIGKILL");
  const after = await waitFor(
    "a replacement running",
    async () => {
      const now = (await instances("full")).filter((i) => i.state === "running" && i.desired === "running");
      return now.length === 3 && !now.some((i) => i.id === victim.id) && now;
    },
    60_000,
  );
  assert.equal(after.filter((i) => !before.some((b) => b.id === i.id)).length, 1, "one replacement");
  const events = (await herd.api<{ items: Event[] }>("GET", "/events?app=full&limit=500")).body.items;
  assert.ok(
    events.some((e) => e.reason === "Replacing" && e.instance === victim.id),
    JSON.stringify(events.map((e) => e.reason)),
  );
  assert.deepEqual(
    events.filter((e) => e.reason === "FailedScheduling" && e.time >= killedAt).map((e) => e.message),
    [],
  );
});
