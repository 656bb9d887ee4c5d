// The gateway's compact span batches: read straight into the store's
// columns, every bad field named in the 400.

import assert from "node:assert/strict";
import { test } from "node:test";
import { HerdError } from "../../common/errors.ts";
import { parseGatewayBatch } from "./gateway-batch.ts";
import { spanFromColumns } from "./span-store.ts";

const TRACE = "6921a3b00000000000000000000000aa";
const span = (overrides: Record<number, unknown> = {}): unknown[] => {
  const row: unknown[] = [
    TRACE,
    "1111111111111111",
    "",
    0,
    "GET",
    200,
    "upstream",
    1_763_000_000_000_000,
    1500,
    "web-1",
  ];
  for (const [i, v] of Object.entries(overrides)) row[Number(i)] = v;
  return row;
};

test("a batch becomes one server span per request, with the series' route, app and peer", () => {
  const rows = parseGatewayBatch({
    series: [
      ["shop.test/", "default", "shop", "web"],
      ["none", "", "", ""],
    ],
    spans: [
      span(),
      span({ 1: "2222222222222222", 2: "b7ad6b7169203331", 3: 1, 5: 404, 6: "no_route", 9: "" }),
    ],
  });
  const [proxied, missed] = rows.map(spanFromColumns);
  assert.deepEqual(proxied, {
    traceId: TRACE,
    spanId: "1111111111111111",
    parentId: null,
    service: "gateway",
    name: "GET shop.test/",
    kind: "server",
    start: 1_763_000_000_000_000,
    duration: 1500,
    status: "ok",
    statusCode: 200,
    attributes: {
      "http.route": "shop.test/",
      "http.request.method": "GET",
      "http.response.status_code": 200,
      "herd.outcome": "upstream",
      "herd.service": "web",
      "peer.service": "shop/web",
      "herd.instance": "web-1",
    },
    app: "shop",
    tenant: "default",
  });
  assert.equal(rows[0]?.[6], "shop/web", "the peer column the dependency map reads");
  assert.deepEqual(
    [missed?.parentId, missed?.name, missed?.statusCode, missed?.app, missed?.attributes["peer.service"]],
    ["b7ad6b7169203331", "GET none", 404, undefined, undefined],
  );
  assert.equal(rows[1]?.[6], null);
});

test("a 5xx or no answer at all is an error span", () => {
  const rows = parseGatewayBatch({
    series: [["r", "t", "a", "s"]],
    spans: [span({ 5: 502, 6: "bad_gateway" }), span({ 5: 0, 6: "client_closed" }), span({ 5: 499 })],
  });
  assert.deepEqual(
    rows.map((r) => spanFromColumns(r).status),
    ["error", "error", "ok"],
  );
});

test("bad batches are 400s naming each bad field", () => {
  const problems = (body: unknown): string[] => {
    try {
      parseGatewayBatch(body);
    } catch (err) {
      assert.ok(err instanceof HerdError);
      assert.equal(err.code, "invalid");
      return (err.details as { field: string }[]).map((d) => d.field);
    }
    assert.fail("no error");
  };
  assert.deepEqual(problems([]), ["body"]);
  assert.deepEqual(problems({ series: {}, spans: 1 }), ["series", "spans"]);
  assert.deepEqual(problems({ series: [["r", "t", "a"]], spans: [] }), ["series[0]"]);
  assert.deepEqual(problems({ series: [["r", "t", "a", ""]], spans: [] }), ["series[0]"]);
  assert.deepEqual(
    problems({
      series: [["r", "t", "a", "s"]],
      spans: [
        span({ 0: "XYZ", 3: 1 }),
        span({ 2: "nothex", 4: "GET /", 5: 1000 }),
        span({ 6: "Not Ok", 7: -1, 8: 1.5, 9: 7 }),
        [TRACE],
      ],
    }),
    [
      "spans[0][0]",
      "spans[0][3]",
      "spans[1][2]",
      "spans[1][4]",
      "spans[1][5]",
      "spans[2][6]",
      "spans[2][7]",
      "spans[2][8]",
      "spans[2][9]",
      "spans[3]",
    ],
  );
});
