import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Tsdb } from "../tsdb/tsdb.ts";
import { instantQuery, QueryError, rangeQuery, type Value } from "./engine.ts";
import { bucketQuantile } from "./histogram.ts";
import { PromqlError, parsePromql } from "./parser.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");

function withDb(t: { after(fn: () => void): void }): Tsdb {
  const dir = mkdtempSync(join(tmpdir(), "herd-promql-"));
  const db = new Tsdb({ dir, now: () => T0 + 3600_000 });
  t.after(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return db;
}

/** A series sampled every 15 s from T0 with values from `f(i)`. */
function series(labels: Record<string, string>, n: number, f: (i: number) => number) {
  const samples: [number, number][] = [];
  for (let i = 0; i < n; i++) samples.push([T0 + i * 15_000, f(i)]);
  return { labels, samples };
}

const vec = (v: Value) => {
  assert.equal(v.type, "vector");
  return (v as Extract<Value, { type: "vector" }>).samples
    .map((s) => ({ labels: s.labels, value: Math.round(s.value * 1e6) / 1e6 }))
    .sort((a, b) => JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels)));
};

test("parse errors name the position and the problem", () => {
  const cases: [string, RegExp][] = [
    ["sum(rate(x[5m])", /position 16: expected "," or "\)", found end of input/],
    ["rate(x[5q])", /position 8: expected a duration/],
    ['x{job="a"', /position 10: expected "," or "}"/],
    ["x{job=a}", /position 7: expected a quoted string/],
    ["x +", /position 4: unexpected end of input/],
    ['{job=""}', /position 1: a selector needs at least one matcher/],
    ["topk(x)", /topk takes 2 arguments/],
    ['x{a=~"("}', /invalid regular expression/],
    ["x @ foo", /position 5: expected a timestamp, start\(\) or end\(\) after @/],
    ["x @ 1 @ 2", /position 7: @ may be used only once/],
    ["sum(x) @ 100", /position 8: @ must follow a selector or a subquery/],
    ["x[5m:1q]", /position 6: expected a step duration/],
    ["x[5m][1m]", /position 6: a range \[..\] must follow a metric selector/],
    ["x[5m][10m:1m]", /position 6: a subquery needs an instant vector/],
    ["a + on(x) group_left(x) b", /label "x" must not occur in ON and GROUP clause at once/],
    ["a and group_left b", /no grouping allowed for "and" operation/],
    ["", /empty query/],
  ];
  for (const [q, re] of cases) {
    assert.throws(
      () => parsePromql(q),
      (e: unknown) => e instanceof PromqlError && re.test(e.message),
      q,
    );
  }
  assert.deepEqual(parsePromql("1 + 2 * 3 ^ 2 ^ 0.5"), {
    type: "binary",
    op: "+",
    bool: false,
    pos: 2,
    lhs: { type: "number", value: 1 },
    rhs: {
      type: "binary",
      op: "*",
      bool: false,
      pos: 6,
      lhs: { type: "number", value: 2 },
      rhs: {
        type: "binary",
        op: "^",
        bool: false,
        pos: 10,
        lhs: { type: "number", value: 3 },
        rhs: {
          type: "binary",
          op: "^",
          bool: false,
          pos: 14,
          lhs: { type: "number", value: 2 },
          rhs: { type: "number", value: 0.5 },
        },
      },
    },
  });
});

test("rate and increase add counter resets back and extrapolate like Prometheus", (t) => {
  const db = withDb(t);
  // +10 every 15 s, reset to 0 at i = 20 then +10 again.
  db.append([series({ __name__: "req_total", job: "a" }, 41, (i) => (i < 20 ? i * 10 : (i - 20) * 10))]);
  const at = T0 + 40 * 15_000;
  // Window [at-5m, at] (closed, as Prometheus 2.x): 21 samples at i = 20..40, all from the reset on: 200 over the whole window.
  const inc = vec(instantQuery(db, "increase(req_total[5m])", at));
  assert.deepEqual(inc, [{ labels: { job: "a" }, value: 200 }]);
  // A window across the reset: i = 10..30, values 100..190, 0, 10..100: 100 - 100 + 190 (the reset adds the
  // value before it back) = 190 over the 300 s window.
  const atReset = T0 + 30 * 15_000;
  const across = vec(instantQuery(db, "increase(req_total[5m])", atReset));
  const expected = 190;
  assert.deepEqual(across, [{ labels: { job: "a" }, value: expected }]);
  assert.deepEqual(vec(instantQuery(db, "rate(req_total[5m])", atReset)), [
    { labels: { job: "a" }, value: Math.round((190 / 300) * 1e6) / 1e6 },
  ]);
  assert.deepEqual(vec(instantQuery(db, "irate(req_total[1m])", at)), [
    { labels: { job: "a" }, value: 0.666667 },
  ]);
  // irate right after the reset uses the new value as the increase.
  assert.deepEqual(vec(instantQuery(db, "irate(req_total[1m])", T0 + 20 * 15_000)), [
    { labels: { job: "a" }, value: 0 },
  ]);
});

test("histogram_quantile over sum by (le) (rate(x_bucket[5m]))", (t) => {
  const db = withDb(t);
  // Two instances; per 15 s: 5 requests ≤ 0.1 s, 3 in (0.1, 0.5], 2 in (0.5, 1]; none above.
  const cumulative: Record<string, number> = { "0.1": 5, "0.5": 8, "1": 10, "+Inf": 10 };
  const batch = [];
  for (const inst of ["a", "b"]) {
    for (const [le, per] of Object.entries(cumulative)) {
      batch.push(series({ __name__: "lat_bucket", instance: inst, le }, 41, (i) => i * per));
    }
  }
  db.append(batch);
  const at = T0 + 40 * 15_000;
  const q = (phi: number) =>
    vec(instantQuery(db, `histogram_quantile(${phi}, sum by (le) (rate(lat_bucket[5m])))`, at))[0]?.value;
  // Median: rank 5 of 10 → top of the first bucket (0.1); p90: rank 9 → halfway through (0.5, 1].
  assert.equal(q(0.5), 0.1);
  assert.equal(q(0.9), 0.75);
  assert.equal(q(0.65), 0.3);
  assert.equal(q(1), 1);
  // Per instance, grouped by instance and le.
  assert.deepEqual(
    vec(instantQuery(db, "histogram_quantile(0.9, sum by (instance, le) (rate(lat_bucket[5m])))", at)),
    [
      { labels: { instance: "a" }, value: 0.75 },
      { labels: { instance: "b" }, value: 0.75 },
    ],
  );
  assert.ok(Number.isNaN(bucketQuantile(0.5, [{ upper: 1, count: 3 }])), "no +Inf bucket: NaN");
  assert.equal(
    bucketQuantile(0.99, [
      { upper: 1, count: 3 },
      { upper: Infinity, count: 10 },
    ]),
    1,
  );
});

test("aggregations, binary operators, topk, offset and range queries", (t) => {
  const db = withDb(t);
  db.append([
    series({ __name__: "mem", app: "shop", instance: "1" }, 41, () => 100),
    series({ __name__: "mem", app: "shop", instance: "2" }, 41, () => 300),
    series({ __name__: "mem", app: "blog", instance: "3" }, 41, (i) => i),
    series({ __name__: "limit", app: "shop", instance: "1" }, 41, () => 1000),
    series({ __name__: "limit", app: "shop", instance: "2" }, 41, () => 600),
  ]);
  const at = T0 + 40 * 15_000;
  const q = (s: string) => vec(instantQuery(db, s, at));
  assert.deepEqual(q("sum by (app) (mem)"), [
    { labels: { app: "blog" }, value: 40 },
    { labels: { app: "shop" }, value: 400 },
  ]);
  assert.deepEqual(q("count without (instance) (mem)"), [
    { labels: { app: "blog" }, value: 1 },
    { labels: { app: "shop" }, value: 2 },
  ]);
  assert.deepEqual(
    q("avg(mem)"),
    [{ labels: {}, value: 440 / 3 }].map((s) => ({ ...s, value: Math.round(s.value * 1e6) / 1e6 })),
  );
  assert.deepEqual(q("mem / limit"), [
    { labels: { app: "shop", instance: "1" }, value: 0.1 },
    { labels: { app: "shop", instance: "2" }, value: 0.5 },
  ]);
  assert.deepEqual(q('mem{app="shop"} > 200'), [
    { labels: { __name__: "mem", app: "shop", instance: "2" }, value: 300 },
  ]);
  assert.deepEqual(q('mem{app!="blog"} > bool 200'), [
    { labels: { app: "shop", instance: "1" }, value: 0 },
    { labels: { app: "shop", instance: "2" }, value: 1 },
  ]);
  assert.deepEqual(q('2 * mem{instance=~"1|3"} - 1'), [
    { labels: { app: "blog", instance: "3" }, value: 79 },
    { labels: { app: "shop", instance: "1" }, value: 199 },
  ]);
  assert.deepEqual(q("topk(1, mem)"), [
    { labels: { __name__: "mem", app: "shop", instance: "2" }, value: 300 },
  ]);
  assert.deepEqual(q('max_over_time(mem{app="blog"}[1m]) - min_over_time(mem{app="blog"}[1m])'), [
    { labels: { app: "blog", instance: "3" }, value: 4 },
  ]);
  assert.deepEqual(q('mem{app="blog"} offset 1m'), [
    { labels: { __name__: "mem", app: "blog", instance: "3" }, value: 36 },
  ]);
  assert.deepEqual(q("sum(mem) / on(app) sum by (app) (limit)"), []);
  assert.deepEqual(q("sum by (app) (mem) / on(app) sum by (app) (limit)"), [
    { labels: { app: "shop" }, value: 0.25 },
  ]);
  assert.throws(
    () => rangeQuery(db, "sum(mem)", T0, at, 15_000, { maxSamples: 100 }),
    (e: unknown) =>
      e instanceof QueryError && /would load too many samples .*more than 100\)/.test(e.message),
  );
  assert.throws(
    () => instantQuery(db, "rate(mem)", at),
    (e: unknown) => e instanceof QueryError && /range vector/.test(e.message),
  );
  assert.throws(
    () => instantQuery(db, "mem + on(app) mem", at),
    (e: unknown) => e instanceof QueryError && /many-to-many|duplicate/.test(e.message),
  );
  assert.throws(
    () => instantQuery(db, 'label_replace(mem, "x", "$1", "app", "(")', at),
    (e: unknown) =>
      e instanceof QueryError && /label_replace\(\): invalid regular expression/.test(e.message),
  );

  const range = rangeQuery(db, 'sum by (app) (mem{app="blog"})', T0 + 10 * 15_000, T0 + 12 * 15_000, 15_000);
  assert.deepEqual(range, [
    {
      labels: { app: "blog" },
      ts: [T0 + 150_000, T0 + 165_000, T0 + 180_000],
      values: [10, 11, 12],
    },
  ]);
  // A series stops being returned 5 minutes after its last sample (the lookback, [t - 5m, t] as in Prometheus 2.x).
  assert.deepEqual(rangeQuery(db, "mem", at + 4 * 60_000, at + 6 * 60_000, 60_000)[0]?.ts, [
    at + 4 * 60_000,
    at + 5 * 60_000,
  ]);
});

test("range queries give the same answers series by series (fast path) as step by step", (t) => {
  const db = withDb(t);
  const batch = [];
  // Counters with a reset and a gap, gauges with NaN, and histogram buckets of two instances.
  for (const inst of ["a", "b", "c"]) {
    batch.push(
      series({ __name__: "hits_total", inst, app: inst === "c" ? "y" : "x" }, 240, (i) =>
        i < 100 ? i * 3 : (i - 100) * 2,
      ),
    );
    const gauge = series({ __name__: "temp", inst }, 240, (i) =>
      i % 37 === 0 ? Number.NaN : Math.sin(i) * 10,
    );
    gauge.samples = gauge.samples.filter((_, i) => i < 60 || i > 90);
    batch.push(gauge);
    for (const [le, per] of Object.entries({ "0.1": 2, "1": 5, "+Inf": 6 })) {
      batch.push(series({ __name__: "dur_bucket", inst, le }, 240, (i) => i * per * (inst === "b" ? 2 : 1)));
    }
  }
  db.append(batch);
  const queries = [
    "hits_total",
    "rate(hits_total[5m])",
    "irate(hits_total[1m] offset 2m)",
    "increase(hits_total[2m])",
    "delta(temp[3m])",
    "sum by (app) (rate(hits_total[5m]))",
    "avg without (inst) (temp)",
    "max(temp) - 1",
    "min by (inst) (temp)",
    "count(temp > 0)",
    "temp > bool 0",
    "2 * -temp",
    "group by (app) (hits_total)",
    "avg_over_time(temp[5m])",
    "max_over_time(temp[2m])",
    "last_over_time(temp[2m])",
    "count_over_time(temp[1m])",
    "histogram_quantile(0.9, sum by (le) (rate(dur_bucket[5m])))",
    "histogram_quantile(0.5, rate(dur_bucket[5m]))",
    "1 + 2",
  ];
  const sorted = (r: ReturnType<typeof rangeQuery>) =>
    JSON.stringify(
      r
        .map((s) => ({
          ...s,
          values: s.values.map((v) => (Number.isNaN(v) ? "NaN" : Math.round(v * 1e9) / 1e9)),
        }))
        .sort((a, b) => JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels))),
    );
  const start = T0 + 10 * 60_000;
  const end = T0 + 59 * 60_000;
  for (const q of queries) {
    const fast = rangeQuery(db, q, start, end, 30_000);
    const slow = rangeQuery(db, q, start, end, 30_000, { stepwise: true });
    assert.ok(fast.length > 0, q);
    assert.equal(sorted(fast), sorted(slow), q);
  }
});
