// The data plane outlives the control plane (docs/availability.md): with
// steady traffic through herd up's gateway, a kill -9 of herd up, an upgrade
// (--keep-apps, stop, start on newer code) and a dead app instance while the
// control plane is away; then herd down ends what herd up left.

import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { Instance } from "../../src/model/objects.ts";
import {
  alive,
  cleanupHerd,
  emptyHerdCgroups,
  freePort,
  gatewayPids,
  gatewayRecord,
  type Herd,
  killRecordedInstances,
  newerCheckout,
  ROOT,
  runCli,
  served,
  sleep,
  startHerd,
  steadyTraffic,
  type Traffic,
  waitFor,
} from "./harness.ts";

const herds: Herd[] = [];
const dirs: string[] = [];
const loads: Traffic[] = [];
after(async () => {
  for (const l of loads) await l.stop();
  for (const h of herds) await cleanupHerd(h, { keepDir: true });
  for (const d of dirs) {
    killRecordedInstances(d);
    rmSync(d, { recursive: true, force: true });
  }
});

/** Requests a second through the gateway: enough to see any gap, little enough for a 2-core machine. */
const RATE = 300;

const instances = async (herd: Herd) =>
  (await herd.api<{ items: Instance[] }>("GET", "/apps/hello/instances")).body.items;

/**
 * herd up (kept for cleanup) with examples/hello deployed, and steady traffic to it once the gateway
 * serves it (the deploy is done when the store says so; the gateway's table follows a moment later).
 */
async function helloUnderTraffic(
  extraArgs: string[] = [],
  onAnswer?: (sentAt: number, ms: number, outcome: string | undefined) => void,
): Promise<{ herd: Herd; traffic: Traffic }> {
  const herd = await startHerd({ extraArgs });
  herds.push(herd);
  dirs.push(herd.dataDir);
  const d = await herd.cli(["deploy", join(ROOT, "examples/hello")]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  await served(herd, "hello.localhost", / from \S+ \(release \d+\)/);
  const traffic = steadyTraffic(herd.gatewayUrl, "hello.localhost", {
    rate: RATE,
    connections: 8,
    maxSeconds: 120,
    onAnswer,
  });
  loads.push(traffic);
  await sleep(1000);
  return { herd, traffic };
}

const summary = (c: { total: number; failed: number; failures: Record<string, number> }) =>
  `${c.failed} of ${c.total} failed: ${JSON.stringify(c.failures)}`;

test("kill -9 of herd up: the gateway keeps serving; the next herd up adopts it; no request fails", async () => {
  // A fixed API port, so the next herd up's control plane is where the gateway looks for it.
  const port = String(await freePort());
  const { herd: first, traffic } = await helloUnderTraffic(["--port", port]);
  const gateway = gatewayRecord(first.dataDir).pid;

  const atKill = traffic.counts().total;
  await first.kill9();
  await sleep(4000);
  assert.ok(alive(gateway), "the gateway outlived herd up");
  // At least a quarter of the rate: a shared 2-core machine may be slow, but not silent.
  const away = traffic.counts().total - atKill;
  assert.ok(away > RATE, `traffic went on while the control plane was away (${away} answered in 4 s)`);

  const second = await startHerd({ dataDir: first.dataDir, extraArgs: ["--port", port] });
  herds.push(second);
  assert.match(second.output(), new RegExp(`pid ${gateway}, adopted`));
  // The adopted gateway follows the new control plane: a third instance joins the rotation.
  const s = await second.cli(["scale", "web=3", "--app", "hello"]);
  assert.equal(s.code, 0, s.stderr);
  const seen = new Set<string>();
  await waitFor("answers from three instances", async () => {
    const r = await second.request("hello.localhost");
    if (r.status === 200) seen.add(r.body.split(" ")[2]);
    return seen.size === 3;
  });
  const counts = await traffic.stop();
  assert.equal(counts.failed, 0, summary(counts));
  assert.deepEqual(gatewayPids(first.dataDir), [gateway], "one gateway: the same one");
});

test("herd up --keep-apps stopped and started on newer code: the new gateway takes the ports over; no request fails", async () => {
  const port = String(await freePort());
  const { herd: first, traffic } = await helloUnderTraffic(["--port", port, "--keep-apps"]);
  const old = gatewayRecord(first.dataDir).pid;
  const before = await instances(first);

  await first.stop();
  assert.ok(alive(old), "--keep-apps leaves the gateway serving");
  await sleep(1000);

  // A newer checkout: another directory, and code that differs.
  const checkout = newerCheckout();
  dirs.push(checkout);

  const second = await startHerd({
    dataDir: first.dataDir,
    root: checkout,
    extraArgs: ["--port", port, "--keep-apps"],
  });
  herds.push(second);
  assert.match(second.output(), /took over from the last one/);
  const successor = gatewayRecord(first.dataDir).pid;
  assert.notEqual(successor, old);
  await waitFor("the old gateway to drain and exit", () => !alive(old), 20_000);
  await sleep(1000);
  const counts = await traffic.stop();
  assert.equal(counts.failed, 0, summary(counts));
  assert.deepEqual(gatewayPids(first.dataDir), [successor], "one gateway: the new one");
  assert.deepEqual(
    (await instances(second)).map((i) => [i.id, i.pid]).sort(),
    before.map((i) => [i.id, i.pid]).sort(),
    "the apps were adopted, not restarted",
  );

  // What --keep-apps left running, herd down ends.
  await second.stop();
  const down = await runCli(["down", "--data", first.dataDir]);
  assert.equal(down.code, 0, down.stderr);
  assert.match(down.stdout, /stopped the gateway, 2 app instances/);
  // Gone, and reaped (by init: herd up, their parent, has exited).
  await waitFor(
    "the gateway and the apps to be gone",
    () => [successor, ...before.map((i) => i.pid!)].every((pid) => !alive(pid)),
    5000,
  );
});

test("an app instance dies while the control plane is away: the gateway ejects it; failures stop there", async () => {
  // Failures are judged by when their request was sent: one sent before the kill may be answered later.
  const failedSentAt: number[] = [];
  const postFailedSentAt: number[] = [];
  const { herd, traffic } = await helloUnderTraffic([], (sentAt, _ms, outcome) => {
    if (outcome !== undefined) failedSentAt.push(sentAt);
  });
  const [victim, survivor] = await instances(herd);
  // POSTs with a body too: the gateway retries a refused GET on another instance, never such a POST,
  // so these show what fails until the ejection (each gateway process ejects after 3 refusals in a row).
  const posts = steadyTraffic(herd.gatewayUrl, "hello.localhost", {
    rate: 50,
    connections: 2,
    maxSeconds: 60,
    method: "POST",
    onAnswer: (sentAt, _ms, outcome) => {
      if (outcome !== undefined) postFailedSentAt.push(sentAt);
    },
  });
  loads.push(posts);
  await herd.kill9();
  await sleep(1000);

  const killedAt = traffic.elapsed();
  const killedAtMs = Date.now();
  process.kill(-victim.pid!, "SIGKILL");
  await sleep(6000);
  const counts = await traffic.stop();
  const late = failedSentAt.filter((t) => t > killedAtMs + 1000).map((t) => t - killedAtMs);
  assert.deepEqual(late, [], `no request sent later than 1 s after the kill failed (${summary(counts)})`);
  const postCounts = await posts.stop();
  // A POST is not retried: each gateway worker fails the POSTs it sends to the dead instance until
  // its own third refusal ejects it. A worker that gets its first POST connection late (a client
  // reconnects after a 502) ejects late, so the bound is the count per worker, and none after 4 s.
  assert.deepEqual(
    postFailedSentAt.filter((t) => t > killedAtMs + 4000).map((t) => t - killedAtMs),
    [],
    `no POST sent later than 4 s after the kill failed (${summary(postCounts)})`,
  );
  const workers = availableParallelism(); // herd up's default --gateway-workers
  assert.ok(
    postCounts.failed <= 3 * workers,
    `at most 3 refusals per gateway worker: ${summary(postCounts)}`,
  );
  // The whole seconds after the kill (the last one is cut short by the stop).
  const after = counts.perSecond.slice(Math.ceil(killedAt / 1000) + 1, -1);
  assert.ok(
    after.every((n) => n > RATE / 2),
    `the survivor took the traffic: ${after.join(", ")} a second`,
  );
  const metricsUrl = gatewayRecord(herd.dataDir).metricsUrl;
  assert.ok(metricsUrl);
  const metrics = await (await fetch(metricsUrl)).text();
  assert.match(
    metrics,
    /^herd_gateway_ejected_endpoints\{[^}]*hello[^}]*\} 1$/m,
    "the dead instance is ejected",
  );

  const gateway = gatewayRecord(herd.dataDir).pid;
  const down = await runCli(["down", "--data", herd.dataDir]);
  assert.equal(down.code, 0, down.stderr);
  assert.match(down.stdout, /stopped the gateway, 1 app instance\n/);
  await waitFor(
    "the gateway and the survivor to be gone",
    () => !alive(gateway) && !alive(survivor.pid!),
    5000,
  );
  // Nothing of herd runs: its cgroups are gone too (herd down's driver made them again to stop the survivor).
  assert.deepEqual(emptyHerdCgroups(), [], "herd's cgroups left behind empty");
});
