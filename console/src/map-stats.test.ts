import assert from "node:assert/strict";
import { test } from "node:test";
import type { DependencyMap } from "./api-types.ts";
import { nodeStats } from "./map-stats.ts";

const stats = (calls: number, errors: number, p99: number) => ({
  calls,
  rate: calls / 60,
  errors,
  errorRate: calls ? errors / calls : 0,
  p50: p99 / 2,
  p99,
  totalTime: calls * p99,
});

test("a service without spans of its own takes the calls into it; one with spans keeps its own", () => {
  const map: DependencyMap = {
    from: 0,
    to: 60e6,
    nodes: [
      { service: "gateway", inCycle: false, ...stats(30, 3, 900) },
      { service: "shop/web", inCycle: false, ...stats(0, 0, 0) },
      { service: "shop/db", inCycle: false, ...stats(0, 0, 0) },
    ],
    edges: [
      { from: "gateway", to: "shop/web", inCycle: false, ...stats(20, 2, 800) },
      { from: "gateway", to: "shop/web", inCycle: false, ...stats(10, 0, 500) },
    ],
    cycles: [],
  };
  const [gateway, web, db] = nodeStats(map);
  assert.equal(gateway.calls, 30);
  assert.equal(gateway.seenByCallers, false);
  assert.equal(web.calls, 30);
  assert.equal(web.errors, 2);
  assert.equal(web.p99, 800);
  assert.equal(web.seenByCallers, true);
  assert.equal(db.calls, 0);
  assert.equal(db.seenByCallers, false);
});
