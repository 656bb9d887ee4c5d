import assert from "node:assert/strict";
import { test } from "node:test";
import { PROBE_ATTEMPTS_KEPT } from "../model/protocol.ts";
import { PASSED_RECENTLY_MS, ProbeAttempts } from "./probe-attempts.ts";

const refused = { ok: false, message: "GET /health on port 20001: connect ECONNREFUSED 127.0.0.1:20001" };
const answered500 = { ok: false, status: 500, message: "GET /health answered 500", body: "db not ready" };

test("identical failures in a row are one record with a count; a different outcome starts the next", () => {
  const p = new ProbeAttempts();
  const t0 = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(p.record(refused, t0).fresh, true);
  for (let i = 1; i < 50; i++) assert.equal(p.record(refused, t0 + i * 200).fresh, false);
  assert.equal(p.record(answered500, t0 + 10_000).fresh, true);
  p.record(answered500, t0 + 10_200);
  assert.equal(p.record({ ok: true, status: 200 }, t0 + 10_400).fresh, true);
  const records = p.recent(t0 + 10_400);
  assert.deepEqual(
    records?.map((r) => [r.attempt, r.count, r.ok, r.message, r.status, r.body]),
    [
      [1, 50, false, refused.message, undefined, undefined],
      [51, 2, false, "GET /health answered 500", 500, "db not ready"],
      [53, 1, true, "passed", 200, undefined],
    ],
  );
  assert.equal(records?.[0].firstAt, "2026-01-01T00:00:00.000Z");
  assert.equal(records?.[0].lastAt, "2026-01-01T00:00:09.800Z");
});

test("the records are bounded, and a healthy instance sends none once it passed a while ago", () => {
  const p = new ProbeAttempts();
  const t0 = 1_000_000;
  for (let i = 0; i < 20; i++) p.record({ ok: false, message: `failure ${i}` }, t0 + i);
  const kept = p.recent(t0 + 20);
  assert.equal(kept?.length, PROBE_ATTEMPTS_KEPT);
  assert.equal(kept?.at(-1)?.attempt, 20, "the newest are kept, numbered by their check");
  p.record({ ok: true }, t0 + 100);
  p.record({ ok: true }, t0 + 200 + PASSED_RECENTLY_MS);
  assert.ok(p.recent(t0 + 100 + PASSED_RECENTLY_MS), "a fresh pass is still reported");
  assert.equal(p.recent(t0 + 101 + PASSED_RECENTLY_MS), undefined, "then nothing");
  p.record({ ok: false, message: "failure again" }, t0 + 300 + PASSED_RECENTLY_MS);
  assert.equal(
    p.recent(t0 + 1_000_000)?.at(-1)?.message,
    "failure again",
    "a failure is sent until it passes",
  );
  p.clear();
  assert.equal(p.recent(t0), undefined);
  assert.equal(p.record(refused, t0).attempt.attempt, 1, "a new start counts from 1");
});

test("recent() hands out copies: the heartbeat body cannot change the records", () => {
  const p = new ProbeAttempts();
  const { attempt } = p.record(refused, 0);
  attempt.logTail = ["listening soon"];
  const copy = p.recent(1)!;
  copy[0].count = 99;
  copy[0].logTail!.push("x");
  assert.deepEqual(p.recent(1)?.[0].logTail, ["listening soon"]);
  assert.equal(p.recent(1)?.[0].count, 1);
});
