import assert from "node:assert/strict";
import { test } from "node:test";
import { CircuitBreaker } from "./circuit-breaker.ts";
import { OutlierDetector } from "./outlier.ts";
import { RetryBudget } from "./retry-budget.ts";
import { KeyedLimiter, TokenBucket } from "./token-bucket.ts";

test("a token bucket admits its burst, then its rate", () => {
  const b = new TokenBucket(10, 5, 0);
  let admitted = 0;
  for (let i = 0; i < 20; i++) if (b.take(0).ok) admitted++;
  assert.equal(admitted, 5, "the burst");
  const refused = b.take(0);
  assert.equal(refused.ok, false);
  assert.equal(refused.retryAfterMs, 100, "one token every 100 ms");
  // Over 10 s at 1000 attempts/s: about rate × time more.
  admitted = 0;
  for (let t = 1; t <= 10_000; t++) if (b.take(t).ok) admitted++;
  assert.ok(Math.abs(admitted - 100) <= 1, `admitted ${admitted}`);
});

test("a keyed limiter keeps one bucket per key and forgets the least recently used", () => {
  const l = new KeyedLimiter(1, 1, 2);
  assert.equal(l.take("a", 0).ok, true);
  assert.equal(l.take("a", 0).ok, false);
  assert.equal(l.take("b", 0).ok, true, "b has its own bucket");
  l.take("a", 0);
  l.take("c", 0); // evicts b, the least recently used
  assert.equal(l.size, 2);
  assert.equal(l.take("b", 0).ok, true, "a forgotten key starts full");
});

test("a breaker opens after N failures, fails fast, half-opens and closes", () => {
  const b = new CircuitBreaker({ failureThreshold: 3, openMs: 1000, halfOpenRequests: 1 });
  for (let i = 0; i < 3; i++) {
    assert.ok(b.allow(0));
    b.record(false, 0);
  }
  assert.equal(b.state(0), "open");
  assert.equal(b.allow(500), false, "fails fast while open");
  assert.equal(b.retryAfterMs(500), 500);
  assert.equal(b.state(1000), "half_open");
  assert.equal(b.allow(1000), true, "one trial");
  assert.equal(b.allow(1000), false, "only one trial at a time");
  b.record(false, 1001);
  assert.equal(b.state(1001), "open", "a failed trial opens it again");
  assert.equal(b.retryAfterMs(1001), 2000, "for twice as long");
  assert.ok(b.allow(3001));
  b.record(true, 3002);
  assert.equal(b.state(3002), "closed");
  b.record(false, 3003);
  assert.equal(b.state(3003), "closed", "failures count from zero again");
});

test("retries never exceed the budget", () => {
  const budget = new RetryBudget(0.2, 10_000, 0);
  let retried = 0;
  for (let t = 0; t < 10_000; t++) {
    budget.request(t);
    if (budget.tryRetry(t)) retried++; // every request wants a retry
  }
  assert.ok(retried <= 2000, `retried ${retried} of 10000`);
  assert.ok(retried >= 1900, `the budget is used: ${retried}`);
  const quiet = new RetryBudget(0.2, 10_000, 1);
  assert.ok(quiet.tryRetry(0), "a quiet service may still retry a little");
});

test("an outlier is ejected after N failures, for longer each time, never more than the share", () => {
  const o = new OutlierDetector({ consecutiveFailures: 3, baseEjectionMs: 1000, maxEjectedShare: 0.5 });
  for (let i = 0; i < 2; i++) assert.equal(o.record("a", false, 0, 4), false);
  o.record("a", true, 0, 4);
  for (let i = 0; i < 2; i++) o.record("a", false, 0, 4);
  assert.equal(o.isEjected("a", 0), false, "a success resets the count");
  assert.equal(o.record("a", false, 0, 4), true);
  assert.ok(o.isEjected("a", 999));
  assert.equal(o.isEjected("a", 1000), false, "readmitted");
  for (let i = 0; i < 3; i++) o.record("a", false, 1000, 4);
  assert.ok(o.isEjected("a", 2999), "second ejection lasts twice as long");
  for (let i = 0; i < 3; i++) o.record("b", false, 1000, 4);
  for (let i = 0; i < 3; i++) o.record("c", false, 1000, 4);
  assert.equal(o.ejectedCount(1000), 2, "at most half of 4");
  const lone = new OutlierDetector({ consecutiveFailures: 1 });
  assert.equal(lone.record("x", false, 0, 1), false, "a lone endpoint stays");
});
