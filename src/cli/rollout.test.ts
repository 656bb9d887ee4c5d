import assert from "node:assert/strict";
import { test } from "node:test";
import { type RolloutView, rolloutText } from "./rollout.ts";

test("rollout status: one row per service, the preview host, then a canary's analyses newest first", () => {
  const canary: RolloutView = {
    service: "web",
    strategy: "canary",
    release: 3,
    state: "updating",
    message: "",
    progressive: {
      strategy: "canary",
      baseline: 2,
      release: 3,
      phase: "steps",
      step: 1,
      weight: 25,
      paused: true,
      steps: [
        { weight: 5, pauseMs: 60_000 },
        { weight: 25, pauseMs: 120_000 },
        { weight: 50, pauseMs: 0 },
      ],
      analyses: [
        {
          at: "2026-12-03T12:00:00.000Z",
          step: 0,
          weight: 5,
          verdict: "pass",
          canary: { release: 3, requests: 40, errors: 0, errorRate: 0 },
          baseline: { release: 2, requests: 800, errors: 0, errorRate: 0 },
          checks: [],
          summary: "passed: error rate 0% < 1%",
        },
        {
          at: "2026-12-03T12:00:10.000Z",
          step: 1,
          weight: 25,
          verdict: "wait",
          canary: { release: 3, requests: 4, errors: 0, errorRate: 0 },
          baseline: { release: 2, requests: 30, errors: 0, errorRate: 0 },
          checks: [],
          summary: "4 of 20 canary requests needed for a verdict",
        },
      ],
    },
  };
  const blue: RolloutView = {
    service: "api",
    strategy: "bluegreen",
    release: 3,
    state: "updating",
    message: "",
    progressive: {
      strategy: "bluegreen",
      baseline: 2,
      release: 3,
      phase: "preview",
      step: 0,
      weight: 0,
      analyses: [],
      steps: [],
      previewHost: "v3-api.shop.localhost",
    },
  };
  const worker: RolloutView = {
    service: "worker",
    strategy: "rolling",
    release: 2,
    state: "running",
    message: "",
  };
  const lines = rolloutText([canary, blue, worker]).split("\n");
  assert.match(lines[0]!, /^SERVICE\s+STRATEGY\s+RELEASE\s+PHASE\s+STEP\s+WEIGHT$/);
  assert.match(lines[1]!, /^web\s+canary\s+v3 beside v2\s+steps \(paused\)\s+2\/3\s+25%$/);
  assert.match(lines[2]!, /^api\s+bluegreen\s+v3 beside v2\s+preview\s+-\s+0%$/);
  assert.match(lines[3]!, /^worker\s+rolling\s+v2\s+running\s*$/);
  const text = lines.join("\n");
  assert.match(
    text,
    /web: analyses, newest first\nTIME\s+STEP\s+VERDICT\s+FIGURES\n2026-12-03 12:00:10\s+2 \(25%\)\s+wait\s+4 of 20/,
  );
  assert.match(text, /api: preview host v3-api\.shop\.localhost/);
});
