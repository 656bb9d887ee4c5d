import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isRunning, readRecord, recordOf, removeRecord, stopProcess, writeRecord } from "./process-record.ts";

test("a record names its process by pid and start time; a later process with the same pid is not it", () => {
  const me = recordOf(process.pid);
  assert.equal(isRunning(me), true);
  assert.equal(isRunning({ ...me, procStartTime: String(Number(me.procStartTime) + 1) }), false);
  assert.equal(isRunning({ pid: 2 ** 22 + 1, procStartTime: "1" }), false, "no such pid");
});

test("records are written whole and removed only by the process they name", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-record-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "process.json");
  assert.equal(readRecord(file), undefined);
  const me = { ...recordOf(process.pid), port: 8080 };
  writeRecord(file, me);
  assert.deepEqual(readRecord(file), me);
  const successor = { pid: me.pid + 1, procStartTime: "7" };
  writeRecord(file, successor);
  removeRecord(file, me);
  assert.deepEqual(readRecord(file), successor, "a successor's record stays");
  removeRecord(file, successor);
  assert.equal(readRecord(file), undefined);
});

test("stopProcess: SIGTERM first; SIGKILL when it is ignored", async () => {
  const polite = spawn("sleep", ["30"], { stdio: "ignore" });
  await once(polite, "spawn");
  const politeRecord = recordOf(polite.pid!);
  const politeExit = once(polite, "exit");
  await stopProcess(politeRecord, 5_000);
  assert.equal(isRunning(politeRecord), false);
  assert.deepEqual(await politeExit, [null, "SIGTERM"]);

  const stubborn = spawn("sh", ["-c", "trap '' TERM; sleep 30 & wait"], { stdio: "ignore", detached: true });
  await once(stubborn, "spawn");
  await new Promise((r) => setTimeout(r, 100)); // the trap is set
  const stubbornRecord = recordOf(stubborn.pid!);
  const started = Date.now();
  await stopProcess(stubbornRecord, 300);
  assert.equal(isRunning(stubbornRecord), false);
  assert.ok(Date.now() - started >= 300, "it was given its grace first");
});
