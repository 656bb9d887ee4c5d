// The remediation engine restarts a pet in place: three pet instances under
// traffic, one of them turns bad (it fails every second request) while its
// peers stay fine. The engine picks `restart` (a pet is never replaced),
// records the evidence, and the instance comes back with the same id, on the
// same node, with its data directory kept; the failures stop.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Event, Instance } from "../../src/model/objects.ts";
import type { RemediationPolicy } from "../../src/model/remediation.ts";
import {
  cleanupHerd,
  type Herd,
  quietTraffic,
  served,
  sleep,
  startHerd,
  steadyTraffic,
  waitFor,
} from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-restart-pet-"));
const HOST = "store.localhost";

before(async () => {
  herd = await startHerd();
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

/** Counts its starts in its data dir; a file `bad` dropped there makes this process fail every second request. */
const SERVER_JS = `
import { createServer } from "node:http";
import { appendFileSync, existsSync, unlinkSync } from "node:fs";
const dir = process.env.HERD_DATA_DIR;
appendFileSync(dir + "/starts", "start\\n");
let bad = false;
let n = 0;
setInterval(() => {
  if (existsSync(dir + "/bad")) { unlinkSync(dir + "/bad"); bad = true; }
}, 200);
createServer((req, res) => {
  if (req.url === "/health") return res.end("ok");
  if (bad && n++ % 2 === 1) { res.statusCode = 500; return res.end("broken"); }
  res.end("ok");
}).listen(Number(process.env.PORT));
`;

test("one pet far worse than its peers is restarted in place, keeping its id, node and data", async () => {
  const dir = join(work, "store");
  mkdirSync(dir);
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: "store", private: true, type: "module", scripts: { start: "node server.js" } }),
  );
  writeFileSync(join(dir, "server.js"), SERVER_JS);
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      "app: store",
      "services:",
      "  db:",
      "    command: node server.js",
      "    mode: pet",
      "    instances: 3",
      "    resources: { cpu: 0.05, memory: 64Mi }",
      "    health: { path: /health }",
      `    routes: [{ host: ${HOST} }]`,
      "",
    ].join("\n"),
  );
  const d = await herd.cli(["deploy", dir]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const set = await herd.api("PUT", "/apps/store/remediation", {
    rules: [{ name: "pets", symptom: "error-rate", windowS: 5, actions: ["replace", "restart"] }],
    outcomeAfterS: 10,
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  const instances = async () =>
    (await herd.api<{ items: Instance[] }>("GET", "/apps/store/instances")).body.items.filter(
      (i) => i.desired === "running",
    );
  const events = async () =>
    (await herd.api<{ items: Event[] }>("GET", "/events?app=store&limit=500")).body.items;
  const pets = await instances();
  assert.equal(pets.length, 3);
  const victim = pets[0];
  const volume = join(herd.dataDir, "agent", "volumes", victim.id);

  // The traffic must see no failure before the bad file: it starts once the gateway has the route.
  await served(herd, HOST, "ok");
  const traffic = steadyTraffic(herd.gatewayUrl, HOST, { connections: 3, rate: 60, maxSeconds: 120 });
  try {
    await sleep(3000);
    assert.equal(traffic.counts().failed, 0, JSON.stringify(traffic.counts().failures));
    writeFileSync(join(volume, "bad"), "");
    const decided = await waitFor(
      "the engine's restart decision",
      async () => (await events()).find((e) => e.reason === "Remediation" && /restart/.test(e.message)),
      60_000,
    ).catch(async (err: Error) => {
      const policy = (await herd.api<RemediationPolicy>("GET", "/apps/store/remediation")).body;
      throw new Error(`${err.message}\npolicy: ${JSON.stringify(policy).slice(0, 3000)}`);
    });
    assert.match(
      decided.message,
      new RegExp(
        `^pets: restart ${victim.id}: pet ${victim.id} is far worse than its 2 peers: restart it in place`,
      ),
    );
    assert.ok(
      decided.details?.some((l) => l.startsWith(`not replace: ${victim.id} is a pet`)),
      String(decided.details),
    );
    assert.ok(
      decided.details?.some((l) => /^peers' median: 0% failed \(2 instances\)$/.test(l)),
      String(decided.details),
    );
    const restarting = (await events()).find((e) => e.reason === "Restarting" && e.instance === victim.id);
    assert.match(restarting?.message ?? "", /in place \(generation \d+\) for the remediation engine/);
    const back = await waitFor(
      "the pet running again",
      async () => {
        const i = (await instances()).find((x) => x.id === victim.id);
        return i && i.state === "running" && i.generation > victim.generation ? i : undefined;
      },
      30_000,
    );
    assert.equal(back.node, victim.node);
    assert.notEqual(back.pid, victim.pid);
    assert.deepEqual(
      readFileSync(join(volume, "starts"), "utf8").trim().split("\n"),
      ["start", "start"],
      "the same data directory, started twice",
    );
    assert.equal((await instances()).length, 3, "nothing replaced");
    // Once it runs again (and the gateway, a moment later, has it back), no more failures.
    await quietTraffic(traffic, "after the restart");
    const before = traffic.counts().failed;
    await sleep(3000);
    assert.equal(traffic.counts().failed - before, 0, "no failures after the restart");
    const outcome = await waitFor(
      "the outcome",
      async () => (await events()).find((e) => e.reason === "RemediationOutcome"),
      30_000,
    );
    assert.match(outcome.message, new RegExp(`pets: restart ${victim.id}: the error-rate cleared`));
    assert.ok(
      outcome.details?.includes(`pet ${victim.id} is running again on ${victim.node}`),
      String(outcome.details),
    );
  } finally {
    const counts = await traffic.stop();
    console.log(`traffic: ${JSON.stringify(counts.failures)} failed of ${counts.total}`);
  }
});
