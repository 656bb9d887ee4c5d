// Token leasing (rate-lease.ts) as pure logic: a worker's LeaseClient wired to a primary's
// LeaseServer by a queue instead of IPC. The real thing, through processes: cluster-rate-limit.test.ts.

import assert from "node:assert/strict";
import { test } from "node:test";
import { type Clock, ManualClock, systemClock } from "../common/clock.ts";
import type { RateLimitSpec } from "../model/manifest.ts";
import type { TakeResult } from "./policies/token-bucket.ts";
import { LEASE_TIMEOUT_MS, LeaseClient, type LeaseRequest, LeaseServer, leaseSize } from "./rate-lease.ts";
import { RouteLimit } from "./route-limit.ts";

const ROUTE = "default/shop/web route";
const SPEC: RateLimitSpec = { rate: 10, burst: 8, per: "route" };

/**
 * A primary and one worker of two; `answering` false: the primary never answers. Both judge time
 * by `clock`, a ManualClock that moves only when the test says, so no token comes back and no
 * lease lapses because the machine was slow; `realTime`: by the system clock instead.
 */
function setup(spec = SPEC, answering = true, realTime = false) {
  const server = new LeaseServer((s, route) => new RouteLimit(JSON.parse(s), 1, route));
  server.update([new RouteLimit(spec, 1, ROUTE)]);
  // Started after the route's bucket (made at Date.now()), so it is never behind the bucket's time.
  const clock = new ManualClock(Date.now());
  const time: Clock = realTime ? systemClock : clock;
  const asked: LeaseRequest[] = [];
  const client = new LeaseClient(
    2,
    (request) => {
      asked.push(request);
      if (answering) setImmediate(() => client.answer(server.grant(request, time.now())));
    },
    time,
  );
  return { limit: new RouteLimit(spec, 0.5, ROUTE, client), asked, clock };
}

function verdicts(results: (TakeResult | Promise<TakeResult>)[]): Promise<boolean[]> {
  return Promise.all(results.map(async (r) => (await r).ok));
}

test("lease size: a quarter of the burst spread over the workers, at least one", () => {
  assert.equal(leaseSize(8, 2), 1);
  assert.equal(leaseSize(20, 2), 2);
  assert.equal(leaseSize(1_000_000, 2), 125_000);
  assert.equal(leaseSize(1, 8), 1);
});

test("requests waiting on an empty lease share one question, get the tokens in order, and the rest is spent without asking", async () => {
  const { limit, asked, clock } = setup({ rate: 10, burst: 40, per: "route" }); // leases of 5
  const now = clock.now();
  const first = [limit.take("a", now), limit.take("a", now), limit.take("a", now)];
  assert.ok(
    first.every((r) => r instanceof Promise),
    "nothing leased yet: they wait",
  );
  assert.deepEqual(await verdicts(first), [true, true, true]);
  assert.equal(asked.length, 1, "one question for all three");
  const later = [limit.take("a", now), limit.take("a", now)];
  assert.deepEqual(
    later.map((r) => (r instanceof Promise ? "wait" : r.ok)),
    [true, true],
    "the lease's other two tokens, at once",
  );
  assert.equal(asked.length, 1);
  // The limit as clients see it is the gateway's, not the worker's half.
  assert.equal(limit.burst, 40);
  assert.equal(limit.rate, 10);
});

test("more waiting than granted: asked again for the rest; none left at the primary: refused without asking", async () => {
  // A token every 500 ms, and the clock stands still while the ten are judged.
  const { limit, asked, clock } = setup({ rate: 2, burst: 8, per: "route" }); // leases of 1
  const now = clock.now();
  const results = Array.from({ length: 10 }, () => limit.take("a", now));
  const oks = await verdicts(results);
  assert.deepEqual(
    oks,
    [true, true, true, true, true, true, true, true, false, false],
    "the burst, in order",
  );
  // Rounds: 1 token, then up to as many as were waiting (7 of the rest), then none.
  assert.ok(asked.length <= 4, `${asked.length} questions`);
  const count = asked.length;
  const refused = limit.take("a", clock.now());
  assert.ok(!(refused instanceof Promise) && !refused.ok, "refused at once");
  assert.ok(
    refused.retryAfterMs > 0 && refused.retryAfterMs <= 500,
    `retry after ${refused.retryAfterMs} ms`,
  );
  assert.equal(asked.length, count, "the refusal is remembered until a token is due");
  const early = limit.take("a", clock.now() + refused.retryAfterMs - 1);
  assert.ok(!(early instanceof Promise) && !early.ok, "still refused, without asking, just before it is due");
  assert.equal(asked.length, count);
  // Once a token is due, the worker asks again.
  clock.advance(refused.retryAfterMs);
  const again = limit.take("a", clock.now());
  assert.ok(again instanceof Promise);
  assert.equal((await again).ok, true);
});

test("keys have their own leases; unused leased tokens lapse after a second", async () => {
  const { limit, asked, clock } = setup({ rate: 10, burst: 40, per: "ip" });
  const now = clock.now();
  assert.equal((await limit.take("10.0.0.1", now)).ok, true);
  assert.equal((await limit.take("10.0.0.2", now)).ok, true);
  assert.deepEqual(
    asked.map((r) => r.client),
    ["10.0.0.1", "10.0.0.2"],
  );
  const kept = limit.take("10.0.0.1", now + 500);
  assert.ok(!(kept instanceof Promise) && kept.ok, "within the second: from the lease");
  const lapsed = limit.take("10.0.0.1", now + 2_000);
  assert.ok(lapsed instanceof Promise, "after it: asked again");
  await lapsed;
});

test("a primary that does not answer: fail open to the worker's share, at once while it stays silent", async () => {
  // The timeout is a real timer: this one runs on the system clock.
  const { limit, asked } = setup(SPEC, false, true); // local share: rate 5, burst 4
  const start = Date.now();
  const waiting = limit.take("a", start);
  assert.ok(waiting instanceof Promise);
  assert.equal((await waiting).ok, true, "judged by the local bucket");
  assert.ok(Date.now() - start >= LEASE_TIMEOUT_MS - 50, "after the timeout");
  const now = Date.now();
  const local = Array.from({ length: 5 }, () => limit.take("a", now));
  assert.deepEqual(
    local.map((r) => (r instanceof Promise ? "wait" : r.ok)),
    [true, true, true, false, false],
    "the rest of the local burst (4), then refused, without waiting",
  );
  assert.equal(asked.length, 1);
});

test("per consumer: a consumer's lease is its own, apart from its address's; the primary keys the same way", async () => {
  const { limit, asked, clock } = setup({ rate: 10, burst: 40, per: "consumer" }); // leases of 5
  const now = clock.now();
  assert.equal((await limit.take("10.0.0.1", now, "alice")).ok, true);
  assert.equal((await limit.take("10.0.0.1", now, null)).ok, true, "no consumer: keyed on the address");
  assert.equal((await limit.take("10.0.0.1", now, "bob")).ok, true);
  assert.deepEqual(
    asked.map((r) => r.consumer),
    ["alice", null, "bob"],
  );
  for (let i = 0; i < 4; i++) {
    const spent = limit.take("10.0.0.2", now, "alice");
    assert.ok(!(spent instanceof Promise) && spent.ok, "alice's lease, from any address");
  }
  assert.ok(limit.take("10.0.0.2", now, "alice") instanceof Promise, "alice's five are spent");
});
