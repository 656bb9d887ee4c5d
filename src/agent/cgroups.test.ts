import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  cpuShares,
  cpuWeight,
  createInstanceCgroup,
  HERD_REALTIME_SHARE,
  type InstanceCgroup,
  platformCgroupDir,
  processTree,
  REALTIME_PERIOD_US,
  readOomKills,
  realtimeShare,
  setCpuLimit,
  setCpuWeight,
  setParentCpuWeight,
  weighPlatformProcesses,
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

test("criticality scales the weight: critical four times a normal one's once it serves (its request's while it starts), low half (v2 and v1)", (t) => {
  const root = mkdtempSync(join(tmpdir(), "herd-cgroup-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const read = (dir: string, file: string) => readFileSync(join(dir, file), "utf8");
  const created: InstanceCgroup[] = [];
  const v2 = (id: string, criticality?: "critical" | "low") => {
    const cg = createInstanceCgroup({ version: "v2", parents: [root] }, id, {
      memoryBytes: 1 << 28,
      cpuCores: 0.1,
      ...(criticality ? { criticality } : {}),
    });
    created.push(cg);
    return read(cg.dirs[0], "cpu.weight");
  };
  assert.deepEqual([v2("n"), v2("c", "critical"), v2("l", "low")], ["100", "100", "50"]);
  // Healthy (the driver's started()): each at the weight it keeps.
  for (const cg of created) setCpuWeight(cg, cg.weight ?? 0);
  assert.deepEqual(
    created.map((cg) => read(cg.dirs[0], "cpu.weight")),
    ["100", "400", "50"],
  );
  const cpuTree = join(root, "v1cpu");
  mkdirSync(join(cpuTree, "c"), { recursive: true });
  writeFileSync(join(cpuTree, "c", "cpu.shares"), "");
  const v1 = createInstanceCgroup({ version: "v1", parents: [cpuTree] }, "c", {
    memoryBytes: 1 << 28,
    cpuCores: 0.1,
    criticality: "critical",
  });
  assert.equal(read(v1.dirs[0], "cpu.shares"), "102");
  setCpuWeight(v1, v1.weight ?? 0);
  assert.equal(read(v1.dirs[0], "cpu.shares"), "410");
});

test("weight 0 makes the cgroup idle where the kernel has cpu.idle, any other weight ends it (v2 and v1)", (t) => {
  const root = mkdtempSync(join(tmpdir(), "herd-cgroup-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const read = (dir: string, file: string) => readFileSync(join(dir, file), "utf8");
  const v2 = join(root, "v2");
  const v1 = join(root, "v1");
  const old = join(root, "v1-no-idle");
  for (const dir of [v2, v1, old]) mkdirSync(dir);
  writeFileSync(join(v2, "cpu.idle"), "0");
  writeFileSync(join(v1, "cpu.shares"), "51");
  writeFileSync(join(v1, "cpu.idle"), "0");
  writeFileSync(join(old, "cpu.shares"), "51");
  setCpuWeight({ version: "v2", dirs: [v2] }, 0);
  setCpuWeight({ version: "v1", dirs: [v1, old] }, 0);
  assert.deepEqual([read(v2, "cpu.weight"), read(v2, "cpu.idle")], ["1", "1"]);
  assert.deepEqual([read(v1, "cpu.shares"), read(v1, "cpu.idle")], ["2", "1"]);
  assert.equal(read(old, "cpu.shares"), "2");
  setCpuWeight({ version: "v2", dirs: [v2] }, 0.05);
  setCpuWeight({ version: "v1", dirs: [v1, old] }, 0.05);
  assert.deepEqual([read(v2, "cpu.weight"), read(v2, "cpu.idle")], ["50", "0"]);
  assert.deepEqual([read(v1, "cpu.shares"), read(v1, "cpu.idle")], ["51", "0"]);
  assert.equal(read(old, "cpu.shares"), "51");
  assert.throws(() => read(old, "cpu.idle"), /ENOENT/);
});

test("a critical instance's real-time share of each CPU: its request, 5 % to the herd parent's share, within its ceiling", () => {
  assert.equal(realtimeShare({ cpuCores: 0.1 }, 2), 0.1);
  assert.equal(realtimeShare({ cpuCores: 0.01 }, 2), 0.05);
  assert.equal(realtimeShare({ cpuCores: 1 }, 2), HERD_REALTIME_SHARE);
  // A ceiling of 0.25 core on 2 CPUs: 12.5 % of each, 0.25 core in all.
  assert.equal(realtimeShare({ cpuCores: 0.2, cpuLimitCores: 0.15 }, 2), 0.075);
});

test("v1 with real-time group scheduling: a critical instance gets its budget, a normal one none; the ceiling lowers it", (t) => {
  const root = mkdtempSync(join(tmpdir(), "herd-cgroup-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const read = (dir: string, file: string) => readFileSync(join(dir, file), "utf8");
  const cpuTree = join(root, "v1cpu");
  for (const id of ["crit", "norm"]) {
    mkdirSync(join(cpuTree, id), { recursive: true });
    for (const f of ["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.rt_period_us"])
      writeFileSync(join(cpuTree, id, f), "");
    writeFileSync(join(cpuTree, id, "cpu.rt_runtime_us"), "0");
  }
  const support = { version: "v1" as const, parents: [cpuTree], realtime: { ok: true as const } };
  const limits = { memoryBytes: 1 << 28, cpuCores: 0.1 };
  const crit = createInstanceCgroup(support, "crit", {
    ...limits,
    criticality: "critical",
    cpuLimitCores: 4,
  });
  const share = realtimeShare({ ...limits, cpuLimitCores: 4 }, availableParallelism());
  assert.equal(crit.realtime, share);
  assert.equal(read(crit.dirs[0], "cpu.rt_period_us"), String(REALTIME_PERIOD_US));
  assert.equal(read(crit.dirs[0], "cpu.rt_runtime_us"), String(Math.round(share * REALTIME_PERIOD_US)));
  const norm = createInstanceCgroup(support, "norm", limits);
  assert.equal(norm.realtime, undefined);
  assert.equal(read(norm.dirs[0], "cpu.rt_runtime_us"), "0");
  // Without the parent's room (support.realtime not ok), a critical one has its weight only.
  const without = createInstanceCgroup({ ...support, realtime: { ok: false, reason: "x" } }, "norm", {
    ...limits,
    criticality: "critical",
  });
  assert.equal(without.realtime, undefined);
  // The start boost ends: the ceiling drops to 0.001 core, and so does the budget (1 µs per period at least).
  setCpuLimit(crit, 0.001);
  assert.ok(Number(read(crit.dirs[0], "cpu.rt_runtime_us")) < Math.round(share * REALTIME_PERIOD_US));
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

test("herd's own processes go beside the herd parent, weighing as much as it (v2 cpu.weight, v1 cpu.shares)", (t) => {
  const root = mkdtempSync(join(tmpdir(), "herd-cgroup-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  // cgroup.procs takes one pid per write, as the kernel's does; a plain file keeps the last.
  const v2 = weighPlatformProcesses({ version: "v2", parents: [join(root, "herd")] }, [41, 42], 1.9);
  assert.equal(v2, join(root, "herd-platform"));
  assert.equal(readFileSync(join(v2, "cpu.weight"), "utf8"), "75");
  assert.equal(readFileSync(join(v2, "cgroup.procs"), "utf8"), "42");

  // v1: the cpu tree, found by its cpu.shares; the memory tree is left alone.
  const memory = join(root, "memory", "herd");
  const cpu = join(root, "cpu", "herd");
  for (const d of [memory, cpu]) mkdirSync(d, { recursive: true });
  writeFileSync(join(cpu, "cpu.shares"), "1946");
  const support = { version: "v1" as const, parents: [memory, cpu] };
  assert.equal(platformCgroupDir(support), join(root, "cpu", "herd-platform"));
  mkdirSync(join(root, "cpu", "herd-platform"));
  writeFileSync(join(root, "cpu", "herd-platform", "cpu.shares"), "1024");
  weighPlatformProcesses(support, [7], 1.9);
  assert.equal(readFileSync(join(root, "cpu", "herd-platform", "cpu.shares"), "utf8"), "1946");
  assert.equal(platformCgroupDir({ version: "none", reason: "not root", parents: [] }), undefined);
  assert.throws(
    () => weighPlatformProcesses({ version: "v1", parents: [memory] }, [7], 1.9),
    /no CPU cgroup for herd's processes/,
  );
});

test("a process tree is the process and its descendants, read from /proc's children files", (t) => {
  const proc = mkdtempSync(join(tmpdir(), "herd-proc-"));
  t.after(() => rmSync(proc, { recursive: true, force: true }));
  const task = (pid: number, tid: number, children: string) => {
    mkdirSync(join(proc, String(pid), "task", String(tid)), { recursive: true });
    writeFileSync(join(proc, String(pid), "task", String(tid), "children"), children);
  };
  task(10, 10, "11 12 ");
  task(10, 13, "");
  task(11, 11, "");
  task(12, 12, "14");
  task(14, 14, "");
  assert.deepEqual(processTree(10, proc), [10, 11, 12, 14]);
  assert.deepEqual(processTree(99, proc), []);
  // The real /proc: this process has at least itself.
  assert.deepEqual(processTree(process.pid).slice(0, 1), [process.pid]);
});
