// Resource limits, enforced for real: an app that allocates past its memory
// limit is killed by the kernel and herd says it was killed for memory; a
// CPU-bound app gets no more than its share, measured in its own cgroup's
// accounting over a few seconds. On the cgroup version herd uses on this
// machine; the other version is skipped, saying so.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Instance, Node } from "../../src/model/objects.ts";
import { cleanupHerd, type Herd, sleep, startHerd, waitFor } from "./harness.ts";

const CPU_SHARE = 0.25;
const MEMORY_MIB = 96;

// mem: on /eat, allocates 16 MiB a tick (pages touched) and holds on to it. cpu: on /spin, two threads spin.
const SERVER = `const http = require("node:http");
const { Worker } = require("node:worker_threads");
const held = [];
http.createServer((req, res) => {
  if (req.url === "/eat") setInterval(() => held.push(Buffer.alloc(16 * 1024 * 1024, 1)), 20);
  if (req.url === "/spin") for (let n = 0; n < 2; n++) new Worker("for (;;) {}", { eval: true });
  res.end("ok\\n");
}).listen(Number(process.env.PORT));
`;
const YAML = `app: limits
services:
  mem:
    command: node server.js
    instances: 1
    resources: { cpu: ${CPU_SHARE}, memory: ${MEMORY_MIB}Mi }
    routes: [{ host: mem.limits.localhost }]
  cpu:
    command: node server.js
    instances: 1
    resources: { cpu: ${CPU_SHARE}, memory: ${MEMORY_MIB}Mi }
    routes: [{ host: cpu.limits.localhost }]
`;

let herd: Herd | undefined;
let used: Node["isolation"]["cgroups"] = "none";
const apps = mkdtempSync(join(tmpdir(), "herd-e2e-limits-"));

before(async () => {
  herd = await startHerd();
  const nodes = await herd.api<{ items: Node[] }>("GET", "/nodes");
  used = nodes.body.items[0].isolation.cgroups;
  if (used === "none") return;
  const dir = join(apps, "limits");
  mkdirSync(dir);
  writeFileSync(join(dir, "server.js"), SERVER);
  writeFileSync(join(dir, "herd.yaml"), YAML);
  const r = await herd.cli(["deploy", dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(apps, { recursive: true, force: true });
});

/** Why a cgroup version's checks cannot run here (false when they can). */
const skipUnless = (version: "v1" | "v2") => () =>
  used === version
    ? false
    : used === "none"
      ? `no cgroup ${version} memory and cpu controllers in use on this machine (herd runs without cgroups here: needs root and cgroups)`
      : `no cgroup ${version} memory and cpu controllers in use on this machine (herd uses ${used} here)`;

const running = async (service: string): Promise<Instance> =>
  waitFor(`a running ${service} instance`, async () => {
    const r = await herd!.api<{ items: Instance[] }>("GET", "/apps/limits/instances");
    return r.body.items.find(
      (i) => i.service === service && i.state === "running" && i.desired === "running",
    );
  });

/** The instance's cgroup directories, from the agent's record of it: v2 one, v1 one per controller tree. */
function cgroupDirs(id: string): string[] {
  const record = JSON.parse(readFileSync(join(herd!.dataDir, "agent", "driver", `${id}.json`), "utf8"));
  return record.cgroup.dirs;
}

/** CPU time used (µs) and throttled periods so far, from the cgroup's own accounting. */
function cpuAccounting(version: "v1" | "v2", dirs: string[]): { usageUs: number; throttled: number } {
  const stat = (dir: string) =>
    Object.fromEntries(
      readFileSync(join(dir, "cpu.stat"), "utf8")
        .trim()
        .split("\n")
        .map((l) => l.split(" "))
        .map(([k, v]) => [k, Number(v)]),
    );
  if (version === "v2") {
    const s = stat(dirs[0]);
    return { usageUs: s.usage_usec, throttled: s.nr_throttled };
  }
  const cpu = dirs.find((d) => d.includes("/cpu/") || /\/cpu,cpuacct\//.test(d))!;
  const acct = dirs.find((d) => d.includes("/cpuacct/")) ?? cpu;
  return {
    usageUs: Number(readFileSync(join(acct, "cpuacct.usage"), "utf8")) / 1000,
    throttled: stat(cpu).nr_throttled,
  };
}

for (const version of ["v2", "v1"] as const) {
  test(`cgroup ${version}: an app allocating past its memory limit is killed, and herd says it was for memory`, async (t) => {
    const skip = skipUnless(version)();
    if (skip) return t.skip(skip);
    const victim = await running("mem");
    assert.equal((await herd!.request("mem.limits.localhost", "/eat")).status, 200);
    const event = await waitFor("an event about the kill", async () => {
      const r = await herd!.api<{ items: { instance?: string; reason: string; message: string }[] }>(
        "GET",
        "/events?app=limits&limit=1000",
      );
      return r.body.items.find((e) => e.instance === victim.id && /killed/.test(e.message));
    });
    assert.match(event.message, new RegExp(`killed for memory: over its ${MEMORY_MIB} MiB limit`));
    const gone = (await herd!.api<{ items: Instance[] }>("GET", "/apps/limits/instances")).body.items.find(
      (i) => i.id === victim.id,
    );
    if (gone) assert.match(gone.message, /killed for memory/);
    // It is replaced, and the replacement runs.
    const next = await running("mem");
    assert.notEqual(next.id, victim.id);
  });

  test(`cgroup ${version}: a CPU-bound app is held to its share of ${CPU_SHARE} core`, async (t) => {
    const skip = skipUnless(version)();
    if (skip) return t.skip(skip);
    const spinner = await running("cpu");
    const dirs = cgroupDirs(spinner.id);
    assert.equal((await herd!.request("cpu.limits.localhost", "/spin")).status, 200);
    await sleep(500); // the threads start
    const start = cpuAccounting(version, dirs);
    const startedAt = process.hrtime.bigint();
    await sleep(3000);
    const end = cpuAccounting(version, dirs);
    const wallUs = Number(process.hrtime.bigint() - startedAt) / 1000;
    const share = (end.usageUs - start.usageUs) / wallUs;
    t.diagnostic(
      `cpu: ${share.toFixed(3)} cores over ${(wallUs / 1e6).toFixed(1)} s (limit ${CPU_SHARE}), throttled ${end.throttled - start.throttled} periods`,
    );
    // Two spinning threads would take up to 2 cores: the quota holds them to their share (with a
    // period's slack), and the kernel says it throttled them.
    assert.ok(share <= CPU_SHARE * 1.2, `used ${share.toFixed(3)} cores, past its ${CPU_SHARE}`);
    assert.ok(end.throttled > start.throttled, "the quota never throttled it");
    // And it did spin (so the bound above measured something): most of its share, even on a busy machine.
    assert.ok(share >= CPU_SHARE * 0.3, `used only ${share.toFixed(3)} cores: did it spin?`);
  });
}
