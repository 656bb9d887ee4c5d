// scripts/test.ts run for real on a tree of its own: a failing unit test does
// not stop the end-to-end tests; the run names the failing group and exits 1.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
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
  assert.doesNotMatch(r.stderr, /end-to-end tests/, "only the group that failed is named");
});
