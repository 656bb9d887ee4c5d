import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Tsdb } from "../tsdb/tsdb.ts";
import { instantQuery, QueryError, rangeQuery, type Value } from "./engine.ts";
import { formatValue } from "./format.ts";
import { parsePromql } from "./parser.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");

function withDb(t: { after(fn: () => void): void }): Tsdb {
  const dir = mkdtempSync(join(tmpdir(), "herd-promql-fn-"));
  const db = new Tsdb({ dir, now: () => T0 + 3600_000 });
  t.after(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return db;
}

/** Sampled every 15 s from T0 with values f(i). */
function series(labels: Record<string, string>, n: number, f: (i: number) => number) {
  const samples: [number, number][] = [];
  for (let i = 0; i < n; i++) samples.push([T0 + i * 15_000, f(i)]);
  return { labels, samples };
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;
const vec = (v: Value) => {
  assert.equal(v.type, "vector");
  return (v as Extract<Value, { type: "vector" }>).samples.map((s) => ({
    labels: s.labels,
    value: round(s.value),
  }));
};
const sorted = (v: Value) =>
  vec(v).sort((a, b) => JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels)));

function fixture(t: { after(fn: () => void): void }): Tsdb {
  const db = withDb(t);
  db.append([
    series({ __name__: "g", room: "a" }, 41, (i) => 2 * i), // a line: slope 2 per 15 s
    series({ __name__: "g", room: "b" }, 41, (i) => (i % 4 === 0 ? 5 : 7)),
    series({ __name__: "c_total", route: "/x", code: "200" }, 41, (i) => (i < 30 ? i * 3 : (i - 30) * 3)),
    series({ __name__: "c_total", route: "/y", code: "500" }, 41, (i) => i),
    series({ __name__: "info", route: "/x", owner: "ann" }, 41, () => 1),
    series({ __name__: "info", route: "/y", owner: "bob" }, 41, () => 1),
  ]);
  return db;
}

const AT = T0 + 40 * 15_000;

test("range functions: deriv, predict_linear, holt_winters, changes, resets, *_over_time", (t) => {
  const db = fixture(t);
  const q = (s: string) => sorted(instantQuery(db, s, AT));
  assert.deepEqual(q('deriv(g{room="a"}[2m])'), [{ labels: { room: "a" }, value: round(2 / 15) }]);
  // The line at AT is 80; 60 s later 80 + 60 × 2/15 = 88.
  assert.deepEqual(q('predict_linear(g{room="a"}[2m], 60)'), [{ labels: { room: "a" }, value: 88 }]);
  // Smoothing a straight line keeps it on the line.
  assert.deepEqual(q('holt_winters(g{room="a"}[2m], 0.5, 0.5)'), [{ labels: { room: "a" }, value: 80 }]);
  // [AT-2m, AT] holds i = 32..40: 5 at 32, 36, 40, 7 between: 4 changes.
  assert.deepEqual(q('changes(g{room="b"}[2m])'), [{ labels: { room: "b" }, value: 4 }]);
  assert.deepEqual(q("resets(c_total[5m])"), [
    { labels: { code: "200", route: "/x" }, value: 1 },
    { labels: { code: "500", route: "/y" }, value: 0 },
  ]);
  assert.deepEqual(q('present_over_time(g{room="a"}[1m])'), [{ labels: { room: "a" }, value: 1 }]);
  assert.deepEqual(q('last_over_time(g{room="a"}[1m])'), [
    { labels: { __name__: "g", room: "a" }, value: 80 },
  ]);
  assert.deepEqual(q('absent_over_time(nothing{job="j",x=~"y"}[1m])'), [{ labels: { job: "j" }, value: 1 }]);
  assert.deepEqual(q("absent_over_time(g[1m])"), []);
  assert.throws(
    () => instantQuery(db, "holt_winters(g[1m], 1, 0.5)", AT),
    (e: unknown) => e instanceof QueryError && /smoothing factor/.test(e.message),
  );
});

test("subqueries and the @ modifier", (t) => {
  const db = fixture(t);
  const q = (s: string, at = AT) => sorted(instantQuery(db, s, at));
  // g{room="a"} at 60 s steps over [AT-5m, AT]: 40, 48, …, 80 (aligned to the minute).
  const sub = instantQuery(db, 'g{room="a"}[5m:1m]', AT);
  assert.equal(sub.type, "matrix");
  const s0 = (sub as Extract<Value, { type: "matrix" }>).series[0];
  assert.deepEqual(s0?.values, [40, 48, 56, 64, 72, 80]);
  assert.deepEqual(
    s0?.ts,
    [0, 1, 2, 3, 4, 5].map((k) => AT - 300_000 + k * 60_000),
  );
  assert.deepEqual(q('max_over_time(rate(c_total{route="/y"}[1m])[5m:30s])'), [
    { labels: { code: "500", route: "/y" }, value: round(1 / 15) },
  ]);
  // Offset 1m: steps at T0+7m, 8m, 9m (i = 28, 32, 36): 56, 64, 72.
  assert.deepEqual(q('avg_over_time(g{room="a"}[2m:1m] offset 1m)'), [{ labels: { room: "a" }, value: 64 }]);
  // @ pins the selector's time whatever the evaluation time.
  const at = (T0 + 10 * 15_000) / 1000;
  assert.deepEqual(q(`g{room="a"} @ ${at}`), [{ labels: { __name__: "g", room: "a" }, value: 20 }]);
  assert.deepEqual(q(`g{room="a"} @ ${at}`, AT + 3600_000), [
    { labels: { __name__: "g", room: "a" }, value: 20 },
  ]);
  assert.deepEqual(q(`rate(c_total{route="/y"}[1m] @ ${at})`), [
    { labels: { code: "500", route: "/y" }, value: round(1 / 15) },
  ]);
  // start() and end() are the range query's first and last steps.
  const r = rangeQuery(db, 'g{room="a"} @ start() - g{room="a"} @ end()', T0 + 150_000, T0 + 300_000, 75_000);
  assert.deepEqual(r, [
    { labels: { room: "a" }, ts: [T0 + 150_000, T0 + 225_000, T0 + 300_000], values: [-20, -20, -20] },
  ]);
  // A subquery's points count against the sample limit.
  assert.throws(
    () => instantQuery(db, "max_over_time(g[10m:1s])", AT, { maxSamples: 500 }),
    (e: unknown) => e instanceof QueryError && /too many samples/.test(e.message),
  );
  // The same through the step-by-step path and the fast path.
  const e = parsePromql("sum(rate(c_total[1m:15s]))");
  assert.deepEqual(
    rangeQuery(db, e, T0 + 300_000, AT, 60_000),
    rangeQuery(db, e, T0 + 300_000, AT, 60_000, { stepwise: true }),
  );
});

test("vector matching with group_left/group_right, set operators, bool, atan2", (t) => {
  const db = fixture(t);
  const q = (s: string) => sorted(instantQuery(db, s, AT));
  assert.deepEqual(q("c_total * on(route) group_left(owner) info"), [
    { labels: { code: "200", owner: "ann", route: "/x" }, value: 30 },
    { labels: { code: "500", owner: "bob", route: "/y" }, value: 40 },
  ]);
  assert.deepEqual(q("info * on(route) group_right(owner) c_total"), [
    { labels: { code: "200", owner: "ann", route: "/x" }, value: 30 },
    { labels: { code: "500", owner: "bob", route: "/y" }, value: 40 },
  ]);
  assert.deepEqual(q('c_total and on(route) info{owner="ann"}'), [
    { labels: { __name__: "c_total", code: "200", route: "/x" }, value: 30 },
  ]);
  assert.deepEqual(q('c_total unless on(route) info{owner="ann"}'), [
    { labels: { __name__: "c_total", code: "500", route: "/y" }, value: 40 },
  ]);
  assert.deepEqual(q("c_total > bool on(route) info"), [
    { labels: { route: "/x" }, value: 1 },
    { labels: { route: "/y" }, value: 1 },
  ]);
  assert.deepEqual(q('g{room="a"} atan2 g{room="a"}'), [
    { labels: { __name__: "g", room: "a" }, value: round(Math.PI / 4) },
  ]);
  assert.equal((instantQuery(db, "-2 ^ 2", AT) as { value: number }).value, -4);
  assert.throws(
    () => instantQuery(db, "c_total * on() info", AT),
    (e: unknown) => e instanceof QueryError && /duplicate series/.test(e.message),
  );
  assert.throws(
    () => instantQuery(db, "info * on() group_left c_total", AT),
    (e: unknown) => e instanceof QueryError && /duplicate series|multiple matches/.test(e.message),
  );
});

test("aggregations and instant functions: count_values, sort, label_join, dates, clamp", (t) => {
  const db = fixture(t);
  const q = (s: string) => vec(instantQuery(db, s, AT));
  assert.deepEqual(sorted(instantQuery(db, 'count_values("v", g)', AT)), [
    { labels: { v: "5" }, value: 1 },
    { labels: { v: "80" }, value: 1 },
  ]);
  assert.deepEqual(
    q("sort_desc(c_total)").map((s) => s.value),
    [40, 30],
  );
  assert.deepEqual(
    q("sort(c_total)").map((s) => s.value),
    [30, 40],
  );
  assert.deepEqual(sorted(instantQuery(db, 'label_join(info, "both", "/", "owner", "route")', AT)), [
    { labels: { __name__: "info", both: "ann//x", owner: "ann", route: "/x" }, value: 1 },
    { labels: { __name__: "info", both: "bob//y", owner: "bob", route: "/y" }, value: 1 },
  ]);
  // AT is 2026-01-01T00:10:00Z, a Thursday.
  assert.deepEqual(q("minute()"), [{ labels: {}, value: 10 }]);
  assert.deepEqual(q("day_of_week()"), [{ labels: {}, value: 4 }]);
  assert.deepEqual(q("days_in_month(vector(1709251200))"), [{ labels: {}, value: 31 }]);
  assert.deepEqual(q("day_of_year(vector(1709251200))"), [{ labels: {}, value: 61 }]);
  assert.deepEqual(q('clamp(g{room="a"}, 0, 50)'), [{ labels: { room: "a" }, value: 50 }]);
  assert.deepEqual(q('clamp(g{room="a"}, 50, 0)'), []);
  assert.deepEqual(q('timestamp(g{room="a"} offset 1m)'), [
    { labels: { room: "a" }, value: (AT - 60_000) / 1000 },
  ]);
  assert.deepEqual(q("group(c_total)"), [{ labels: {}, value: 1 }]);
  // A NaN sorts first for quantile: NaN, 5, 80 (promtool test rules with 2.42 answers 5 too).
  assert.deepEqual(q("quantile(0.5, g or vector(NaN))"), [{ labels: {}, value: 5 }]);
  // Later 2.x's experimental ones.
  assert.deepEqual(
    q('sort_by_label_desc(c_total, "route")').map((s) => s.labels.route),
    ["/y", "/x"],
  );
  assert.deepEqual(
    q('sort_by_label(c_total, "route")').map((s) => s.labels.route),
    ["/x", "/y"],
  );
  // g{room="b"} over [AT-1m, AT] (i = 36..40): 5 7 7 7 5, median 7, deviations 2 0 0 0 2: 0.
  assert.deepEqual(q('mad_over_time(g{room="b"}[1m])'), [{ labels: { room: "b" }, value: 0 }]);
  assert.deepEqual(q('mad_over_time(g{room="a"}[1m])'), [{ labels: { room: "a" }, value: 2 }]);
  assert.deepEqual(q("histogram_stddev(c_total)"), []);
  assert.deepEqual(q("stddev(c_total)"), [{ labels: {}, value: 5 }]);
});

test("values are written as Prometheus writes them (Go's 'f' format, no exponent)", () => {
  assert.equal(formatValue(1e-7), "0.0000001");
  assert.equal(formatValue(-2.5e-7), "-0.00000025");
  assert.equal(formatValue(1.2345e25), "12345000000000000000000000");
  assert.equal(formatValue(0.1), "0.1");
  assert.equal(formatValue(-0), "-0");
  assert.equal(formatValue(0), "0");
  assert.equal(formatValue(Number.NaN), "NaN");
  assert.equal(formatValue(-Infinity), "-Inf");
});

test("edge cases answer as Prometheus 2.42 does (checked with promtool test rules)", (t) => {
  const db = withDb(t);
  const put = (labels: Record<string, string>, v: number) => db.append([{ labels, samples: [[T0, v]] }]);
  put({ __name__: "h_bucket", le: "0.5" }, 10);
  put({ __name__: "h_bucket", le: "1" }, 8); // a count below the one before: carried forward
  put({ __name__: "h_bucket", le: "2" }, 20);
  put({ __name__: "h_bucket", le: "+Inf" }, 20);
  put({ __name__: "k_bucket", le: "+Inf" }, 20);
  put({ __name__: "m_bucket", le: "-1" }, 5);
  put({ __name__: "m_bucket", le: "+Inf" }, 10);
  put({ __name__: "v", i: "a" }, -2.5);
  put({ __name__: "v", i: "b" }, -7);
  const q = (s: string) => sorted(instantQuery(db, s, T0)).map((x) => [x.labels, x.value]);
  assert.deepEqual(q("histogram_quantile(0.5, h_bucket)"), [[{}, 0.5]]);
  assert.deepEqual(q("histogram_quantile(0.99, h_bucket)"), [[{}, 1.98]]);
  assert.deepEqual(q("histogram_quantile(0, h_bucket)"), [[{}, 0]]);
  assert.deepEqual(q("histogram_quantile(0.5, k_bucket)"), [[{}, Number.NaN]]);
  assert.deepEqual(q("histogram_quantile(0.7, m_bucket)"), [[{}, -1]]);
  assert.deepEqual(q("round(v)"), [
    [{ i: "a" }, -2],
    [{ i: "b" }, -7],
  ]);
  assert.deepEqual(q("v % 3"), [
    [{ i: "a" }, -2.5],
    [{ i: "b" }, -1],
  ]);
  assert.deepEqual(q('absent(nope{a="1",a="2"})'), [[{}, 1]]);
  assert.deepEqual(q('label_replace(v, "__name__", "w", "i", "a")'), [
    [{ __name__: "v", i: "b" }, -7],
    [{ __name__: "w", i: "a" }, -2.5],
  ]);
});
