// The autoscaler's memory survives kill -9 of the control plane: a service
// scaled out under load keeps its scale-down delay counted from the load it
// saw before the restart (not from the restart), and `herd autoscale status`
// still shows the decisions taken before it.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { AutoscaleStatus } from "../../src/controllers/autoscale.ts";
import type { Service } from "../../src/model/objects.ts";
import { cleanupHerd, type Herd, sleep, startHerd, steadyTraffic, waitFor } from "./harness.ts";

const work = mkdtempSync(join(tmpdir(), "herd-autoscale-restart-"));
const started: Herd[] = [];
after(async () => {
  for (const h of started.reverse()) await cleanupHerd(h);
  rmSync(work, { recursive: true, force: true });
});

const DELAY_S = 60;

function writeApp(): string {
  const dir = join(work, "steady");
  mkdirSync(dir);
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: "steady", private: true, type: "module", scripts: { start: "node server.js" } }),
  );
  writeFileSync(
    join(dir, "server.js"),
    'import { createServer } from "node:http";\ncreateServer((req, res) => res.end("ok")).listen(Number(process.env.PORT));\n',
  );
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      "app: steady",
      "services:",
      "  web:",
      "    command: node server.js",
      "    resources: { cpu: 0.05, memory: 32Mi }",
      "    health: { path: / }",
      "    routes: [{ host: steady.localhost }]",
      `    autoscale: { min: 1, max: 4, target: { rps: 20 }, stableWindow: 6s, panicWindow: 2s, scaleDownDelay: ${DELAY_S}s }`,
      "",
    ].join("\n"),
  );
  return dir;
}

test("after kill -9 the scale-down delay counts from the load seen before, and the decisions are still shown", async () => {
  const first = await startHerd();
  started.push(first);
  const d = await first.cli(["deploy", writeApp()]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const count = async (h: Herd) =>
    (await h.api<{ services: Service[] }>("GET", "/apps/steady")).body.services.find((s) => s.name === "web")!
      .instances;

  const load = steadyTraffic(first.gatewayUrl, "steady.localhost", {
    connections: 6,
    rate: 60,
    maxSeconds: 60,
  });
  try {
    await waitFor("scaled out to 3 or more", async () => (await count(first)) >= 3, 30_000);
    await sleep(3000);
  } finally {
    await load.stop();
  }
  const loadEnded = Date.now();
  const scaledTo = await count(first);
  // Long enough after the load that a memory started afresh at the restart would be told apart.
  await sleep(25_000);
  await first.kill9();
  const second = await startHerd({ dataDir: first.dataDir });
  started.push(second);
  const restarted = Date.now();
  assert.equal(await count(second), scaledTo);

  const killedAt = new Date(restarted).toISOString();
  const before = await waitFor(
    "the status with the decisions from before the restart",
    async () => {
      const r = await second.api<{ items: AutoscaleStatus[] }>("GET", "/apps/steady/autoscale");
      const decisions = r.body.items?.[0]?.decisions ?? [];
      return decisions.some((x) => x.to === scaledTo && x.time < killedAt) ? decisions : undefined;
    },
    15_000,
  );
  assert.equal(before[0].from, 1, JSON.stringify(before));
  const cli = await second.cli(["autoscale", "status", "--app", "steady"]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, new RegExp(`\\d → ${scaledTo}\\s`), cli.stdout);

  const scaledIn = await waitFor(
    "the first scale-in",
    async () => ((await count(second)) < scaledTo ? Date.now() : undefined),
    (DELAY_S + 40) * 1000,
  );
  const afterLoad = (scaledIn - loadEnded) / 1000;
  const afterRestart = (scaledIn - restarted) / 1000;
  console.log(
    `scaled in ${afterLoad.toFixed(1)} s after the load ended, ${afterRestart.toFixed(1)} s after the restart (delay ${DELAY_S} s)`,
  );
  assert.ok(
    afterLoad >= DELAY_S - 1,
    `scaled in ${afterLoad.toFixed(1)} s after the load: the delay was not kept`,
  );
  // A memory started afresh would hold a whole delay after the restart.
  assert.ok(
    afterRestart < DELAY_S - 10,
    `scaled in ${afterRestart.toFixed(1)} s after the restart: the delay restarted with the control plane`,
  );
});
