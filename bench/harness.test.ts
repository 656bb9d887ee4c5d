// The shared bench helpers: paired rounds and the verdicts behind `--strict`.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { median, pairedMedian, pairedRounds, wrkPercentile } from "./harness.ts";

test("pairedRounds measures every side each round, the order reversed every other round", async () => {
  const order: string[] = [];
  const rounds = await pairedRounds(["a", "b", "c"], 4, async (side, round) => {
    order.push(`${round}${side}`);
    return round * 10 + side.charCodeAt(0) - 96;
  });
  assert.deepEqual(order, ["1a", "1b", "1c", "2c", "2b", "2a", "3a", "3b", "3c", "4c", "4b", "4a"]);
  assert.deepEqual(
    rounds.map((r) => [...r.entries()].sort()),
    [1, 2, 3, 4].map((n) => [
      ["a", n * 10 + 1],
      ["b", n * 10 + 2],
      ["c", n * 10 + 3],
    ]),
  );
});

test("pairedMedian takes the ratio within each round, then the median; median of an even count is the middle pair's mean", () => {
  // Best against best would say b/a = 4/1; the rounds' own ratios say 2.
  const rounds = [
    new Map([
      ["a", 1],
      ["b", 2],
    ]),
    new Map([
      ["a", 2],
      ["b", 4],
    ]),
    new Map([
      ["a", 4],
      ["b", 9],
    ]),
  ];
  const r = pairedMedian(rounds, (m) => (m.get("b") as number) / (m.get("a") as number));
  assert.deepEqual(r, { median: 2, each: [2, 2, 2.25] });
  assert.equal(median([3, 1, 4, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
});

/** Runs a script importing the harness, recording `verdicts`, with `args`; its exit code and output. */
function runVerdicts(dir: string, calls: string, args: string[]) {
  const file = join(dir, "bench.ts");
  writeFileSync(
    file,
    `import { verdict, verdictSummary } from ${JSON.stringify(join(import.meta.dirname, "harness.ts"))};\n` +
      `${calls}\nprocess.exit(verdictSummary("bench:x"));\n`,
  );
  return spawnSync(process.execPath, [file, ...args], { encoding: "utf8" });
}

test("--strict exits 1 when a target is missed or not counted; without it the run exits 0 and says so", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-bench-verdicts-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const calls = [
    'console.log(verdict("fast", true));',
    'console.log(verdict("slow", false));',
    'console.log(verdict("void", true, "3 requests failed"));',
  ].join("\n");
  const plain = runVerdicts(dir, calls, []);
  assert.equal(plain.status, 0, plain.stderr);
  assert.match(plain.stdout, /^met\nMISSED\nNOT COUNTED \(3 requests failed\)\n/);
  assert.match(plain.stdout, /bench:x: 1 target met, 1 missed, 1 not counted/);
  assert.match(plain.stdout, /missed: slow/);
  assert.match(plain.stdout, /not counted \(3 requests failed\): void/);

  const strict = runVerdicts(dir, calls, ["--strict"]);
  assert.equal(strict.status, 1, strict.stdout);
  assert.match(strict.stderr, /bench:x --strict: 2 targets not met/);

  const allMet = runVerdicts(dir, 'verdict("fast", true);', ["--strict"]);
  assert.equal(allMet.status, 0, allMet.stdout + allMet.stderr);
});

test("wrkPercentile reads wrk's latency lines in any unit, NaN when absent", () => {
  const out =
    "  Latency Distribution\n     50%  635.00us\n     75%    1.20ms\n     90%    2.00s\n     99%    1.00m\n";
  assert.equal(wrkPercentile(out, "50"), 0.635);
  assert.equal(wrkPercentile(out, "75"), 1.2);
  assert.equal(wrkPercentile(out, "90"), 2000);
  assert.equal(wrkPercentile(out, "99"), 60_000);
  assert.ok(Number.isNaN(wrkPercentile(out, "99.9")));
});
