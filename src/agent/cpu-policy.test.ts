import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { findBinary } from "../common/debian-packages.ts";
import { policyLauncher } from "./cpu-policy.ts";
import { launchArgs } from "./sandbox.ts";

test("low services start under SCHED_BATCH; the others (critical ones too) at the default; without chrt, the default", () => {
  const found = (name: string) => `/usr/bin/${name}`;
  assert.deepEqual(policyLauncher("low", found), ["/usr/bin/chrt", "--batch", "0"]);
  assert.deepEqual(policyLauncher("critical", found), []);
  assert.deepEqual(policyLauncher("normal", found), []);
  assert.deepEqual(policyLauncher(undefined, found), []);
  assert.deepEqual(
    policyLauncher("low", () => undefined),
    [],
  );
});

test("the launch wrapper starts a low instance's command under chrt --batch, and its children inherit it", (t) => {
  const args = launchArgs("node server.js", ["/cg/cpu/herd/i1/cgroup.procs"], undefined, [
    "/usr/bin/chrt",
    "--batch",
    "0",
  ]);
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
  const policyNumber = (policy: string[]) =>
    execFileSync("/bin/sh", launchArgs("sh -c 'cat /proc/self/stat'", [], undefined, policy), {
      encoding: "utf8",
    })
      .replace(/^.*\) /s, "")
      .split(" ")[41 - 3];
  assert.equal(policyNumber([chrt, "--batch", "0"]), "3");
  assert.equal(policyNumber([]), "0");
});
