import assert from "node:assert/strict";
import { test } from "node:test";
import {
  canaryInstances,
  judgeAnalysis,
  parseDuration,
  parseThreshold,
  previewHost,
  type ReleaseFigures,
} from "./progressive.ts";

const figures = (release: number, over: Partial<ReleaseFigures> = {}): ReleaseFigures => ({
  release,
  requests: 100,
  errors: 0,
  errorRate: 0,
  p50Ms: 20,
  p99Ms: 40,
  ...over,
});

test("thresholds read as herd.yaml writes them, and say what they take when they do not", () => {
  assert.deepEqual(parseThreshold("< 1%", "errorRate"), { below: 0.01 });
  assert.deepEqual(parseThreshold("<2x baseline", "errorRate"), { belowBaseline: 2 });
  assert.deepEqual(parseThreshold("< 1.2x baseline", "latency"), { belowBaseline: 1.2 });
  assert.deepEqual(parseThreshold("< 250ms", "latency"), { below: 250 });
  assert.deepEqual(parseThreshold("< 0.5s", "latency"), { below: 500 });
  assert.match(parseThreshold("< 250ms", "errorRate") as string, /must be `< 1%` or `< 2x baseline`/);
  assert.match(parseThreshold("< 5%", "latency") as string, /must be `< 250ms`/);
  assert.match(parseThreshold("< 0.9x baseline", "latency") as string, /at least 1/);
  assert.match(parseThreshold("< 120%", "errorRate") as string, /at most 100/);
  assert.equal(parseDuration("90s", 0, 3600_000), 90_000);
  assert.equal(parseDuration("2m", 0, 3600_000), 120_000);
  assert.equal(parseDuration(1.5, 0, 3600_000), 1500);
  assert.equal(parseDuration("500ms", 1000, 3600_000), undefined, "below the minimum");
  assert.equal(parseDuration("soon", 0, 3600_000), undefined);
});

test("an analysis waits below minRequests, fails on any bound, passes otherwise", () => {
  const spec = {
    intervalMs: 10_000,
    minRequests: 50,
    errorRate: { below: 0.01 },
    p99: { belowBaseline: 1.2 },
  };
  assert.equal(judgeAnalysis(spec, figures(2, { requests: 49 }), figures(1)).verdict, "wait");
  const pass = judgeAnalysis(spec, figures(2, { p99Ms: 45 }), figures(1));
  assert.equal(pass.verdict, "pass", pass.summary);
  // 45 < max(1.2 × 40, 40 + 10) = 50
  assert.deepEqual(
    pass.checks.map((c) => [c.figure, c.canary, c.limit, c.passed]),
    [
      ["errorRate", 0, 0.01, true],
      ["p99", 45, 50, true],
    ],
  );
  const errors = judgeAnalysis(spec, figures(2, { errors: 5, errorRate: 0.05 }), figures(1));
  assert.equal(errors.verdict, "fail");
  assert.match(
    errors.summary,
    /^error rate 5% ≥ 1% \(canary v2: 100 requests, 5% errors, p50 20ms, p99 40ms; baseline v1:/,
  );
  const slow = judgeAnalysis(spec, figures(2, { p99Ms: 120 }), figures(1));
  assert.equal(slow.verdict, "fail");
  assert.match(slow.summary, /^p99 120ms ≥ 50ms/);
  // Near zero, a few ms more is within the histogram's resolution.
  assert.equal(judgeAnalysis(spec, figures(2, { p99Ms: 9 }), figures(1, { p99Ms: 2 })).verdict, "pass");
  // No baseline traffic: a relative bound is not checked; an absolute one still is.
  const alone = judgeAnalysis(spec, figures(2, { p99Ms: 900 }), {
    release: 1,
    requests: 0,
    errors: 0,
    errorRate: 0,
  });
  assert.equal(alone.verdict, "pass", alone.summary);
  assert.match(alone.summary, /p99 900ms \(no baseline to compare\)/);
  // Against a clean baseline a relative error bound lets no error through.
  const relative = { ...spec, errorRate: { belowBaseline: 2 } };
  assert.equal(judgeAnalysis(relative, figures(2), figures(1)).verdict, "pass");
  assert.equal(
    judgeAnalysis(relative, figures(2, { errors: 1, errorRate: 0.01 }), figures(1)).verdict,
    "fail",
  );
});

test("a step runs its share of the count, at least one; preview hosts", () => {
  assert.equal(canaryInstances(5, 4), 1);
  assert.equal(canaryInstances(25, 4), 1);
  assert.equal(canaryInstances(50, 4), 2);
  assert.equal(canaryInstances(60, 4), 3);
  assert.equal(canaryInstances(100, 4), 4);
  assert.equal(canaryInstances(10, 0), 0);
  assert.equal(previewHost("shop", "web", 7), "v7.shop.localhost");
  assert.equal(previewHost("shop", "api", 7), "v7-api.shop.localhost");
});
