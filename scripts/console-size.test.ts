import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { BUDGET_BYTES, entryScripts, firstLoad } from "./console-size.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-console-size-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function dist(name: string, files: Record<string, string | Buffer>): string {
  const root = join(dir, name);
  mkdirSync(join(root, "assets"), { recursive: true });
  for (const [path, body] of Object.entries(files)) writeFileSync(join(root, path), body);
  return root;
}

test("the entry scripts are index.html's module scripts and modulepreloads, not lazy chunks", () => {
  const html =
    '<script type="module" crossorigin src="/assets/index-a.js"></script>' +
    '<link rel="modulepreload" crossorigin href="/assets/vendor-b.js">' +
    '<link rel="stylesheet" href="/assets/index-c.css">';
  assert.deepEqual(entryScripts(html), ["/assets/index-a.js", "/assets/vendor-b.js"]);
});

test("the first load is the gzip size of the entry scripts; over the budget the check fails", () => {
  const small = dist("small", {
    "index.html": '<script type="module" src="/assets/a.js"></script>',
    "assets/a.js": "x".repeat(100_000),
    "assets/lazy.js": randomBytes(400_000),
  });
  const { gzip, files } = firstLoad(small);
  assert.equal(files.length, 1);
  assert.ok(gzip > 0 && gzip < 1000, `${gzip}`);
  const script = join(import.meta.dirname, "console-size.ts");
  assert.equal(spawnSync(process.execPath, [script, small]).status, 0);
  // Random bytes do not compress: 400 KB of them is over 300 KB gzip.
  const big = dist("big", {
    "index.html": '<script type="module" src="/assets/a.js"></script>',
    "assets/a.js": randomBytes(BUDGET_BYTES + 100_000),
  });
  const r = spawnSync(process.execPath, [script, big], { encoding: "utf8" });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /over budget/);
});
