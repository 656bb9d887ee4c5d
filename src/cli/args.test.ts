import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseCount, parseScaleArgs, parseVersion, splitCommand, UsageError } from "./args.ts";

describe("splitCommand", () => {
  it("finds the command after global flags and their values", () => {
    assert.deepEqual(splitCommand(["--server", "http://x", "--json", "ps", "--app", "a"]), {
      command: "ps",
      rest: ["--server", "http://x", "--json", "--app", "a"],
    });
  });
  it("has no command for flags only", () => {
    assert.deepEqual(splitCommand(["--help"]), { command: undefined, rest: ["--help"] });
  });
});

describe("parseScaleArgs", () => {
  it("reads several services", () => {
    assert.deepEqual(parseScaleArgs(["web=3", "worker=0"]), { web: 3, worker: 0 });
  });
  const rejects: [string, RegExp][] = [
    ["web=-1", /cannot be negative/],
    ["web=1.5", /whole number/],
    ["web=three", /not a number/],
    ["web=", /not a number/],
    ["web", /expected SERVICE=COUNT/],
    ["web+1", /expected SERVICE=COUNT/],
    ["Web=1", /not a service name/],
    ["web=1001", /at most 1000/],
  ];
  for (const [arg, message] of rejects) {
    it(`rejects ${arg}`, () => {
      assert.throws(
        () => parseScaleArgs([arg]),
        (err: unknown) => err instanceof UsageError && message.test(err.message),
      );
    });
  }
  it("rejects nothing to scale and duplicates", () => {
    assert.throws(() => parseScaleArgs([]), UsageError);
    assert.throws(() => parseScaleArgs(["web=1", "web=2"]), /given twice/);
  });
});

describe("parseVersion and parseCount", () => {
  it("accepts v3 and 3, rejects others", () => {
    assert.equal(parseVersion("v3", "rollback"), 3);
    assert.equal(parseVersion("3", "rollback"), 3);
    assert.throws(() => parseVersion("v0", "rollback"), UsageError);
    assert.throws(() => parseVersion("latest", "rollback"), UsageError);
  });
  it("checks whole numbers and the minimum", () => {
    assert.equal(parseCount("0", "tail", "logs"), 0);
    assert.throws(() => parseCount("0", "limit", "events", 1), />= 1/);
    assert.throws(() => parseCount("-5", "tail", "logs"), UsageError);
    assert.throws(() => parseCount("2.5", "tail", "logs"), UsageError);
  });
});
