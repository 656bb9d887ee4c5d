// scripts/test.ts run for real on a tree of its own: a failing unit test does
// not stop the end-to-end tests; the run names the failing group and exits 1.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

test("a failing unit test does not stop the end-to-end tests: both run, the run names the failure and fails", (t) => {
  const root = mkdtempSync(join(tmpdir(), "herd-test-runner-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  // scripts/test.ts finds the tests under its own parent directory: a copy of it in `root`.
  mkdirSync(join(root, "scripts"));
  for (const f of ["test.ts", "test-skips.ts"])
    copyFileSync(join(import.meta.dirname, f), join(root, "scripts", f));
  mkdirSync(join(root, "src"));
  mkdirSync(join(root, "test", "e2e"), { recursive: true });
  const marker = join(root, "e2e-ran");
  writeFileSync(
    join(root, "src", "broken.test.ts"),
    'import assert from "node:assert/strict";\nimport { test } from "node:test";\ntest("a unit test that fails", () => assert.equal(1, 2));\n',
  );
  writeFileSync(
    join(root, "test", "e2e", "runs.test.ts"),
    `import { writeFileSync } from "node:fs";\nimport { test } from "node:test";\ntest("an e2e test", () => writeFileSync(${JSON.stringify(marker)}, "yes"));\n`,
  );
  const r = spawnSync(process.execPath, [join(root, "scripts", "test.ts")], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, NODE_TEST_CONTEXT: undefined },
    timeout: 120_000,
  });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.ok(existsSync(marker), `the end-to-end test did not run:\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /a unit test that fails/);
  assert.match(r.stdout, /✔ an e2e test/);
  assert.match(r.stderr, /!!! Failed: unit tests \(the failures are listed above\)/);
  assert.doesNotMatch(r.stderr, /!!! Failed: .*end-to-end tests/, "only the group that failed is named");
});

/** Where the check below makes a cgroup: herd's parent (v2 one tree, v1 the cpu tree), or why it cannot. */
function herdCgroupParent(): { parent: string } | { skip: string } {
  if (process.getuid?.() !== 0) return { skip: "needs root to make a cgroup" };
  const root = "/sys/fs/cgroup";
  if (existsSync(join(root, "cgroup.controllers"))) return { parent: join(root, "herd") };
  if (existsSync(join(root, "cpu", "cgroup.procs"))) return { parent: join(root, "cpu", "herd") };
  return { skip: `no cgroup v2 or v1 cpu tree under ${root}` };
}

const where = herdCgroupParent();
test("an instance cgroup the end-to-end tests leave behind fails the run, named", {
  skip: "skip" in where ? where.skip : false,
}, (t) => {
  assert.ok("parent" in where);
  const root = mkdtempSync(join(tmpdir(), "herd-test-runner-"));
  const madeParent = !existsSync(where.parent);
  const leak = join(where.parent, `runner-test-${process.pid}`);
  t.after(() => {
    rmSync(root, { recursive: true, force: true });
    // A cgroup goes with rmdir (its control files cannot be unlinked), once empty.
    for (const dir of madeParent ? [leak, where.parent] : [leak]) if (existsSync(dir)) rmdirSync(dir);
  });
  mkdirSync(join(root, "scripts"));
  for (const f of ["test.ts", "test-skips.ts"])
    copyFileSync(join(import.meta.dirname, f), join(root, "scripts", f));
  mkdirSync(join(root, "test", "e2e"), { recursive: true });
  // An end-to-end test that makes an instance cgroup, as an agent does, and leaves it.
  writeFileSync(
    join(root, "test", "e2e", "leaks.test.ts"),
    `import { mkdirSync } from "node:fs";\nimport { test } from "node:test";\ntest("leaks a cgroup", () => { mkdirSync(${JSON.stringify(leak)}, { recursive: true }); });\n`,
  );
  const r = spawnSync(process.execPath, [join(root, "scripts", "test.ts"), "--e2e"], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, NODE_TEST_CONTEXT: undefined },
    timeout: 120_000,
  });
  assert.match(r.stdout, /✔ leaks a cgroup/);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /!!! The end-to-end tests left \d+ instance cgroups? behind:/);
  assert.match(r.stderr, new RegExp(`!!! {3}runner-test-${process.pid}: empty \\(`));
});
