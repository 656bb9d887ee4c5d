import assert from "node:assert/strict";
import { test } from "node:test";
import type { AutoscaleStatus } from "../controllers/autoscale.ts";
import { autoscaleTargetText as formatTarget } from "../model/service-spec.ts";
import { autoscaleText } from "./autoscale.ts";

const now = Date.parse("2026-12-03T12:00:10Z");

test("autoscale status: one row per service, then its decisions newest first with why", () => {
  const web: AutoscaleStatus = {
    service: "web",
    instances: 5,
    min: 1,
    max: 20,
    target: { metric: "rps", value: 10 },
    mode: "panic",
    stable: 13.5,
    panic: 43,
    stableWindowMs: 60_000,
    panicWindowMs: 6_000,
    scaleDownDelayMs: 300_000,
    stableWant: 2,
    panicWant: 5,
    lastRequestAt: "2026-12-03T12:00:09Z",
    decisions: [
      { time: "2026-12-03T11:50:00Z", from: 2, to: 1, panic: false, reason: "the last 60s ask for 1" },
      {
        time: "2026-12-03T12:00:08Z",
        from: 1,
        to: 5,
        panic: true,
        reason: "panic: the last 6s ask for 5",
        problem: "tenant default is over its quota",
        refused: true,
      },
    ],
  };
  const text = autoscaleText([web], now);
  const lines = text.split("\n");
  assert.match(
    lines[0],
    /^SERVICE\s+INSTANCES\s+MIN\.\.MAX\s+TARGET\s+MODE\s+STABLE\s+PANIC\s+LAST REQUEST$/,
  );
  assert.match(
    lines[1],
    /^web\s+5\s+1\.\.20\s+10 rps per instance\s+panic\s+13\.5 rps → 2 \(60s\)\s+43 rps → 5 \(6s\)\s+1s ago$/,
  );
  const first = lines.findIndex((l) => l.startsWith("2026-12-03 12:00:08"));
  const second = lines.findIndex((l) => l.startsWith("2026-12-03 11:50:00"));
  assert.ok(first > 0 && second > first, text);
  assert.match(
    lines[first],
    /1 → 5 \(refused\)\s+panic: the last 6s ask for 5 — tenant default is over its quota/,
  );
});

test("targets read in their unit", () => {
  assert.equal(formatTarget({ metric: "cpu", value: 0.7 }), "70% CPU");
  assert.equal(formatTarget({ metric: "p99", value: 300 }), "300ms p99");
  assert.equal(formatTarget({ metric: "concurrency", value: 10 }), "10 in flight");
  assert.equal(formatTarget({ metric: "query", value: 5, query: "sum(queue)" }), "5 of sum(queue)");
});
