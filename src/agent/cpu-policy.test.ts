import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { findBinary } from "../common/debian-packages.ts";
import { policyLauncher, setRunningPolicy } from "./cpu-policy.ts";
import { runsInRealtime } from "./realtime-guard.ts";
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

test("setRunningPolicy moves every thread of a running process to SCHED_RR and back; a gone one is skipped", async (t) => {
  // A Node child has several threads: each must switch, not only the main one.
  const child = spawn(process.execPath, ["-e", "console.log('up'); setInterval(() => {}, 1000)"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  t.after(() => child.kill("SIGKILL"));
  await once(child.stdout, "data");
  const pid = child.pid as number;
  const policies = () =>
    readdirSync(`/proc/${pid}/task`).map(
      (tid) =>
        readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")
          .replace(/^.*\) /s, "")
          .split(" ")[38],
    );
  try {
    setRunningPolicy([pid], true);
  } catch (err) {
    // Real time needs a budget in the cgroup this test runs in (cgroup v1 with real-time group scheduling).
    if (/EPERM|Operation not permitted/.test((err as Error).message)) return t.skip(String(err));
    throw err;
  }
  assert.ok(policies().length > 1, "a Node process has more than one thread");
  assert.deepEqual(new Set(policies()), new Set(["2"]), "every thread under SCHED_RR");
  assert.ok(runsInRealtime(pid));
  setRunningPolicy([pid, 999_999_999], false);
  assert.deepEqual(new Set(policies()), new Set(["0"]), "every thread back at SCHED_OTHER");
  assert.equal(runsInRealtime(pid), false);
});
