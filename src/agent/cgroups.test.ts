import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  cpuShares,
  cpuWeight,
  createInstanceCgroup,
  readOomKills,
  setCpuLimit,
  setParentCpuWeight,
} from "./cgroups.ts";

test("OOM kills are read from memory.events (v2) and memory.oom_control (v1); absent when the kernel does not say", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-cgroup-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.equal(readOomKills({ version: "v2", dirs: [dir] }), undefined);
  writeFileSync(join(dir, "memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 1\n");
  assert.equal(readOomKills({ version: "v2", dirs: [dir] }), 1);
  writeFileSync(join(dir, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
  assert.equal(readOomKills({ version: "v1", dirs: [dir] }), 0);
});

test("CPU: the request becomes the weight (v2 cpu.weight, v1 cpu.shares); the ceiling only when asked for", (t) => {
  const root = mkdtempSync(join(tmpdir(), "herd-cgroup-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const v2 = createInstanceCgroup({ version: "v2", parents: [root] }, "a", {
    memoryBytes: 1 << 28,
    cpuCores: 0.1,
  });
  const read = (dir: string, file: string) => readFileSync(join(dir, file), "utf8");
  assert.equal(read(v2.dirs[0], "cpu.weight"), "100");
  assert.equal(read(v2.dirs[0], "cpu.max"), "max 100000");
  assert.equal(read(v2.dirs[0], "memory.max"), String(1 << 28));
  const capped = createInstanceCgroup({ version: "v2", parents: [root] }, "b", {
    memoryBytes: 1 << 28,
    cpuCores: 0.25,
    cpuLimitCores: 0.5,
  });
  assert.equal(read(capped.dirs[0], "cpu.weight"), "250");
  assert.equal(read(capped.dirs[0], "cpu.max"), "50000 100000");
  setCpuLimit(capped, undefined);
  assert.equal(read(capped.dirs[0], "cpu.max"), "max 100000");

  // v1: the files exist in the instance's directory before herd writes them (the kernel makes them).
  const cpuTree = join(root, "v1cpu");
  mkdirSync(join(cpuTree, "c"), { recursive: true });
  for (const f of ["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"])
    writeFileSync(join(cpuTree, "c", f), "");
  const v1 = createInstanceCgroup({ version: "v1", parents: [cpuTree] }, "c", {
    memoryBytes: 1 << 28,
    cpuCores: 2,
  });
  assert.equal(read(v1.dirs[0], "cpu.shares"), "2048");
  assert.equal(read(v1.dirs[0], "cpu.cfs_quota_us"), "-1");
  setCpuLimit(v1, 1.5);
  assert.equal(read(v1.dirs[0], "cpu.cfs_quota_us"), "150000");
});

test("criticality scales the weight: critical four times a normal one's, low half (v2 and v1)", (t) => {
  const root = mkdtempSync(join(tmpdir(), "herd-cgroup-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const read = (dir: string, file: string) => readFileSync(join(dir, file), "utf8");
  const v2 = (id: string, criticality?: "critical" | "low") =>
    read(
      createInstanceCgroup({ version: "v2", parents: [root] }, id, {
        memoryBytes: 1 << 28,
        cpuCores: 0.1,
        ...(criticality ? { criticality } : {}),
      }).dirs[0],
      "cpu.weight",
    );
  assert.deepEqual([v2("n"), v2("c", "critical"), v2("l", "low")], ["100", "400", "50"]);
  const cpuTree = join(root, "v1cpu");
  mkdirSync(join(cpuTree, "c"), { recursive: true });
  writeFileSync(join(cpuTree, "c", "cpu.shares"), "");
  const v1 = createInstanceCgroup({ version: "v1", parents: [cpuTree] }, "c", {
    memoryBytes: 1 << 28,
    cpuCores: 0.1,
    criticality: "critical",
  });
  assert.equal(read(v1.dirs[0], "cpu.shares"), "410");
});

test("weights are proportional to the request within the kernel's bounds", () => {
  assert.equal(cpuWeight(0.1), 100);
  assert.equal(cpuWeight(0.2) / cpuWeight(0.1), 2);
  assert.equal(cpuWeight(0.0001), 1);
  assert.equal(cpuWeight(64), 10_000);
  assert.equal(cpuShares(0.5), 512);
  assert.equal(cpuShares(0.001), 2);
  assert.equal(cpuShares(1000), 262_144);
});

test("the herd parent weighs as many busy processes as the cores it offers (Kubernetes' pods parent)", (t) => {
  const root = mkdtempSync(join(tmpdir(), "herd-cgroup-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  writeFileSync(join(root, "cpu.shares"), "1024");
  setParentCpuWeight({ version: "v1", parents: [root] }, 1.9);
  assert.equal(readFileSync(join(root, "cpu.shares"), "utf8"), "1946");
  setParentCpuWeight({ version: "v2", parents: [root] }, 1.9);
  assert.equal(readFileSync(join(root, "cpu.weight"), "utf8"), "75");
});
