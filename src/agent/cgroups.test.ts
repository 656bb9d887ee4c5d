import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { readOomKills } from "./cgroups.ts";

test("OOM kills are read from memory.events (v2) and memory.oom_control (v1); absent when the kernel does not say", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-cgroup-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.equal(readOomKills({ version: "v2", dirs: [dir] }), undefined);
  writeFileSync(join(dir, "memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 1\n");
  assert.equal(readOomKills({ version: "v2", dirs: [dir] }), 1);
  writeFileSync(join(dir, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
  assert.equal(readOomKills({ version: "v1", dirs: [dir] }), 0);
});
