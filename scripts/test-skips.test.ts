import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { type AllowedSkip, readSkips, type Skip, skipSummary } from "./test-skips.ts";

test("the reporter records every skip and todo of a real run, with its reason, and nothing else", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-skips-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "x.test.ts");
  writeFileSync(
    file,
    [
      'import { test } from "node:test";',
      'test("runs", () => {});',
      'test("declared", { skip: "no widget here" }, () => {});',
      'test("bare", { skip: true }, () => {});',
      'test("at run time", (t) => { t.skip("found no widget"); });',
      'test("outer", async (t) => { await t.test("inner", { skip: "inner reason" }, () => {}); });',
      'test("later", { todo: "not written yet" }, () => {});',
    ].join("\n"),
  );
  const out = join(dir, "skips.jsonl");
  const r = spawnSync(
    process.execPath,
    [
      "--test",
      "--test-reporter=dot",
      "--test-reporter-destination=stdout",
      `--test-reporter=${join(import.meta.dirname, "test-skips.ts")}`,
      `--test-reporter-destination=${out}`,
      file,
    ],
    { encoding: "utf8", env: { ...process.env, NODE_TEST_CONTEXT: undefined } },
  );
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const got = readSkips(out).map((s) => [s.name, s.kind, s.reason]);
  assert.deepEqual(got.sort(), [
    ["at run time", "skip", "found no widget"],
    ["bare", "skip", ""],
    ["declared", "skip", "no widget here"],
    ["inner", "skip", "inner reason"],
    ["later", "todo", "not written yet"],
  ]);
  assert.ok(readSkips(out).every((s) => s.file === file));
});

const skip = (file: string, name: string, reason: string, kind: Skip["kind"] = "skip"): Skip => ({
  file: `/repo/${file}`,
  name,
  reason,
  kind,
});
const allowed: AllowedSkip[] = [{ file: "a.test.ts", reason: /^no IPv4$/, why: "machine" }];

test("as root, a skip fails the run unless the allow list names its file and reason", () => {
  const s = skipSummary(
    [
      skip("a.test.ts", "one", "no IPv4"),
      skip("a.test.ts", "two", "needs root"),
      skip("b.test.ts", "three", "no IPv4"),
      skip("a.test.ts", "four", "no IPv4", "todo"),
    ],
    { root: "/repo", asRoot: true, allowed },
  );
  assert.deepEqual(
    s.failing.map((x) => x.name),
    ["two", "three", "four"],
  );
  assert.match(s.lines[0], /4 tests skipped/);
  assert.match(s.lines[1], /\[allowed\] a\.test\.ts "one": no IPv4/);
  assert.match(s.lines[2], /\[NOT ALLOWED AS ROOT\] a\.test\.ts "two": needs root/);
  assert.match(s.lines.join("\n"), /3 skips above fail the run/);
});

test("without root, skips are listed with their reasons and fail nothing", () => {
  const s = skipSummary([skip("a.test.ts", "two", "needs root"), skip("c.test.ts", "bare", "")], {
    root: "/repo",
    asRoot: false,
    allowed,
  });
  assert.deepEqual(s.failing, []);
  assert.match(s.lines[1], /\[skip\] a\.test\.ts "two": needs root/);
  assert.match(s.lines[2], /"bare": \(no reason given\)/);
  assert.deepEqual(skipSummary([], { root: "/repo", asRoot: true }).lines, ["Skipped: none."]);
});
