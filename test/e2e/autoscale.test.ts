// Autoscaling end to end: a real herd up (server, agent, gateway), real
// traffic through the gateway, and the counts the autoscaler sets from the
// gateways' live figures. Short windows and delays in herd.yaml keep it quick.
//
// Needs the gateways' live load figures (Context.load, observe/live-load.ts):
// without them the autoscaler holds every count and these tests fail.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Event, Instance, Service } from "../../src/model/objects.ts";
import { cleanupHerd, type Herd, sleep, startHerd, steadyTraffic, waitFor } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-autoscale-"));

before(async () => {
  herd = await startHerd();
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

/** An app whose web answers after `delayMs`, autoscaled by `autoscale` (a herd.yaml flow map). */
function writeApp(name: string, autoscale: string, delayMs = 5): string {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name, private: true, type: "module", scripts: { start: "node server.js" } }),
  );
  writeFileSync(
    join(dir, "server.js"),
    [
      'import { createServer } from "node:http";',
      `createServer((req, res) => setTimeout(() => res.end("ok"), ${delayMs})).listen(Number(process.env.PORT));`,
    ].join("\n"),
  );
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      `app: ${name}`,
      "services:",
      "  web:",
      "    command: node server.js",
      "    resources: { cpu: 0.05, memory: 32Mi }",
      "    health: { path: / }",
      `    routes: [{ host: ${name}.localhost }]`,
      `    autoscale: ${autoscale}`,
      "",
    ].join("\n"),
  );
  return dir;
}

const serviceOf = async (app: string) =>
  (await herd.api<{ services: Service[] }>("GET", `/apps/${app}`)).body.services.find(
    (s) => s.name === "web",
  )!;
const running = async (app: string) =>
  (await herd.api<{ items: Instance[] }>("GET", `/apps/${app}/instances`)).body.items.filter(
    (i) => i.state === "running" && i.desired === "running",
  ).length;
const events = async (app: string) =>
  (await herd.api<{ items: Event[] }>("GET", `/events?app=${app}&limit=500`)).body.items;

test("a ×20 load step scales out within seconds, new instances serve, and it scales back in after the delay", async () => {
  const dir = writeApp(
    "burst",
    "{ min: 1, max: 5, target: { rps: 20 }, stableWindow: 6s, panicWindow: 2s, scaleDownDelay: 3s }",
  );
  const deployed = await herd.cli(["deploy", dir]);
  assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
  assert.equal((await serviceOf("burst")).instances, 1);

  // A quiet start: 5 rps, under the target of 20 for one instance.
  const quiet = steadyTraffic(herd.gatewayUrl, "burst.localhost", {
    connections: 1,
    rate: 5,
    maxSeconds: 60,
  });
  await sleep(4000);
  assert.equal((await serviceOf("burst")).instances, 1, "no scale-out at 5 rps");
  await quiet.stop();

  // ×20: 100 rps want 5 instances of 20 rps.
  const step = Date.now();
  const load = steadyTraffic(herd.gatewayUrl, "burst.localhost", {
    connections: 10,
    rate: 100,
    maxSeconds: 60,
  });
  try {
    const decided = await waitFor(
      "an Autoscaled event after the load step",
      async () =>
        (await events("burst")).find((e) => e.reason === "Autoscaled" && Date.parse(e.time) >= step),
      15_000,
    );
    const decisionMs = Date.parse(decided.time) - step;
    assert.match(decided.message, /^web scaled from 1 to \d+: /);
    assert.ok(decisionMs <= 3000, `the scale-out decision took ${decisionMs} ms (goal ≤ 3 s)`);
    await waitFor("at least 4 instances running", async () => (await running("burst")) >= 4, 30_000);
    const status = await herd.cli(["autoscale", "status", "--app", "burst"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^web\s+[45]\s+1\.\.5\s+20 rps per instance\s+(panic|stable)\s/m);
    assert.match(status.stdout, /1 → \d\s+panic: the last 2s ask for/);
  } finally {
    const counts = await load.stop();
    assert.equal(counts.failed, 0, `requests failed during the step: ${JSON.stringify(counts.failures)}`);
  }

  // No load: after the 3 s scale-down delay (and at most half per step) it is back at min.
  await waitFor(
    "the count back at 1",
    async () => ((await serviceOf("burst")).instances === 1 ? true : undefined),
    30_000,
  );
  // The count is written first, its event a moment later (controllers/scale.ts).
  await waitFor("the scale-in's Autoscaled event", async () =>
    (await events("burst")).some((e) => e.reason === "Autoscaled" && /scaled from \d+ to 1:/.test(e.message)),
  );

  // herd scale outside [min, max] is kept inside, and says so.
  const scaled = await herd.cli(["scale", "web=9", "--app", "burst"]);
  assert.equal(scaled.code, 0, scaled.stderr);
  assert.match(scaled.stderr, /web is autoscaled between 1 and 5: 9 became 5; the autoscaler may change it/);
  // The count written was 5; the autoscaler, with no load, may already be bringing it down.
  const toFive = (await events("burst")).filter((e) => e.reason === "Scaled" && /to 5\b/.test(e.message));
  assert.ok(toFive.length > 0, "a Scaled event to 5");
});

test("min 0: no request for idleAfter → no instances", async () => {
  const dir = writeApp("sleepy", "{ min: 0, max: 2, target: { concurrency: 10 }, idleAfter: 3s }");
  const deployed = await herd.cli(["deploy", dir]);
  assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
  // The idle time counts from the last request the gateway saw, so from when it was sent (a cold start
  // may hold its answer for seconds); and it is retried until the gateway has the route (a moment after the deploy).
  let lastRequest = 0;
  await waitFor("a 200 from sleepy", async () => {
    lastRequest = Date.now();
    return (await herd.request("sleepy.localhost")).status === 200;
  });
  await waitFor(
    "the count at 0",
    async () => ((await serviceOf("sleepy")).instances === 0 ? true : undefined),
    20_000,
  );
  assert.ok(Date.now() - lastRequest >= 3000, "not before idleAfter");
  // The count is written first, its event a moment later (controllers/scale.ts).
  await waitFor("an Autoscaled event that says it was idle", async () =>
    (await events("sleepy")).some(
      (e) => e.reason === "Autoscaled" && / to 0: idle: no request for/.test(e.message),
    ),
  );
  await waitFor(
    "no instance running",
    async () => ((await running("sleepy")) === 0 ? true : undefined),
    20_000,
  );
  const status = await herd.cli(["autoscale", "status", "--app", "sleepy"]);
  assert.match(status.stdout, /^web\s+0\s+0\.\.2\s+10 in flight per instance\s+idle\s/m);
});
