// When a degraded service's routes come back from their fallback: every dependency answers again.

import assert from "node:assert/strict";
import { test } from "node:test";
import { degradeOver, MAX_DEGRADE_MS, RECOVERY_WINDOW_MS, recoveryFrom } from "./degrade.ts";

const since = Date.parse("2026-01-01T00:00:00.000Z");
const d = { service: "web", dependencies: ["shop/pay", "shop/stock"], since: new Date(since).toISOString() };
const edge = (to: string, calls: number, errors: number, from = "shop/web") => ({
  from,
  to,
  calls,
  errors,
  errorRate: calls ? errors / calls : 0,
});

test("switched back only when every dependency's calls succeed again, with enough calls", () => {
  const now = since + 20_000;
  assert.equal(degradeOver(d, [edge("shop/pay", 10, 0)], now), undefined, "stock shows no calls yet");
  assert.equal(degradeOver(d, [edge("shop/pay", 10, 0), edge("shop/stock", 10, 5)], now), undefined);
  assert.equal(degradeOver(d, [edge("shop/pay", 10, 0), edge("shop/stock", 2, 0)], now), undefined);
  // Another caller's calls say nothing about this service's.
  assert.equal(
    degradeOver(d, [edge("shop/pay", 10, 0), edge("shop/stock", 10, 0, "shop/admin")], now),
    undefined,
  );
  assert.equal(
    degradeOver(d, [edge("shop/pay", 10, 0), edge("shop/stock", 9, 0), edge("shop/stock", 1, 0, "web")], now),
    "its calls succeed again: 0 of 10 calls to shop/pay failed (0%); 0 of 10 calls to shop/stock failed (0%)",
  );
});

test("a degrade ends after MAX_DEGRADE_MS whatever the spans say; calls are read from the switch on", () => {
  assert.match(degradeOver(d, [], since + MAX_DEGRADE_MS) ?? "", /30 min after the switch/);
  assert.equal(recoveryFrom(d, since + 3000), since);
  assert.equal(recoveryFrom(d, since + 60_000), since + 60_000 - RECOVERY_WINDOW_MS);
});
