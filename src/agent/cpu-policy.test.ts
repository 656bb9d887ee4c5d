import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { findBinary } from "../common/debian-packages.ts";
import { batchLauncher, runsAsBatch } from "./cpu-policy.ts";
import { launchArgs } from "./sandbox.ts";

test("only low services run under SCHED_BATCH; without chrt they keep the default policy", () => {
  assert.deepEqual(
    [runsAsBatch("low"), runsAsBatch("normal"), runsAsBatch("critical"), runsAsBatch(undefined)],
    [true, false, false, false],
  );
  const found = (name: string) => `/usr/bin/${name}`;
  assert.equal(batchLauncher("low", found), "/usr/bin/chrt");
  assert.equal(batchLauncher("normal", found), undefined);
  assert.equal(
    batchLauncher("low", () => undefined),
    undefined,
  );
});

test("the launch wrapper starts a low instance's command under chrt --batch, and its children inherit it", (t) => {
  const args = launchArgs("node server.js", ["/cg/cpu/herd/i1/cgroup.procs"], undefined, "/usr/bin/chrt");
  assert.deepEqual(args.slice(4), [
    "/cg/cpu/herd/i1/cgroup.procs",
    "/usr/bin/chrt",
    "--batch",
    "0",
    "/bin/sh",
    "-c",
    "node server.js",
  ]);
  const chrt = findBinary("chrt");
  if (!chrt) return t.skip("chrt (util-linux) is not installed here");
  // For real, without cgroups: the command's child reports its policy (field 41 of /proc/<pid>/stat; 3 = SCHED_BATCH).
  const policyOf = (batch?: string) =>
    execFileSync("/bin/sh", launchArgs("sh -c 'cat /proc/self/stat'", [], undefined, batch), {
      encoding: "utf8",
    })
      .replace(/^.*\) /s, "")
      .split(" ")[41 - 3];
  assert.equal(policyOf(chrt), "3");
  assert.equal(policyOf(), "0");
});
