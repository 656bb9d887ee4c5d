// Runs every test: unit tests beside the code (src/, scripts/, bench/; in parallel), then the
// end-to-end tests in test/e2e (one at a time: each runs a whole platform).
// Usage: node scripts/test.ts [--unit | --e2e] [extra node --test flags]
//
// Temp files: the tests run with TMPDIR set to a directory of this run's own
// (os.tmpdir() in a test, and in every herd process it starts, points there),
// so whatever a test leaves behind is this run's, not another process's. When
// the run ends, anything left in it is listed and the run fails; the
// directory is then removed (unless something is still mounted in it). herd's
// directories made outside TMPDIR (/tmp/herd-*, /var/tmp/herd-*) are compared
// before and after and new ones are listed too (they may belong to another
// process running at the same time, so they are a warning only).
//
// Skips: every skipped or todo test is collected (scripts/test-skips.ts, a second
// reporter) and listed with its reason at the end. Run as root, a skip not on the
// allow list there fails the run: on a root machine every check can run.
//
// Instance cgroups: herd's instance cgroups (v2 /sys/fs/cgroup/herd/*, v1
// /sys/fs/cgroup/<controller>/herd/*) are listed before and after the
// end-to-end tests. A new one still there after a few seconds fails the run
// when it is empty (nothing will ever remove it) or holds a process of this
// run (one whose working directory or mounts lie in this run's TMPDIR); one
// holding only other processes' instances (another run meanwhile) is a warning.
//
// A failing unit test does not stop the end-to-end tests: both run, and the run fails.

import { spawnSync } from "node:child_process";
import {
  chmodSync,
  type Dirent,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, relative } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { readSkips, skipSummary } from "./test-skips.ts";

const root = join(import.meta.dirname, "..");

/** The test files under `dir` (none when there is no such directory). */
function find(dir: string): string[] {
  const out: string[] = [];
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === "node_modules" || e.name.startsWith(".")) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...find(p));
    else if (e.name.endsWith(".test.ts") && !e.name.endsWith(".case.test.ts")) out.push(relative(root, p));
  }
  return out.sort();
}

/** herd's directories and files in the shared temp dirs (`herd-*`), full paths. */
function herdTempEntries(dirs: readonly string[] = ["/tmp", "/var/tmp"]): Set<string> {
  const out = new Set<string>();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) if (n.startsWith("herd-")) out.add(join(dir, n));
  }
  return out;
}

/** Mount points at or under `dir` (from /proc/self/mountinfo; none where there is no such file). */
function mountsUnder(dir: string): string[] {
  let text: string;
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .map((line) => line.split(" ")[4]?.replace(/\\040/g, " ") ?? "")
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/** The herd parents of instance cgroups: v2's one tree, and v1's trees (each a controller's). */
const CGROUP_PARENTS = ["herd", "cpu/herd", "cpuacct/herd", "memory/herd", "pids/herd"].map((p) =>
  join("/sys/fs/cgroup", p),
);

/** herd's instance cgroups on this machine: each name (the instance id) with its directories, one per tree. */
function instanceCgroups(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const parent of CGROUP_PARENTS) {
    let entries: Dirent[];
    try {
      entries = readdirSync(parent, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries)
      if (e.isDirectory()) out.set(e.name, [...(out.get(e.name) ?? []), join(parent, e.name)]);
  }
  return out;
}

/** The processes in a cgroup's directories (all its trees together). */
function cgroupProcesses(dirs: readonly string[]): number[] {
  const pids = new Set<number>();
  for (const d of dirs) {
    let text = "";
    try {
      text = readFileSync(join(d, "cgroup.procs"), "utf8");
    } catch {
      // removed meanwhile
    }
    for (const line of text.split("\n")) if (line) pids.add(Number(line));
  }
  return [...pids];
}

/** Whether a process belongs to this run: its working directory or a mount of its sandbox lies in `runDir`. */
function inRunDir(pid: number, runDir: string): boolean {
  const name = basename(runDir);
  try {
    if (readlinkSync(`/proc/${pid}/cwd`).includes(name)) return true;
    return readFileSync(`/proc/${pid}/mountinfo`, "utf8").includes(name);
  } catch {
    return false;
  }
}

/**
 * The instance cgroups made since `before` that are still there after up to
 * `settleMs` (another process's may be between its mkdir and its first
 * process, or its kill and its rmdir): `leaked` empty or holding a process of
 * this run, `others` holding other processes only.
 */
async function newInstanceCgroups(
  before: ReadonlySet<string>,
  runDir: string,
  settleMs = 5000,
): Promise<{ leaked: string[]; others: string[] }> {
  const deadline = Date.now() + settleMs;
  let fresh = [...instanceCgroups()].filter(([name]) => !before.has(name));
  while (fresh.length > 0 && Date.now() < deadline) {
    await sleep(250);
    fresh = [...instanceCgroups()].filter(([name]) => !before.has(name));
  }
  const leaked: string[] = [];
  const others: string[] = [];
  for (const [name, dirs] of fresh.sort(([a], [b]) => a.localeCompare(b))) {
    const pids = cgroupProcesses(dirs);
    const trees = dirs.map((d) => relative("/sys/fs/cgroup", d)).join(", ");
    if (pids.length === 0) leaked.push(`${name}: empty (${trees})`);
    else if (pids.some((pid) => inRunDir(pid, runDir)))
      leaked.push(`${name}: still running this run's processes ${pids.join(", ")} (${trees})`);
    else others.push(`${name}: processes ${pids.join(", ")} (${trees})`);
  }
  return { leaked, others };
}

const args = process.argv.slice(2);
const only = args.find((a) => a === "--unit" || a === "--e2e");
const extra = args.filter((a) => a !== only);
const unit = [
  ...find(join(root, "src")),
  ...find(join(root, "scripts")),
  ...find(join(root, "bench")),
  ...find(join(root, "console/src")),
];
const e2e = find(join(root, "test"));

const sharedBefore = herdTempEntries();
const runTmp = mkdtempSync(join(tmpdir(), "herd-test-run-"));
// As /tmp is: tests start herd as another user (uid 65534), which must reach its dirs in here.
chmodSync(runTmp, 0o1777);
// The CLI's user config (contexts, tokens) of the tests, never the person's own ~/.config/herd.
const configHome = mkdtempSync(join(tmpdir(), "herd-test-config-"));

// Where the skip reporter writes, one file per group of tests.
const skipsDir = mkdtempSync(join(tmpdir(), "herd-test-skips-"));
const reporter = join(import.meta.dirname, "test-skips.ts");

function run(files: string[], concurrency: number, skipsFile: string): number {
  if (files.length === 0) return 0;
  const r = spawnSync(
    process.execPath,
    [
      "--test",
      `--test-concurrency=${concurrency}`,
      "--test-timeout=300000",
      "--test-reporter=spec",
      "--test-reporter-destination=stdout",
      `--test-reporter=${reporter}`,
      `--test-reporter-destination=${skipsFile}`,
      ...extra,
      ...files,
    ],
    {
      cwd: root,
      stdio: "inherit",
      env: { ...process.env, TMPDIR: runTmp, XDG_CONFIG_HOME: configHome },
    },
  );
  return r.status ?? 1;
}

let status = 0;
const failed: string[] = [];
if (only !== "--e2e" && run(unit, 2, join(skipsDir, "unit.jsonl")) !== 0) failed.push("unit tests");
// Whatever the unit tests did, the end-to-end tests run too.
let cgroupsLeft: { leaked: string[]; others: string[] } = { leaked: [], others: [] };
if (only !== "--unit") {
  const cgroupsBefore = new Set(instanceCgroups().keys());
  if (run(e2e, 1, join(skipsDir, "e2e.jsonl")) !== 0) failed.push("end-to-end tests");
  cgroupsLeft = await newInstanceCgroups(cgroupsBefore, runTmp);
}
const skips = [...readSkips(join(skipsDir, "unit.jsonl")), ...readSkips(join(skipsDir, "e2e.jsonl"))];
rmSync(configHome, { recursive: true, force: true });
rmSync(skipsDir, { recursive: true, force: true });
if (failed.length > 0) {
  console.error(`\n!!! Failed: ${failed.join(" and ")} (the failures are listed above).`);
  status = 1;
}

const summary = skipSummary(skips, { root, asRoot: process.getuid?.() === 0 });
console.error(`\n${summary.lines.join("\n")}`);
if (summary.failing.length > 0) status ||= 1;

const left = readdirSync(runTmp).sort();
if (left.length > 0) {
  console.error(
    `\n!!! The tests left ${left.length} temp entr${left.length === 1 ? "y" : "ies"} behind (in ${runTmp}):`,
  );
  for (const n of left) console.error(`!!!   ${n}`);
  console.error("!!! Each test must remove what it creates, also when it fails (t.after / finally).");
  status ||= 1;
}
if (cgroupsLeft.leaked.length > 0) {
  const n = cgroupsLeft.leaked.length;
  console.error(`\n!!! The end-to-end tests left ${n} instance cgroup${n === 1 ? "" : "s"} behind:`);
  for (const c of cgroupsLeft.leaked) console.error(`!!!   ${c}`);
  console.error(
    "!!! An instance's cgroup goes with the instance: herd removes it when it stops one, the test's cleanup " +
      "(cleanupHerd, killRecordedInstances) when herd was killed.",
  );
  status ||= 1;
}
if (cgroupsLeft.others.length > 0) {
  console.error("\n!!! New instance cgroups of other processes (another run's, running meanwhile):");
  for (const c of cgroupsLeft.others) console.error(`!!!   ${c}`);
}
const mounted = mountsUnder(runTmp);
if (mounted.length > 0) {
  console.error(`!!! Still mounted, so ${runTmp} is kept: ${mounted.join(", ")}`);
  status ||= 1;
} else {
  rmSync(runTmp, { recursive: true, force: true });
}
const sharedNew = [...herdTempEntries()].filter((p) => !sharedBefore.has(p) && p !== runTmp);
if (sharedNew.length > 0) {
  console.error(
    `\n!!! New herd temp entries outside TMPDIR (this run's, or another process's running meanwhile):`,
  );
  for (const p of sharedNew.sort()) console.error(`!!!   ${p}`);
}
process.exit(status);
