// Finds flaky tests: runs the tests several times in a row and lists every
// test that did not pass every time (with how often it failed and the first
// failure's message). Exits 1 when there is one.
//
//   npm run test:flake                          # the unit tests, 5 runs
//   node scripts/test-flake.ts --runs 3 src/gateway/aggregate.test.ts
//   node scripts/test-flake.ts --e2e            # the end-to-end tests (long)
//
// This file is also the node:test reporter the runs use (one JSON line per
// finished test), so the outcome of each test is read, not its output parsed.

import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

/** One test's outcome in one run, as the reporter writes it. */
export type Outcome = { file: string; name: string; nesting: number; passed: boolean; error?: string };

type ReporterEvent = { type: string; data: Record<string, unknown> };

/** node:test reporter: one JSON line per finished test (skips and todos count as passed). */
export default async function* outcomeReporter(source: AsyncIterable<ReporterEvent>): AsyncGenerator<string> {
  for await (const e of source) {
    if (e.type !== "test:pass" && e.type !== "test:fail") continue;
    const d = e.data;
    const details = d.details as { error?: { message?: string; cause?: { message?: string } } } | undefined;
    const o: Outcome = {
      file: typeof d.file === "string" ? d.file : "?",
      name: String(d.name),
      nesting: Number(d.nesting ?? 0),
      passed: e.type === "test:pass",
    };
    if (!o.passed) {
      const err = details?.error;
      o.error = String(err?.cause?.message ?? err?.message ?? "failed")
        .split("\n")[0]
        .slice(0, 300);
    }
    yield `${JSON.stringify(o)}\n`;
  }
}

/** A test that failed in some runs: where, how often, and the first failure's message. */
export type Flaky = { file: string; name: string; failed: number; runs: number; error: string };

/**
 * Tests that did not pass in every run, from each run's outcomes. A test
 * missing from a run (its file crashed before reaching it) counts as failed.
 */
export function findFlaky(runs: readonly Outcome[][]): Flaky[] {
  const key = (o: Outcome) => `${o.file}\u0000${o.nesting}\u0000${o.name}`;
  const all = new Map<string, Outcome>();
  for (const run of runs) for (const o of run) if (!all.has(key(o))) all.set(key(o), o);
  const out: Flaky[] = [];
  for (const [k, o] of all) {
    let failed = 0;
    let error = "";
    for (const run of runs) {
      const mine = run.filter((x) => key(x) === k);
      const bad = mine.length === 0 ? { error: "did not run" } : mine.find((x) => !x.passed);
      if (bad) {
        failed++;
        error ||= bad.error ?? "failed";
      }
    }
    if (failed > 0) out.push({ file: o.file, name: o.name, failed, runs: runs.length, error });
  }
  return out.sort((a, b) => b.failed - a.failed || a.file.localeCompare(b.file));
}

function find(root: string, dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === "node_modules" || e.name.startsWith(".")) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...find(root, p));
    else if (e.name.endsWith(".test.ts") && !e.name.endsWith(".case.test.ts")) out.push(relative(root, p));
  }
  return out.sort();
}

function main(): void {
  const root = join(import.meta.dirname, "..");
  const args = process.argv.slice(2);
  let runs = 5;
  const files: string[] = [];
  let e2e = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--runs") runs = Number(args[++i]);
    else if (args[i] === "--e2e") e2e = true;
    else files.push(args[i]);
  }
  if (!Number.isInteger(runs) || runs < 2) {
    console.error("test-flake: --runs takes a whole number of 2 or more");
    process.exit(2);
  }
  if (files.length === 0) {
    if (e2e) files.push(...find(root, join(root, "test")));
    else
      files.push(
        ...find(root, join(root, "src")),
        ...find(root, join(root, "scripts")),
        ...find(root, join(root, "bench")),
        ...find(root, join(root, "console/src")),
      );
  }
  const dir = mkdtempSync(join(tmpdir(), "herd-test-flake-"));
  // As scripts/test.ts: the tests' temp files and CLI config in dirs of this run's own.
  const env = { ...process.env, TMPDIR: join(dir, "tmp"), XDG_CONFIG_HOME: join(dir, "config") };
  mkdirSync(env.TMPDIR);
  chmodSync(env.TMPDIR, 0o1777);
  mkdirSync(env.XDG_CONFIG_HOME);
  const results: Outcome[][] = [];
  try {
    for (let n = 1; n <= runs; n++) {
      const out = join(dir, `run-${n}.jsonl`);
      const started = Date.now();
      spawnSync(
        process.execPath,
        [
          "--test",
          `--test-concurrency=${e2e ? 1 : 2}`,
          "--test-timeout=300000",
          "--test-reporter=dot",
          "--test-reporter-destination=stdout",
          `--test-reporter=${import.meta.filename}`,
          `--test-reporter-destination=${out}`,
          ...files,
        ],
        { cwd: root, env, stdio: ["ignore", "inherit", "inherit"] },
      );
      let text = "";
      try {
        text = readFileSync(out, "utf8");
      } catch {}
      const outcomes = text
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Outcome);
      results.push(outcomes);
      const failed = outcomes.filter((o) => !o.passed).length;
      console.log(
        `\ntest-flake: run ${n}/${runs}: ${outcomes.length} tests, ${failed} failed, ${((Date.now() - started) / 1000).toFixed(0)} s`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const flaky = findFlaky(results);
  if (flaky.length === 0) {
    console.log(`test-flake: every test passed in all ${runs} runs.`);
    return;
  }
  console.error(`\n!!! ${flaky.length} test${flaky.length === 1 ? "" : "s"} did not pass every time:`);
  for (const f of flaky) {
    console.error(`!!!   ${relative(root, f.file)} "${f.name}": failed ${f.failed} of ${f.runs}: ${f.error}`);
  }
  process.exit(1);
}

if (import.meta.main) main();
