import assert from "node:assert/strict";
import { test } from "node:test";
import { HerdError } from "../../common/errors.ts";
import { parseOtlpMetrics } from "./metrics.ts";

const NOW = 1_700_000_000_000;
const T = "1700000000123456789";
const resource = {
  attributes: [
    { key: "service.name", value: { stringValue: "shop/web" } },
    { key: "herd.app", value: { stringValue: "shop" } },
    { key: "herd.instance", value: { stringValue: "web-1" } },
    { key: "host.name", value: { stringValue: "h" } },
  ],
};
const request = (...metrics: unknown[]) => ({ resourceMetrics: [{ resource, scopeMetrics: [{ metrics }] }] });

test("gauges, sums, histograms and summaries become Prometheus series", () => {
  const read = parseOtlpMetrics(
    request(
      {
        name: "queue",
        gauge: {
          dataPoints: [
            { timeUnixNano: T, asInt: "4", attributes: [{ key: "q.name", value: { stringValue: "a" } }] },
          ],
        },
      },
      {
        name: "orders",
        unit: "{order}",
        sum: { isMonotonic: true, aggregationTemporality: 2, dataPoints: [{ asDouble: 2.5 }] },
      },
      {
        name: "inflight",
        sum: { isMonotonic: false, aggregationTemporality: 1, dataPoints: [{ asInt: 3 }] },
      },
      {
        name: "latency",
        unit: "ms",
        histogram: {
          aggregationTemporality: 2,
          dataPoints: [
            { timeUnixNano: T, count: "6", sum: 70, bucketCounts: ["1", "2", "3"], explicitBounds: [5, 10] },
          ],
        },
      },
      {
        name: "size",
        unit: "By",
        summary: { dataPoints: [{ count: 2, sum: 30, quantileValues: [{ quantile: 0.5, value: 10 }] }] },
      },
      { name: "gone", gauge: { dataPoints: [{ flags: 1, asDouble: 1 }] } },
    ),
    NOW,
  );
  const got = read.series.map((s) => {
    const { __name__, ...labels } = s.labels;
    return `${__name__}${JSON.stringify(labels)} ${s.samples[0][0]} ${s.samples[0][1]}`;
  });
  const base = '"job":"shop/web","app":"shop","instance":"web-1"';
  assert.deepEqual(got, [
    `queue{${base},"q_name":"a"} 1700000000123 4`,
    `orders_total{${base}} ${NOW} 2.5`,
    `inflight{${base}} ${NOW} 3`,
    `latency_milliseconds_bucket{${base},"le":"5"} 1700000000123 1`,
    `latency_milliseconds_bucket{${base},"le":"10"} 1700000000123 3`,
    `latency_milliseconds_bucket{${base},"le":"+Inf"} 1700000000123 6`,
    `latency_milliseconds_sum{${base}} 1700000000123 70`,
    `latency_milliseconds_count{${base}} 1700000000123 6`,
    `size_bytes{${base},"quantile":"0.5"} ${NOW} 10`,
    `size_bytes_sum{${base}} ${NOW} 30`,
    `size_bytes_count{${base}} ${NOW} 2`,
  ]);
  assert.equal(read.rejected, 0);
});

test("delta counters and histograms, and exponential histograms, are refused and counted", () => {
  const read = parseOtlpMetrics(
    request(
      {
        name: "d",
        sum: { isMonotonic: true, aggregationTemporality: 1, dataPoints: [{ asInt: 1 }, { asInt: 2 }] },
      },
      { name: "h", histogram: { aggregationTemporality: 1, dataPoints: [{ count: 1 }] } },
      { name: "e", exponentialHistogram: { aggregationTemporality: 2, dataPoints: [{}] } },
    ),
    NOW,
  );
  assert.equal(read.series.length, 0);
  assert.equal(read.rejected, 4);
  assert.match(read.message, /delta sums.*delta histograms.*exponential/);
});

test("bad fields are named", () => {
  const problem = (body: unknown) => {
    try {
      parseOtlpMetrics(body, NOW);
    } catch (err) {
      assert.ok(err instanceof HerdError);
      return err.details?.[0]?.field;
    }
    return undefined;
  };
  assert.equal(problem([]), "body");
  assert.equal(problem({ resourceMetrics: {} }), "body.resourceMetrics");
  assert.equal(
    problem(request({ gauge: { dataPoints: [] } })),
    "resourceMetrics[0].scopeMetrics[0].metrics[0].name",
  );
  assert.equal(
    problem(
      request({
        name: "x",
        histogram: {
          aggregationTemporality: 2,
          dataPoints: [{ count: 1, bucketCounts: [1], explicitBounds: [1] }],
        },
      }),
    ),
    "resourceMetrics[0].scopeMetrics[0].metrics[0].histogram.dataPoints[0].bucketCounts",
  );
  assert.equal(
    problem(request({ name: "x", gauge: { dataPoints: [{ timeUnixNano: "soon", asInt: 1 }] } })),
    "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].timeUnixNano",
  );
  assert.equal(problem(request({ name: "x" })), "resourceMetrics[0].scopeMetrics[0].metrics[0]");
});
