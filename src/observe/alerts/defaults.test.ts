// The built-in rules' PromQL against a real Tsdb holding an hour of gateway
// counters scraped every 15 s: the error-rate and SLO-burn rules pick the bad
// route and leave the good one alone.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ruleExpr } from "../../model/alerts.ts";
import { instantQuery } from "../promql/engine.ts";
import { Tsdb, type WriteSeries } from "../tsdb/tsdb.ts";
import { DEFAULT_RULES } from "./defaults.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const STEP = 15_000;
const END = T0 + 70 * 60_000;

function fired(db: Tsdb, name: string) {
  const rule = DEFAULT_RULES.find((r) => r.name === name);
  assert.ok(rule);
  const v = instantQuery(db, ruleExpr(rule), END);
  assert.equal(v.type, "vector");
  return v.type === "vector" ? v.samples : [];
}

test("built-in rules: error rate, latency burn, crash loop and node loss", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-alert-defaults-"));
  const db = new Tsdb({ dir, now: () => END });
  t.after(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  // Per scrape: route /good gets 10 requests (all fast, all 200); /bad 10 requests, 2 of them 500, 3 slow.
  const series = new Map<string, WriteSeries>();
  const add = (labels: Record<string, string>, ts: number, v: number) => {
    const key = JSON.stringify(labels);
    let s = series.get(key);
    if (!s) {
      s = { labels, samples: [] };
      series.set(key, s);
    }
    s.samples.push([ts, v]);
  };
  const base = (route: string) => ({ tenant: "default", app: "shop", route, job: "gw", instance: "gw:1" });
  for (let i = 0, ts = T0; ts <= END; i++, ts += STEP) {
    const n = i * 10;
    add(
      { __name__: "herd_gateway_requests_total", ...base("/good"), code: "200", outcome: "upstream" },
      ts,
      n,
    );
    add(
      { __name__: "herd_gateway_requests_total", ...base("/bad"), code: "200", outcome: "upstream" },
      ts,
      i * 8,
    );
    add(
      { __name__: "herd_gateway_requests_total", ...base("/bad"), code: "500", outcome: "upstream" },
      ts,
      i * 2,
    );
    for (const [route, slow] of [
      ["/good", 0],
      ["/bad", 3],
    ] as const) {
      add(
        { __name__: "herd_gateway_request_duration_seconds_bucket", ...base(route), le: "0.5" },
        ts,
        i * (10 - slow),
      );
      add({ __name__: "herd_gateway_request_duration_seconds_bucket", ...base(route), le: "+Inf" }, ts, n);
      add({ __name__: "herd_gateway_request_duration_seconds_count", ...base(route) }, ts, n);
    }
    add(
      { __name__: "herd_service_crashes", tenant: "default", app: "shop", service: "web", job: "herd-api" },
      ts,
      5,
    );
    add(
      {
        __name__: "herd_service_crashes",
        tenant: "default",
        app: "shop",
        service: "worker",
        job: "herd-api",
      },
      ts,
      0,
    );
    add({ __name__: "herd_node_up", node: "n1", job: "herd-api" }, ts, 1);
    add({ __name__: "herd_node_up", node: "n2", job: "herd-api" }, ts, 0);
  }
  db.append([...series.values()]);

  const errors = fired(db, "route-error-rate");
  assert.deepEqual(
    errors.map((s) => [s.labels.route, Number(s.value.toFixed(3))]),
    [["/bad", 0.2]],
  );
  const burn = fired(db, "latency-slo-burn");
  assert.deepEqual(
    burn.map((s) => [s.labels, Number(s.value.toFixed(3))]),
    [[{ tenant: "default", app: "shop", route: "/bad" }, 0.3]],
  );
  assert.deepEqual(
    fired(db, "instance-crash-loop").map((s) => s.labels.service),
    ["web"],
  );
  assert.deepEqual(
    fired(db, "node-lost").map((s) => s.labels.node),
    ["n2"],
  );
});
