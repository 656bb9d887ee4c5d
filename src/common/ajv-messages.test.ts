import assert from "node:assert/strict";
import { test } from "node:test";
import { Ajv } from "ajv";
import { ajvField, ajvMessage } from "./ajv-messages.ts";

const SCHEMA = {
  type: "object",
  required: ["services"],
  additionalProperties: false,
  properties: {
    services: {
      type: "object",
      minProperties: 1,
      additionalProperties: { type: "integer", minimum: 0, maximum: 1000 },
    },
    name: { type: "string", minLength: 1, maxLength: 4, pattern: "^[a-z]+$" },
    tags: { type: "array", uniqueItems: true, maxItems: 2 },
    mode: { enum: ["a", "b"] },
    "a/b": { type: ["string", "null"] },
  },
};

function problems(value: unknown): string[] {
  const validate = new Ajv({ allErrors: true }).compile(SCHEMA);
  assert.equal(validate(value), false);
  return (validate.errors ?? []).map((e) => `${ajvField("body", e)}: ${ajvMessage(e)}`);
}

test("Ajv's errors in herd's words, each naming its field", () => {
  assert.deepEqual(problems({ svc: 1 }), ["body.services: is missing", "body.svc: is not a known field"]);
  assert.deepEqual(problems({ services: {} }), ["body.services: must have at least 1 entry"]);
  assert.deepEqual(problems({ services: { web: "three" } }), ["body.services.web: must be a whole number"]);
  assert.deepEqual(problems({ services: { web: -1 } }), ["body.services.web: must be at least 0"]);
  assert.deepEqual(problems({ services: { web: 1001 } }), ["body.services.web: must be at most 1000"]);
  assert.deepEqual(problems({ services: { a: 1 }, name: "" }), [
    "body.name: must not be empty",
    "body.name: must match ^[a-z]+$",
  ]);
  assert.deepEqual(problems({ services: { a: 1 }, name: "abcde" }), [
    "body.name: must be at most 4 characters",
  ]);
  assert.deepEqual(problems({ services: { a: 1 }, tags: [1, 2, 1] }), [
    "body.tags: must have at most 2 items",
    "body.tags: must not repeat an item (items 0 and 2 are the same)",
  ]);
  assert.deepEqual(problems({ services: { a: 1 }, mode: "c" }), ["body.mode: must be one of a, b"]);
  assert.deepEqual(problems({ services: { a: 1 }, "a/b": 3 }), ["body.a/b: must be a string or null"]);
});
