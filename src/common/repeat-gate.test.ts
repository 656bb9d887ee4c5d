import assert from "node:assert/strict";
import { test } from "node:test";
import { RepeatGate } from "./repeat-gate.ts";

test("a failure is reported when new, again only after the interval, at once after it cleared", () => {
  const gate = new RepeatGate(60_000);
  assert.equal(gate.pass("a", "down", 0), true);
  assert.equal(gate.pass("a", "down", 3_000), false, "the same, 3 s later");
  assert.equal(gate.pass("b", "down", 3_000), true, "another key");
  assert.equal(gate.pass("a", "disk full", 6_000), true, "another message");
  assert.equal(gate.pass("a", "disk full", 65_999), false);
  assert.equal(gate.pass("a", "disk full", 66_000), true, "the interval passed");
  gate.clear("a");
  assert.equal(gate.pass("a", "disk full", 67_000), true, "cleared: a new failure");
});
