// `herd restart` through a real `herd up`: every instance is replaced while
// steady requests all get an answer, and the new instances start with the
// config's keys in their env (a key set while they ran reaches the env only
// at a start); an unknown service is refused, naming the ones there are.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Instance } from "../../src/model/objects.ts";
import { cleanupHerd, type Herd, served, sleep, startHerd } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-restart-"));
const app = join(work, "rs");
const HOST = "rs.localhost";

before(async () => {
  herd = await startHerd();
  mkdirSync(app);
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({ name: "rs", private: true, scripts: { start: "node server.js" } }),
  );
  writeFileSync(
    join(app, "server.js"),
    [
      'require("node:http")',
      '  .createServer((req, res) => res.end(process.env.HERD_INSTANCE + " " + (process.env.GREETING ?? "-")))',
      "  .listen(Number(process.env.PORT));",
      "",
    ].join("\n"),
  );
  writeFileSync(
    join(app, "herd.yaml"),
    [
      "app: rs",
      "services:",
      "  web:",
      "    command: node server.js",
      "    instances: 2",
      "    health: { path: / }",
      "",
    ].join("\n"),
  );
  const d = await herd.cli(["deploy", app]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  await served(herd, HOST, /^rs-web-\S+ -$/);
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

const running = async (): Promise<string[]> =>
  (await herd.api<{ items: Instance[] }>("GET", "/apps/rs/instances")).body.items
    .filter((i) => i.desired === "running" && i.state === "running")
    .map((i) => i.id)
    .sort();

test("herd restart replaces every instance with no failed request, and the new ones have the config's keys as env", async () => {
  const set = await herd.cli(["config", "set", "GREETING=hi", "--app", "rs"]);
  assert.equal(set.code, 0, set.stderr);
  await sleep(500);
  assert.match((await herd.request(HOST)).body, / -$/, "a running instance's env is its start's");
  const before = await running();
  assert.equal(before.length, 2);

  const answers: string[] = [];
  let restarting = true;
  const load = (async () => {
    while (restarting) {
      const r = await herd.request(HOST).catch((err: Error) => ({ status: 0, body: err.message }));
      answers.push(r.status === 200 ? r.body : `${r.status} ${r.body}`);
      await sleep(20);
    }
  })();
  const r = await herd.cli(["restart", "--app", "rs", "--deadline", "60s"]);
  restarting = false;
  await load;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /rs: every instance of web restarted/);
  const now = await running();
  assert.equal(now.length, 2);
  assert.deepEqual(
    now.filter((id) => before.includes(id)),
    [],
    "every instance is new",
  );
  assert.ok(answers.length > 5, `${answers.length} requests during the restart`);
  assert.deepEqual(
    answers.filter((a) => !/^rs-web-\S+ (-|hi)$/.test(a)),
    [],
    "every request was answered",
  );
  await served(herd, HOST, /^rs-web-\S+ hi$/);
});

test("herd restart of a service the app does not have is refused, naming those it has", async () => {
  const r = await herd.cli(["restart", "nope", "--app", "rs"]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /app rs has no service nope \(it has web\)/);
});
