import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  appendFileSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
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
import { InstanceLogs } from "./instance-logs.ts";

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
  rotateInstanceLogs(state, 8, (f, err) => assert.fail(`${f}: ${err}`));
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

test("a log an app made huge at once (sparse, by ftruncate) costs the agent only its last bytes", async (t) => {
  const { state, log } = dirs(t);
  writeFileSync(log, "");
  truncateSync(log, 4 * 1024 ** 3);
  appendFileSync(log, "the end\n");
  const started = performance.now();
  rotateInstanceLogs(state, 1024, (f, err) => assert.fail(`${f}: ${err}`));
  assert.ok(performance.now() - started < 1000, "copied more than its last bytes");
  assert.equal(statSync(`${log}.1`).size, 4 * 1024);
  assert.match(readFileSync(`${log}.1`, "utf8"), /the end\n$/);
  // One line of gigabytes (no newline): the tail reads a bounded end of it, quickly.
  rmSync(`${log}.1`);
  writeFileSync(log, "");
  truncateSync(log, 4 * 1024 ** 3);
  const tailStarted = performance.now();
  assert.deepEqual(await tailInstanceLogs(state, 5), []);
  assert.ok(performance.now() - tailStarted < 2000, "the tail read too much");
  // A follower whose file was rotated into a huge copy reads a bounded part of it per read.
  writeFileSync(log, "x\n");
  const follower = new InstanceLogs(state).stdout;
  await follower.skipToEnd();
  writeFileSync(`${log}.1`, "");
  truncateSync(`${log}.1`, 4 * 1024 ** 3);
  writeFileSync(log, "");
  const lines = await follower.read();
  assert.ok(lines.join("").length <= 1024 * 1024, `read ${lines.join("").length} bytes at once`);
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

test("two reads at once (the ship timer's and a removal's last one) take each line once", async (t) => {
  const { state } = dirs(t);
  const logs = new InstanceLogs(state);
  writeFileSync(join(state, "output.log"), "one\ntwo\n");
  const [a, b] = await Promise.all([logs.stdout.read(), logs.stdout.read()]);
  assert.deepEqual([...a, ...b], ["one", "two"]);
  writeFileSync(join(state, "output.log"), "three\n", { flag: "a" });
  assert.deepEqual(await logs.stdout.read(), ["three"]);
});
