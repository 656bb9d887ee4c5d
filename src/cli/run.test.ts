// `herd run`'s command line and exit code: words quoted for the shell, one
// argument taken as written; the run's end as herd's exit code.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Run } from "../model/job.ts";
import { commandLine, exitCodeOf, INTERRUPTED_EXIT, TIMED_OUT_EXIT, tailPrinted } from "./run.ts";

test("one argument is a command line as written; several are quoted words", () => {
  assert.equal(commandLine(["node migrate.js && echo ok"]), "node migrate.js && echo ok");
  assert.equal(
    commandLine(["node", "-e", "console.log('hi there')"]),
    `node -e 'console.log('\\''hi there'\\'')'`,
  );
  assert.equal(commandLine(["echo", "a=b", "./x.js"]), "echo a=b ./x.js");
});

test("the run's end becomes herd's exit code", () => {
  const lines: string[] = [];
  const ctx = { stderr: { write: (s: string) => lines.push(s) } } as unknown as Parameters<
    typeof exitCodeOf
  >[0];
  const run = (state: Run["state"], exitCode?: number | null) =>
    ({ id: "run-x", state, exitCode, message: "m" }) as Run;
  assert.equal(exitCodeOf(ctx, run("succeeded", 0)), 0);
  assert.equal(exitCodeOf(ctx, run("failed", 7)), 7);
  assert.equal(exitCodeOf(ctx, run("timed_out", null)), TIMED_OUT_EXIT);
  assert.equal(exitCodeOf(ctx, run("stopped", null)), INTERRUPTED_EXIT);
  assert.equal(exitCodeOf(ctx, run("failed", null)), 1, "no code (could not start, node lost): 1");
  assert.equal(exitCodeOf(ctx, run("failed", null), true), INTERRUPTED_EXIT);
  assert.ok(lines.some((l) => l.includes("timed out")));
});

test("the run's output is all printed only when its whole tail is, on each stream", () => {
  // The agent's tail: stdout's last lines, then stderr's.
  const tail = ["out one", "oops"];
  assert.equal(
    tailPrinted(tail, { stdout: [], stderr: ["oops"] }),
    false,
    "stderr came first; stdout's line is on its way",
  );
  assert.equal(tailPrinted(tail, { stdout: ["out one"], stderr: [] }), false);
  assert.equal(tailPrinted(tail, { stdout: ["start", "out one"], stderr: ["oops"] }), true);
  assert.equal(tailPrinted(["a", "b"], { stdout: ["a", "b"], stderr: [] }), true, "stdout only");
  assert.equal(tailPrinted(["a", "b"], { stdout: ["a"], stderr: [] }), false);
  assert.equal(tailPrinted(["x", "x"], { stdout: ["x"], stderr: ["x"] }), true, "a line on both streams");
});
