import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { levelOf, parseLine } from "./log-parse.ts";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";

describe("parseLine", () => {
  it("reads level and trace id out of JSON lines, by the usual names", () => {
    assert.deepEqual(parseLine(JSON.stringify({ level: "warn", msg: "slow", trace_id: TRACE })), {
      json: true,
      level: "warn",
      traceId: TRACE,
    });
    assert.equal(parseLine(JSON.stringify({ level: 50, msg: "pino" })).level, "error");
    assert.equal(parseLine(JSON.stringify({ severity: "WARNING" })).level, "warn");
    assert.equal(parseLine(JSON.stringify({ lvl: "crit" })).level, "fatal");
    assert.equal(parseLine(JSON.stringify({ level: "WARN+2" })).level, "warn");
    assert.equal(parseLine(JSON.stringify({ log: { level: "debug" } })).level, "debug");
    assert.equal(parseLine(JSON.stringify({ traceId: TRACE.toUpperCase() })).traceId, TRACE);
    assert.equal(parseLine(JSON.stringify({ trace: { id: TRACE } })).traceId, TRACE);
    assert.equal(parseLine(JSON.stringify({ "trace.id": TRACE })).traceId, TRACE);
    assert.equal(
      parseLine(JSON.stringify({ trace_id: "a3ce929d0e0e4736" })).traceId,
      `0000000000000000a3ce929d0e0e4736`,
    );
    assert.equal(parseLine(JSON.stringify({ w3c: `00-${TRACE}-00f067aa0ba902b7-01` })).traceId, TRACE);
  });

  it("leaves out what is not a level or a trace id", () => {
    assert.deepEqual(parseLine(JSON.stringify({ level: "loud", trace_id: "xyz", msg: "hi" })), {
      json: true,
      level: undefined,
      traceId: undefined,
    });
    assert.equal(parseLine(JSON.stringify({ trace_id: "0".repeat(32) })).traceId, undefined);
    assert.equal(parseLine('{"not json').json, false);
    assert.equal(parseLine("[1,2]").json, false);
  });

  it("guesses a plain line's level only from an obvious prefix", () => {
    assert.equal(parseLine("ERROR db down").level, "error");
    assert.equal(parseLine("WARN: disk 91%").level, "warn");
    assert.equal(parseLine("WARNING disk 91%").level, "warn");
    assert.equal(parseLine("[info] listening").level, "info");
    assert.equal(parseLine("2026-01-01T12:00:00.123Z DEBUG tick").level, "debug");
    assert.equal(parseLine("2026-01-01 12:00:00,123 [ERROR] boom").level, "error");
    assert.equal(parseLine("something failed with ERROR").level, undefined);
    assert.equal(parseLine("error handling done").level, undefined);
    assert.equal(parseLine("INFORMATIONAL").level, undefined);
    assert.equal(parseLine("[main] started").level, undefined);
  });

  it("levelOf maps words and pino numbers", () => {
    assert.equal(levelOf(30), "info");
    assert.equal(levelOf("60"), "fatal");
    assert.equal(levelOf("Err"), "error");
    assert.equal(levelOf(1000), undefined);
    assert.equal(levelOf(true), undefined);
  });
});
