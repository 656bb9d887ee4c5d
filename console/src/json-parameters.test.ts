import assert from "node:assert/strict";
import { test } from "node:test";
import { parametersOf } from "./json-parameters.ts";

test("a broker's parameters: empty is none, an object is kept, anything else names the field", () => {
  assert.equal(parametersOf(""), undefined);
  assert.equal(parametersOf("  \n"), undefined);
  assert.deepEqual(parametersOf('{"size": 10, "tier": "gold"}'), { size: 10, tier: "gold" });
  assert.throws(() => parametersOf("{size: 10}"), /^Error: parameters: not JSON/);
  assert.throws(() => parametersOf("[1]"), /parameters: must be a JSON object/);
  assert.throws(() => parametersOf("null"), /parameters: must be a JSON object/);
  assert.throws(() => parametersOf("10"), /parameters: must be a JSON object/);
});
