import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { findBinary } from "../common/debian-packages.ts";
import { policyLauncher, policyOf } from "./cpu-policy.ts";
import { launchArgs } from "./sandbox.ts";

test("low services run under SCHED_BATCH, critical ones with a real-time budget under SCHED_RR; without chrt, the default", () => {
  assert.deepEqual(
    [
      policyOf("low", false),
      policyOf("normal", true),
      policyOf(undefined, true),
      policyOf("critical", false),
    ],
    ["batch", "default", "default", "default"],
  );
  assert.equal(policyOf("critical", true), "round-robin");
  const found = (name: string) => `/usr/bin/${name}`;
  assert.deepEqual(policyLauncher("low", false, found), ["/usr/bin/chrt", "--batch", "0"]);
  assert.deepEqual(policyLauncher("critical", true, found), ["/usr/bin/chrt", "--rr", "1"]);
  assert.deepEqual(policyLauncher("critical", false, found), []);
  assert.deepEqual(policyLauncher("normal", false, found), []);
  assert.deepEqual(
    policyLauncher("low", false, () => undefined),
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
