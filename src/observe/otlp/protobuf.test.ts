import assert from "node:assert/strict";
import { test } from "node:test";
import { HerdError } from "../../common/errors.ts";
import { decodeOtlp, encodeOtlpResponse, otlpRequestType, type Signal } from "./protobuf.ts";

const hex = (s: string) => Buffer.from(s, "hex");
const kv = (key: string, value: unknown) => ({ key, value });

const REQUESTS: Record<Signal, unknown> = {
  traces: {
    resourceSpans: [
      {
        resource: {
          attributes: [kv("service.name", { stringValue: "shop/wéb" }), kv("n", { intValue: "-42" })],
        },
        scopeSpans: [
          {
            scope: { name: "s", version: "1" },
            spans: [
              {
                traceId: hex("4bf92f3577b34da6a3ce929d0e0e4736"),
                spanId: hex("00f067aa0ba902b7"),
                parentSpanId: hex("00f067aa0ba902b8"),
                name: "GET /",
                kind: 2,
                startTimeUnixNano: "1700000000123456789",
                endTimeUnixNano: "18446744073709551615",
                attributes: [
                  kv("big", { intValue: "9007199254740993" }),
                  kv("min", { intValue: "-9223372036854775808" }),
                  kv("d", { doubleValue: -0.5 }),
                  kv("b", { boolValue: false }),
                  kv("raw", { bytesValue: Buffer.from([1, 2, 255]) }),
                  kv("list", { arrayValue: { values: [{ stringValue: "a" }, { intValue: "1" }] } }),
                  kv("map", { kvlistValue: { values: [kv("x", { doubleValue: 1e300 })] } }),
                ],
                status: { code: 2, message: "boom" },
              },
              {
                traceId: hex("4bf92f3577b34da6a3ce929d0e0e4736"),
                spanId: hex("0000000000000001"),
                name: "x",
              },
            ],
          },
        ],
      },
    ],
  },
  metrics: {
    resourceMetrics: [
      {
        scopeMetrics: [
          {
            metrics: [
              {
                name: "g",
                unit: "1",
                gauge: { dataPoints: [{ asInt: "-7", timeUnixNano: "1" }, { asDouble: 0 }] },
              },
              {
                name: "s",
                sum: {
                  isMonotonic: true,
                  aggregationTemporality: 2,
                  dataPoints: [{ asDouble: Number.NaN, flags: 1 }],
                },
              },
              {
                name: "h",
                histogram: {
                  aggregationTemporality: 2,
                  dataPoints: [
                    {
                      count: "4294967296",
                      sum: 0,
                      bucketCounts: ["1", "0", "4294967295"],
                      explicitBounds: [0.5, 1e-9],
                    },
                    { count: "0" },
                  ],
                },
              },
              {
                name: "q",
                summary: {
                  dataPoints: [{ count: "2", sum: 3, quantileValues: [{ quantile: 0.99, value: 2 }] }],
                },
              },
              {
                name: "e",
                exponentialHistogram: { aggregationTemporality: 1, dataPoints: [{ timeUnixNano: "5" }] },
              },
            ],
          },
        ],
      },
    ],
  },
  logs: {
    resourceLogs: [
      {
        scopeLogs: [
          {
            logRecords: [
              {
                timeUnixNano: "1700000000000000000",
                observedTimeUnixNano: "1700000000000000001",
                severityNumber: 17,
                severityText: "ERROR",
                body: { stringValue: "" },
                attributes: [kv("k", { stringValue: "v" })],
                flags: 1,
                traceId: hex("4bf92f3577b34da6a3ce929d0e0e4736"),
                spanId: hex("00f067aa0ba902b7"),
                eventName: "e",
              },
              {},
            ],
          },
        ],
      },
    ],
  },
};

/** protobufjs's own decode and toObject, ids as hex: what readWire must give. */
function reference(signal: Signal, bytes: Uint8Array): unknown {
  const type = otlpRequestType(signal);
  const json = type.toObject(type.decode(bytes), {
    longs: String,
    enums: Number,
    bytes: String,
    defaults: false,
  });
  const hexIds = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(hexIds);
    if (typeof v !== "object" || v === null) return v;
    return Object.fromEntries(
      Object.entries(v).map(([key, x]) => [
        key,
        ["traceId", "spanId", "parentSpanId"].includes(key) && typeof x === "string"
          ? Buffer.from(x, "base64").toString("hex")
          : hexIds(x),
      ]),
    );
  };
  return hexIds(json);
}

test("the wire reader gives what protobufjs's decode and toObject give, for every signal", () => {
  for (const signal of ["traces", "metrics", "logs"] as const) {
    const type = otlpRequestType(signal);
    const bytes = type.encode(type.fromObject(REQUESTS[signal] as Record<string, unknown>)).finish();
    const got = decodeOtlp(signal, bytes);
    // NaN is not JSON: compare through a replacer that keeps it visible.
    const text = (v: unknown) =>
      JSON.stringify(v, (_k, x) => (typeof x === "number" && Number.isNaN(x) ? "NaN!" : x));
    assert.equal(text(got), text(reference(signal, bytes)), signal);
  }
});

test("unpacked repeated scalars and unknown fields read too", () => {
  // HistogramDataPoint with bucket_counts (6) as two unpacked fixed64s and an unknown field 99 (varint).
  const point = Buffer.concat([
    Buffer.from([0x31, 1, 0, 0, 0, 0, 0, 0, 0]), // 6: fixed64 1, unpacked (wire 1)
    Buffer.from([0x31, 2, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from([0x98, 0x06, 0x05]), // 99: varint 5
  ]);
  const histogram = Buffer.concat([Buffer.from([0x0a, point.length]), point]);
  const metric = Buffer.concat([Buffer.from([0x0a, 1, 0x68, 0x4a, histogram.length]), histogram]);
  const scope = Buffer.concat([Buffer.from([0x12, metric.length]), metric]);
  const resource = Buffer.concat([Buffer.from([0x12, scope.length]), scope]);
  const body = Buffer.concat([Buffer.from([0x0a, resource.length]), resource]);
  assert.deepEqual(decodeOtlp("metrics", body), {
    resourceMetrics: [
      {
        scopeMetrics: [
          { metrics: [{ name: "h", histogram: { dataPoints: [{ bucketCounts: ["1", "2"] }] } }] },
        ],
      },
    ],
  });
  assert.deepEqual(reference("metrics", body), decodeOtlp("metrics", body));
});

test("bytes that are not the message are a 400 on body", () => {
  for (const bad of [[0x0a, 0x05, 0x01], [0x0a], [0x0f], [0x0a, 0x02, 0x12, 0x09]]) {
    assert.throws(
      () => decodeOtlp("traces", Buffer.from(bad)),
      (err: unknown) => err instanceof HerdError && err.details?.[0]?.field === "body",
      JSON.stringify(bad),
    );
  }
});

test("the export response is empty when all was taken, else says what was refused", () => {
  assert.equal(encodeOtlpResponse().length, 0);
  const type = otlpRequestType("traces").root.lookupType("opentelemetry.proto.ExportResponse");
  assert.deepEqual(type.toObject(type.decode(encodeOtlpResponse(3, "delta")), { longs: Number }), {
    partialSuccess: { rejected: 3, errorMessage: "delta" },
  });
});
