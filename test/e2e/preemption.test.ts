// Preemption by QoS class, with real processes: a full node (a small memory
// budget), a low guaranteed service and a low burstable one on it; a critical
// deploy that fits only if one of them goes takes the burstable one's place,
// although the guaranteed one is bigger (fewer bytes to free would not pick
// it either way), and the Preempted event names both classes.

import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { NodeCapacity } from "../../src/api/capacity.ts";
import type { Event, Instance } from "../../src/model/objects.ts";
import { cleanupHerd, type Herd, ROOT, startHerd, waitFor } from "./harness.ts";

const MiB = 1024 * 1024;
const work = mkdtempSync(join(tmpdir(), "herd-e2e-preemption-"));
process.env.XDG_CONFIG_HOME = join(work, "config");
let herd: Herd | undefined;
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

/** examples/hello as app `name`, its one service with these herd.yaml lines. */
function app(name: string, lines: string[]): string {
  const dir = join(work, name);
  mkdirSync(dir);
  cpSync(join(ROOT, "examples/hello/server.js"), join(dir, "server.js"));
  cpSync(join(ROOT, "examples/hello/package.json"), join(dir, "package.json"));
  writeFileSync(
    join(dir, "herd.yaml"),
    [`app: ${name}`, "services:", "  web:", "    command: node server.js", "    health: { path: /healthz }"]
      .concat(lines.map((l) => `    ${l}`))
      .join("\n")
      .concat("\n"),
  );
  return dir;
}

test("a critical deploy on a full node preempts a burstable instance before a guaranteed one", async () => {
  herd = await startHerd({ extraArgs: ["--cpu", "2", "--memory", "1Gi"] });
  const h = herd;
  const free = async () => (await h.api<{ nodes: NodeCapacity[] }>("GET", "/capacity")).body.nodes[0].free;
  const freeMiB = Math.floor((await free()).memory / MiB);
  // loose: 128 MiB burstable; tight: guaranteed (CPU ceiling = request, memory limit = request),
  // bigger, leaving 64 MiB free. critical needs 128 MiB: one of the two must go.
  const tightMiB = freeMiB - 128 - 64;
  assert.ok(tightMiB >= 128, `the node offers ${freeMiB} MiB`);
  for (const [name, lines] of [
    ["loose", ["criticality: low", "resources: { cpu: 0.1, memory: 128Mi, memoryLimit: 256Mi }"]],
    ["tight", ["criticality: low", `resources: { cpu: 0.1, cpuLimit: 0.1, memory: ${tightMiB}Mi }`]],
  ] as const) {
    const d = await h.cli(["deploy", "--deadline", "120s"], {
      cwd: app(name, [...lines]),
      timeoutMs: 180_000,
    });
    assert.equal(d.code, 0, `${name}: ${d.stdout}${d.stderr}`);
  }
  assert.ok((await free()).memory < 128 * MiB, "the node is full for a 128 MiB request");
  const instances = async (a: string) =>
    (await h.api<{ items: (Instance & { qos?: string })[] }>("GET", `/apps/${a}/instances`)).body.items;
  const [loose] = await instances("loose");
  const [tight] = await instances("tight");
  assert.equal(loose.qos, "burstable");
  assert.equal(tight.qos, "guaranteed");

  const d = await h.cli(["deploy", "--deadline", "120s"], {
    cwd: app("vital", [
      "criticality: critical",
      "resources: { cpu: 0.1, memory: 128Mi, memoryLimit: 256Mi }",
    ]),
    timeoutMs: 180_000,
  });
  assert.equal(d.code, 0, `vital: ${d.stdout}${d.stderr}`);
  const preempted = await waitFor("a Preempted event", async () => {
    const events = (await h.api<{ items: Event[] }>("GET", "/events?limit=500")).body.items;
    return events.find((e) => e.reason === "Preempted");
  });
  assert.match(
    preempted.message,
    new RegExp(`^${loose.id} \\(burstable, low\\) preempted on .* \\(burstable, critical\\)$`),
  );
  // The guaranteed one kept running; the burstable one is not running.
  const [tightNow] = await instances("tight");
  assert.equal(tightNow.id, tight.id);
  assert.equal(tightNow.state, "running");
  assert.ok(!(await instances("loose")).some((i) => i.id === loose.id && i.state === "running"));
});
