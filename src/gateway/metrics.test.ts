import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  BOUNDS_MS,
  escapeLabelValue,
  type Family,
  labelText,
  mergeFamilies,
  processFamilies,
  RATE_LIMITED,
  renderText,
  routeLabel,
  Series,
  UPSTREAM,
  unroutedSeries,
} from "./metrics.ts";
import { buildRouteTable } from "./route-table.ts";
import { metricSum, parseMetrics, testInstance, testNode, testService } from "./testing.ts";

describe("metrics text rendering", () => {
  test("label values escape backslash, double quote and newline", () => {
    assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
    assert.equal(labelText({ route: 'x"y', app: "" }), 'route="x\\"y",app=""');
  });

  test("a counter renders HELP and TYPE once, then one line per sample", () => {
    const text = renderText([
      {
        name: "herd_test_total",
        help: "Things.\nCounted \\ here.",
        type: "counter",
        merge: "sum",
        samples: [
          { labels: labelText({ route: 'we"ird\\path\n' }), value: 3 },
          { labels: "", value: 1 },
        ],
      },
    ]);
    assert.equal(
      text,
      [
        "# HELP herd_test_total Things.\\nCounted \\\\ here.",
        "# TYPE herd_test_total counter",
        'herd_test_total{route="we\\"ird\\\\path\\n"} 3',
        "herd_test_total 1",
        "",
      ].join("\n"),
    );
    // And it reads back to the original value.
    const [first] = parseMetrics(text);
    assert.equal(first.labels.route, 'we"ird\\path\n');
  });

  test("a histogram renders cumulative buckets, +Inf equal to _count, and _sum in seconds", () => {
    const series = new Series(labelText({ route: "r" }));
    series.record(200, UPSTREAM, 0.4); // ≤ 1 ms
    series.record(200, UPSTREAM, 1); // le is inclusive: still ≤ 1 ms
    series.record(200, UPSTREAM, 7); // ≤ 10 ms
    series.record(500, UPSTREAM, 60_000); // over the last bound: +Inf only
    const text = renderText([
      {
        name: "h_seconds",
        help: "h",
        type: "histogram",
        merge: "sum",
        samples: [
          { labels: series.labels, value: series.sumMs / 1000, buckets: series.buckets, count: series.count },
        ],
      },
    ]);
    const samples = parseMetrics(text);
    const buckets = samples.filter((s) => s.name === "h_seconds_bucket");
    assert.deepEqual(
      buckets.map((s) => s.labels.le),
      [...BOUNDS_MS.map((ms) => String(ms / 1000)), "+Inf"],
    );
    assert.deepEqual(
      buckets.map((s) => s.value),
      [2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4],
    );
    assert.equal(metricSum(samples, "h_seconds_count"), 4);
    assert.equal(metricSum(samples, "h_seconds_sum"), 60.0084);
    assert.match(text, /^# TYPE h_seconds histogram$/m);
  });

  test("a series counts each (code, outcome) pair apart", () => {
    const series = new Series("");
    series.record(200, UPSTREAM, 1);
    series.record(200, UPSTREAM, 1);
    series.record(429, RATE_LIMITED, 1);
    series.record(200, RATE_LIMITED, 1);
    assert.equal(series.count, 4);
    assert.deepEqual(series.counts, [2, 1, 1]);
  });

  test("merging adds counters and buckets, takes the largest of max gauges, and leaves its inputs alone", () => {
    const a: Family[] = [
      { name: "c", help: "", type: "counter", merge: "sum", samples: [{ labels: 'x="1"', value: 2 }] },
      {
        name: "h",
        help: "",
        type: "histogram",
        merge: "sum",
        samples: [{ labels: "", value: 0.5, buckets: [1, 0, 2], count: 3 }],
      },
      { name: "g", help: "", type: "gauge", merge: "max", samples: [{ labels: "", value: 7 }] },
    ];
    const b: Family[] = [
      {
        name: "c",
        help: "",
        type: "counter",
        merge: "sum",
        samples: [
          { labels: 'x="1"', value: 5 },
          { labels: 'x="2"', value: 1 },
        ],
      },
      {
        name: "h",
        help: "",
        type: "histogram",
        merge: "sum",
        samples: [{ labels: "", value: 0.25, buckets: [0, 4, 1], count: 5 }],
      },
      { name: "g", help: "", type: "gauge", merge: "max", samples: [{ labels: "", value: 3 }] },
    ];
    const merged = new Map<string, Family>();
    mergeFamilies(merged, a);
    mergeFamilies(merged, b);
    assert.deepEqual(merged.get("c")?.samples, [
      { labels: 'x="1"', value: 7 },
      { labels: 'x="2"', value: 1 },
    ]);
    assert.deepEqual(merged.get("h")?.samples, [{ labels: "", value: 0.75, buckets: [1, 4, 3], count: 8 }]);
    assert.deepEqual(merged.get("g")?.samples, [{ labels: "", value: 7 }]);
    assert.deepEqual(a[0].samples, [{ labels: 'x="1"', value: 2 }], "inputs unchanged");
    assert.deepEqual(a[1].samples[0].buckets, [1, 0, 2]);
  });

  test("route labels name host and path, then what else tells routes apart", () => {
    assert.equal(routeLabel({ host: "Shop.Test", path: "/" }), "shop.test/");
    assert.equal(
      routeLabel({
        host: "a.test",
        path: "/api",
        match: "exact",
        methods: ["POST", "GET"],
        headers: { "X-V": "2", a: "1" },
      }),
      "a.test/api exact GET,POST a=1&x-v=2",
    );
  });

  test("a rebuilt table keeps a route's counters while the route and its service stay", async () => {
    const objects = {
      services: [testService("default", "shop", "web", [{ host: "shop.test" }])],
      instances: [testInstance("i1", { app: "shop", service: "web" }, "n", 1000)],
      nodes: [testNode("n", "127.0.0.1")],
    };
    const first = buildRouteTable(objects, 1);
    const [route] = first.entries();
    route.stats.home.record(200, UPSTREAM, 2);
    // Another instance: a new table, the same counters.
    const second = buildRouteTable(
      {
        ...objects,
        instances: [...objects.instances, testInstance("i2", { app: "shop", service: "web" }, "n", 1001)],
      },
      2,
      { previous: first },
    );
    const [kept] = second.entries();
    assert.equal(kept.stats, route.stats);
    const families = await processFamilies({
      table: second,
      inflight: 0,
      unrouted: unroutedSeries(),
      internal: null,
      openConnections: async () => 0,
    });
    const samples = parseMetrics(renderText(families));
    assert.equal(
      metricSum(samples, "herd_gateway_requests_total", {
        route: "shop.test/",
        tenant: "default",
        app: "shop",
        service: "web",
        code: "200",
        outcome: "upstream",
      }),
      1,
    );
  });
});
