/**
 * OTLP protobuf bodies (`application/x-protobuf`, and gRPC messages) → the
 * OTLP JSON shape (ids hex, 64-bit integers as decimal strings, enums as
 * numbers), so one reader per signal checks both encodings the same way.
 *
 *   bytes ─► protobufjs decode (proto.ts) ─► toObject ─► ids base64 → hex ─► parseOtlpTraces | Metrics | Logs
 */

import protobuf from "protobufjs";
import { HerdError } from "../../common/errors.ts";
import { OTLP_PROTO } from "./proto.ts";

const root = protobuf.parse(OTLP_PROTO, { keepCase: false }).root;
const type = (name: string) => root.lookupType(`opentelemetry.proto.${name}`);

export type Signal = "traces" | "metrics" | "logs";

const REQUESTS: Record<Signal, protobuf.Type> = {
  traces: type("ExportTraceServiceRequest"),
  metrics: type("ExportMetricsServiceRequest"),
  logs: type("ExportLogsServiceRequest"),
};
const RESPONSE = type("ExportResponse");

const TO_JSON: protobuf.IConversionOptions = { longs: String, enums: Number, bytes: String, defaults: false };

type Json = Record<string, unknown>;

/** A protobuf export request → its OTLP JSON form; a 400 when the bytes are not one. */
export function decodeOtlp(signal: Signal, body: Uint8Array): Json {
  const request = REQUESTS[signal];
  let json: Json;
  try {
    json = request.toObject(request.decode(body), TO_JSON);
  } catch (err) {
    throw new HerdError(
      "invalid",
      `the body is not an OTLP protobuf ${request.name}: ${(err as Error).message}`,
      [{ field: "body", message: `must be an OTLP protobuf ${request.name}` }],
    );
  }
  if (signal === "traces") {
    for (const rs of (json.resourceSpans as Json[] | undefined) ?? [])
      for (const ss of (rs.scopeSpans as Json[] | undefined) ?? [])
        for (const span of (ss.spans as Json[] | undefined) ?? [])
          hexIds(span, "traceId", "spanId", "parentSpanId");
  } else if (signal === "logs") {
    for (const rl of (json.resourceLogs as Json[] | undefined) ?? [])
      for (const sl of (rl.scopeLogs as Json[] | undefined) ?? [])
        for (const record of (sl.logRecords as Json[] | undefined) ?? []) hexIds(record, "traceId", "spanId");
  }
  return json;
}

/** protobufjs writes bytes as base64; OTLP JSON has trace and span ids in hex. Empty ids stay absent. */
function hexIds(o: Json, ...keys: string[]): void {
  for (const key of keys) {
    const v = o[key];
    if (typeof v === "string") o[key] = Buffer.from(v, "base64").toString("hex");
  }
}

/** An Export*ServiceResponse: empty when all was taken, else the count refused and why. */
export function encodeOtlpResponse(rejected = 0, errorMessage = ""): Uint8Array {
  if (rejected === 0 && errorMessage === "") return new Uint8Array(0);
  return RESPONSE.encode(RESPONSE.fromObject({ partialSuccess: { rejected, errorMessage } })).finish();
}
