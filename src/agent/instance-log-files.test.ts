import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  logSize,
  readLogRange,
  rotateInstanceLogs,
  tailInstanceLogs,
  writeMarker,
} from "./instance-log-files.ts";

/** A state dir and, beside it, a file standing for one of the host's that an instance must not reach. */
function dirs(t: { after(f: () => void): void }) {
  const root = mkdtempSync(join(tmpdir(), "herd-log-files-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const state = join(root, "state");
  mkdirSync(state);
  const host = join(root, "host-file");
  writeFileSync(host, "the host's own\n");
  return { state, host, log: join(state, "output.log") };
}

test("rotation copies and truncates; the tail reads across the copy", async (t) => {
  const { state, log } = dirs(t);
  writeFileSync(log, "one\ntwo\nthree\n");
  rotateInstanceLogs(state, 4, (f, err) => assert.fail(`${f}: ${err}`));
  assert.equal(readFileSync(`${log}.1`, "utf8"), "one\ntwo\nthree\n");
  assert.equal(readFileSync(log, "utf8"), "");
  writeFileSync(log, "four\n", { flag: "a" });
  assert.deepEqual(await tailInstanceLogs(state, 2), ["three", "four"]);
  assert.equal(await logSize(log), 5);
  assert.equal((await readLogRange(log, 1, 3)).toString(), "ou");
});

test("a symlink an instance puts in its state dir is never followed: no host file is read, written or truncated", async (t) => {
  const { state, host, log } = dirs(t);
  const errors: string[] = [];
  // output.log.1 pointing at a host file: the rotation's copy would have overwritten it.
  writeFileSync(log, "x".repeat(100));
  symlinkSync(host, `${log}.1`);
  rotateInstanceLogs(state, 10, (f, err) => errors.push(`${f}: ${err}`));
  assert.equal(readFileSync(host, "utf8"), "the host's own\n");
  assert.ok(lstatSync(`${log}.1`).isFile(), "the link was replaced by the copy");
  assert.equal(errors.length, 0, errors.join("; "));

  // output.log itself a link: not truncated, not read.
  rmSync(log);
  writeFileSync(host, "y".repeat(100));
  symlinkSync(host, log);
  rotateInstanceLogs(state, 10, (f, err) => errors.push(`${f}: ${err}`));
  assert.equal(readFileSync(host, "utf8"), "y".repeat(100), "the host file keeps its content");
  assert.equal(errors.length, 1);
  assert.match(errors[0], /output\.log: .*ELOOP/);
  assert.equal(await logSize(log), 0);
  assert.equal((await readLogRange(log, 0, 10)).length, 0);
  rmSync(`${log}.1`);
  assert.deepEqual(await tailInstanceLogs(state, 5), []);

  // A marker written where a dangling link waits: the link goes, its target is not made.
  const marker = join(state, ".network-ready");
  const target = join(state, "..", "made-by-the-agent");
  symlinkSync(target, marker);
  writeMarker(marker);
  assert.ok(lstatSync(marker).isFile());
  assert.throws(() => lstatSync(target), /ENOENT/);
});

test("a FIFO in place of a log does not hang its reader", async (t) => {
  const { state, log } = dirs(t);
  execFileSync("mkfifo", [log]);
  assert.deepEqual(await tailInstanceLogs(state, 5), []);
  assert.equal((await readLogRange(log, 0, 10)).length, 0);
  const errors: string[] = [];
  rotateInstanceLogs(state, 0, (f, err) => errors.push(`${f}: ${err}`));
  assert.match(errors[0] ?? "", /not a regular file/);
});
