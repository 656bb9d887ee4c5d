import assert from "node:assert/strict";
import { test } from "node:test";
import { findFlaky, type Outcome } from "./test-flake.ts";

const o = (name: string, passed: boolean, error?: string): Outcome => ({
  file: "/r/a.test.ts",
  name,
  nesting: 0,
  passed,
  ...(error ? { error } : {}),
});

test("a test that failed in some runs is flaky, with its count and first error; one that always passed is not", () => {
  const flaky = findFlaky([
    [o("steady", true), o("shaky", true), o("gone", true)],
    [o("steady", true), o("shaky", false, "took 412 ms")],
    [o("steady", true), o("shaky", false, "took 500 ms"), o("gone", true)],
  ]);
  assert.deepEqual(
    flaky.map((f) => [f.name, f.failed, f.runs, f.error]),
    [
      ["shaky", 2, 3, "took 412 ms"],
      ["gone", 1, 3, "did not run"],
    ],
  );
  assert.deepEqual(findFlaky([[o("steady", true)], [o("steady", true)]]), []);
});
