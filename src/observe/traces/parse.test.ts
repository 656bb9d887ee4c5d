// OTLP JSON and Zipkin v2 JSON into Spans: field mapping, and 400s that name the bad field.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { HerdError } from "../../common/errors.ts";
import { parseOtlpTraces, toOtlpJson } from "./otlp.ts";
import { formatMicros, parseDurationMicros } from "./span.ts";
import { makeSpan } from "./testing.ts";
import { formatTraceparent, newSpanId, newTraceId, parseTraceparent } from "./trace-context.ts";
import { parseZipkinSpans } from "./zipkin.ts";

const otlp = (
  spans: unknown[],
  resource: unknown[] = [{ key: "service.name", value: { stringValue: "shop" } }],
) => ({
  resourceSpans: [{ resource: { attributes: resource }, scopeSpans: [{ scope: { name: "x" }, spans }] }],
});

test("OTLP JSON spans become normalized spans", () => {
  const [span] = parseOtlpTraces(
    otlp(
      [
        {
          traceId: "5B8EFFF798038103D269B633813FC60C",
          spanId: "EEE19B7EC3C1B174",
          parentSpanId: "EEE19B7EC3C1B173",
          name: "GET /users/:id",
          kind: "SPAN_KIND_SERVER",
          startTimeUnixNano: "1700000000123456789",
          endTimeUnixNano: 1700000000223456800, // a number: JSON loses its last digits
          attributes: [
            { key: "http.route", value: { stringValue: "/users/:id" } },
            { key: "http.status_code", value: { intValue: "503" } },
            { key: "retry", value: { boolValue: true } },
            { key: "tags", value: { arrayValue: { values: [{ stringValue: "a" }] } } },
          ],
          status: { code: 0 },
        },
      ],
      [
        { key: "service.name", value: { stringValue: "shop" } },
        { key: "herd.app", value: { stringValue: "store" } },
      ],
    ),
  );
  assert.equal(span.traceId, "5b8efff798038103d269b633813fc60c");
  assert.equal(span.spanId, "eee19b7ec3c1b174");
  assert.equal(span.parentId, "eee19b7ec3c1b173");
  assert.equal(span.service, "shop");
  assert.equal(span.app, "store");
  assert.equal(span.kind, "server");
  assert.equal(span.start, 1700000000123456);
  // The end came as a (lossy) number; µs precision survives.
  assert.ok(Math.abs(span.duration - 100_000) <= 1);
  assert.equal(span.statusCode, 503);
  assert.equal(span.status, "error", "a 5xx answer is an error even with status unset");
  assert.equal(span.attributes["http.route"], "/users/:id");
  assert.equal(span.attributes.retry, true);
  assert.equal(span.attributes.tags, '["a"]');
});

test("OTLP: problems name the field by its path, several at once", () => {
  const body = {
    resourceSpans: [
      {
        scopeSpans: [
          { spans: [] },
          {
            spans: [
              ...Array.from({ length: 3 }, (_, i) => ({
                traceId: "a".repeat(32),
                spanId: (i + 1).toString(16).padStart(16, "0"),
                name: "ok",
                startTimeUnixNano: "1",
                endTimeUnixNano: "2",
              })),
              {
                traceId: "xyz",
                spanId: "0000000000000000",
                name: "",
                startTimeUnixNano: "5000",
                endTimeUnixNano: "1000",
                kind: 9,
              },
            ],
          },
        ],
      },
    ],
  };
  assert.throws(
    () => parseOtlpTraces(body),
    (err: HerdError) => {
      assert.equal(err.status, 400);
      assert.match(
        err.message,
        /^invalid OTLP traces: resourceSpans\[0\]\.scopeSpans\[1\]\.spans\[3\]\.traceId: must be 32 hex characters/,
      );
      const fields = (err.details ?? []).map((d) =>
        d.field.replace("resourceSpans[0].scopeSpans[1].spans[3].", ""),
      );
      assert.deepEqual(fields, ["traceId", "spanId", "name", "kind", "endTimeUnixNano"]);
      return true;
    },
  );
  assert.throws(() => parseOtlpTraces([]), /body: must be a JSON object/);
  assert.throws(() => parseOtlpTraces({ resourceSpans: {} }), /resourceSpans: must be an array/);
  assert.throws(
    () =>
      parseOtlpTraces(
        otlp([
          {
            traceId: "a".repeat(32),
            spanId: "b".repeat(16),
            name: "x",
            startTimeUnixNano: "soon",
            endTimeUnixNano: "1",
          },
        ]),
      ),
    /spans\[0\]\.startTimeUnixNano: must be nanoseconds/,
  );
  assert.deepEqual(parseOtlpTraces({}), [], "an empty export is fine");
});

test("OTLP: spans written out read back the same", () => {
  const spans = [
    makeSpan({
      trace: 7,
      id: 1,
      attributes: { "http.route": "/a", n: 3, f: 1.5, b: false },
      app: "a",
      tenant: "t",
    }),
    makeSpan({
      trace: 7,
      id: 2,
      parent: 1,
      service: "db",
      kind: "client",
      status: "error",
      statusMessage: "boom",
    }),
  ];
  const back = parseOtlpTraces(JSON.parse(JSON.stringify(toOtlpJson(spans))));
  assert.deepEqual(back, spans);
});

test("Zipkin v2 spans become normalized spans", () => {
  const [a, b] = parseZipkinSpans([
    {
      traceId: "463ac35c9f6413ad",
      id: "a2fb4a1d1a96d312",
      name: "get /api",
      kind: "CLIENT",
      timestamp: 1700000000000000,
      duration: 2500,
      localEndpoint: { serviceName: "frontend" },
      remoteEndpoint: { serviceName: "backend", ipv4: "10.0.0.2" },
      tags: { "http.status_code": "200" },
    },
    {
      traceId: "463ac35c9f6413ad48485a3953bb6124",
      id: "a2fb4a1d1a96d313",
      parentId: "a2fb4a1d1a96d312",
      timestamp: 1700000000000100,
      localEndpoint: { serviceName: "backend" },
      tags: { error: "timeout" },
    },
  ]);
  assert.equal(a.traceId, "0000000000000000463ac35c9f6413ad");
  assert.equal(a.kind, "client");
  assert.equal(a.service, "frontend");
  assert.equal(a.attributes["peer.service"], "backend");
  assert.equal(a.duration, 2500);
  assert.equal(a.statusCode, 200);
  assert.equal(a.status, "ok");
  assert.equal(b.parentId, "a2fb4a1d1a96d312");
  assert.equal(b.status, "error");
  assert.equal(b.statusMessage, "timeout");
  assert.equal(b.name, "unknown");
});

test("Zipkin: problems name the span and field", () => {
  assert.throws(() => parseZipkinSpans({}), /body: must be a JSON array/);
  assert.throws(
    () =>
      parseZipkinSpans([
        { traceId: "a".repeat(16), id: "b".repeat(16), timestamp: 1 },
        { traceId: "a".repeat(20), id: "b", timestamp: -1, kind: "SIDEWAYS", tags: { n: 1 } },
      ]),
    (err: HerdError) => {
      assert.match(
        err.message,
        /^invalid Zipkin spans: \[1\]\.traceId: must be 16 or 32 hex characters, not all zero \(and 4 more problems\)$/,
      );
      assert.deepEqual(
        err.details?.map((d) => d.field),
        ["[1].traceId", "[1].id", "[1].kind", "[1].timestamp", "[1].tags.n"],
      );
      return true;
    },
  );
});

test("durations read and print as people write them", () => {
  assert.equal(parseDurationMicros("100ms"), 100_000);
  assert.equal(parseDurationMicros("1.5s"), 1_500_000);
  assert.equal(parseDurationMicros("15m"), 900_000_000);
  assert.equal(parseDurationMicros("250us"), 250);
  assert.equal(parseDurationMicros("20"), 20_000);
  assert.equal(parseDurationMicros("soon"), null);
  assert.equal(formatMicros(850), "850µs");
  assert.equal(formatMicros(3_200), "3.2ms");
  assert.equal(formatMicros(40_000), "40ms");
  assert.equal(formatMicros(1_250_000), "1.25s");
  assert.equal(formatMicros(200_000_000), "3m20s");
});

test("W3C traceparent: read, refused when malformed, written back", () => {
  const h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  assert.deepEqual(parseTraceparent(h), {
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    parentId: "00f067aa0ba902b7",
    sampled: true,
  });
  assert.equal(parseTraceparent(`${h}-extra`), null, "version 00 has four fields");
  assert.equal(parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x")?.sampled, false);
  assert.equal(parseTraceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), null);
  assert.equal(parseTraceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), null);
  assert.equal(parseTraceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), null);
  assert.equal(parseTraceparent(undefined), null);
  const trace = newTraceId();
  const span = newSpanId();
  assert.match(trace, /^[0-9a-f]{32}$/);
  assert.match(span, /^[0-9a-f]{16}$/);
  assert.notEqual(newSpanId(), span);
  assert.deepEqual(parseTraceparent(formatTraceparent(trace, span)), {
    traceId: trace,
    parentId: span,
    sampled: true,
  });
});
