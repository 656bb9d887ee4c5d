/**
 * OTLP protobuf bodies (`application/x-protobuf`, and gRPC messages) → the
 * OTLP JSON shape (ids hex, 64-bit integers as decimal strings, enums as
 * numbers), so one reader per signal checks both encodings the same way.
 *
 *   bytes ─► wire.ts readWire (the schema from protobufjs's parse of proto.ts) ─► parseOtlpTraces | Metrics | Logs
 *
 * (protobufjs's own decode + toObject gives the same objects, ids aside, at
 * several times the cost; protobuf.test.ts compares the two.)
 *
 * protobufjs and the parsed schema are loaded at the first protobuf body (a
 * control plane whose instances send none, or send JSON, never holds them).
 */

import { createRequire } from "node:module";
import type protobuf from "protobufjs";
import { HerdError } from "../../common/errors.ts";
import { OTLP_PROTO } from "./proto.ts";
import { readWire, schemaOf, WireError } from "./wire.ts";

export type Signal = "traces" | "metrics" | "logs";

interface Codec {
  requests: Record<Signal, protobuf.Type>;
  response: protobuf.Type;
}

const require = createRequire(import.meta.url);
let loaded: Codec | undefined;

/** The export request and response types, parsed from proto.ts on first use. */
function codec(): Codec {
  if (loaded) return loaded;
  const { parse } = require("protobufjs") as typeof protobuf;
  const root = parse(OTLP_PROTO, { keepCase: false }).root;
  const type = (name: string) => root.lookupType(`opentelemetry.proto.${name}`);
  loaded = {
    requests: {
      traces: type("ExportTraceServiceRequest"),
      metrics: type("ExportMetricsServiceRequest"),
      logs: type("ExportLogsServiceRequest"),
    },
    response: type("ExportResponse"),
  };
  return loaded;
}

type Json = Record<string, unknown>;

/** A protobuf export request → its OTLP JSON form; a 400 when the bytes are not one. */
export function decodeOtlp(signal: Signal, body: Uint8Array): Json {
  const request = codec().requests[signal];
  try {
    return readWire(schemaOf(request), body);
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
    throw new HerdError("invalid", `the body is not an OTLP protobuf ${request.name}: ${err.message}`, [
      { field: "body", message: `must be an OTLP protobuf ${request.name}` },
    ]);
  }
}

/** The protobuf types of the three export requests (for tests and benches). */
export const otlpRequestType = (signal: Signal): protobuf.Type => codec().requests[signal];

/** An Export*ServiceResponse: empty when all was taken, else the count refused and why. */
export function encodeOtlpResponse(rejected = 0, errorMessage = ""): Uint8Array {
  if (rejected === 0 && errorMessage === "") return new Uint8Array(0);
  const { response } = codec();
  return response.encode(response.fromObject({ partialSuccess: { rejected, errorMessage } })).finish();
}
