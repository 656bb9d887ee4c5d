import assert from "node:assert/strict";
import { test } from "node:test";
import { parseText, TextFormatError } from "./text-format.ts";

test("parses counters, gauges, histograms and summaries with label escapes and timestamps", () => {
  const text = [
    "# HELP http_requests_total Requests served.",
    "# TYPE http_requests_total counter",
    'http_requests_total{method="GET",path="/a\\"b\\\\c\\nd"} 1027 1395066363000',
    'http_requests_total{method="POST",} 3',
    "# TYPE temp gauge",
    "temp -1.5e1",
    "# TYPE lat histogram",
    'lat_bucket{le="0.1"} 1',
    'lat_bucket{le="+Inf"} 4',
    "lat_sum 1.2",
    "lat_count 4",
    "# TYPE rpc summary",
    'rpc{quantile="0.5"} NaN',
    "rpc_sum +Inf",
    "rpc_count 0",
    "untyped_thing -Inf",
  ].join("\n");
  const { samples, types } = parseText(text);
  assert.equal(samples.length, 11);
  assert.deepEqual(samples[0], {
    labels: { __name__: "http_requests_total", method: "GET", path: '/a"b\\c\nd' },
    value: 1027,
    timestamp: 1395066363000,
  });
  assert.deepEqual(samples[1]?.labels, { __name__: "http_requests_total", method: "POST" });
  assert.equal(samples[2]?.value, -15);
  assert.equal(samples[8]?.value, Number.POSITIVE_INFINITY);
  assert.ok(Number.isNaN(samples[7]?.value));
  assert.equal(samples[10]?.value, Number.NEGATIVE_INFINITY);
  assert.equal(types.get("lat"), "histogram");
  assert.equal(types.get("rpc"), "summary");
});

test("rejects malformed lines naming the line and the problem", () => {
  const cases: [string, RegExp][] = [
    ["ok 1\nbad{a=1} 2", /line 2: label a: value must be in double quotes/],
    ['x{a="1} 2', /line 1: label a: unterminated value/],
    ["x abc", /line 1: invalid value "abc"/],
    ["x", /line 1: expected a space and a value after x/],
    ['x{a="\\q"} 1', /invalid escape/],
    ["x 1 12.5", /invalid timestamp/],
    ["x 1 2 3", /unexpected text/],
    ["# TYPE x countr", /unknown metric type "countr"/],
    ["# TYPE h histogram\nh_bucket 1", /line 2: histogram bucket h_bucket has no "le" label/],
    ['x{a="1",a="2"} 1', /label a appears twice/],
    ["9x 1", /expected a metric name/],
    ['x{a="1" b="2"} 1', /expected "," or "}"/],
  ];
  for (const [text, re] of cases) {
    assert.throws(
      () => parseText(text),
      (err: unknown) => err instanceof TextFormatError && re.test(err.message),
      text,
    );
  }
});
