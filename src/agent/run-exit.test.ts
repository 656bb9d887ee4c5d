import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { EXIT_CODE_FILE } from "../model/job.ts";
import { recordedExitCode } from "./run-exit.ts";

test("a run's recorded exit code is read; a link, a FIFO or a long file the run left there gives none, at once", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-run-exit-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, EXIT_CODE_FILE);
  assert.equal(await recordedExitCode(dir), null, "none recorded");
  writeFileSync(file, "42\n");
  assert.equal(await recordedExitCode(dir), 42);
  rmSync(file);
  // A file of root's the run cannot read itself: its content never comes back as a code.
  const secret = join(dir, "root-only");
  writeFileSync(secret, "7\n", { mode: 0o600 });
  symlinkSync(secret, file);
  assert.equal(await recordedExitCode(dir), null);
  rmSync(file);
  symlinkSync("/dev/zero", file);
  assert.equal(await recordedExitCode(dir), null);
  rmSync(file);
  execFileSync("mkfifo", [file]);
  assert.equal(await recordedExitCode(dir), null, "a FIFO with no writer does not hang the agent");
  rmSync(file);
  writeFileSync(file, "1".repeat(10_000_000));
  assert.equal(await recordedExitCode(dir), null);
});
