import assert from "node:assert/strict";
import { test } from "node:test";
import { parseJsonObject } from "./json-object.ts";

test("a typed JSON object is kept; text that is not JSON, or JSON that is not an object, says which", () => {
  assert.deepEqual(parseJsonObject('{"size": 10, "tier": "gold"}'), { size: 10, tier: "gold" });
  assert.deepEqual(parseJsonObject("{}"), {});
  assert.throws(() => parseJsonObject("{size: 10}"), /^Error: not JSON \(/);
  for (const text of ["[1]", "null", "10", '"x"'])
    assert.throws(() => parseJsonObject(text), /must be a JSON object/, text);
});
