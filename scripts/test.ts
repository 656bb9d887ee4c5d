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
// A failing unit test does not stop the end-to-end tests: both run, and the run fails.

import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
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
if (only !== "--unit" && run(e2e, 1, join(skipsDir, "e2e.jsonl")) !== 0) failed.push("end-to-end tests");
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
