// OTLP senders for the telemetry benches: protobuf bodies made from the OTLP
// JSON shape (the same messages the JSON runs send), and unary gRPC calls
// over one HTTP/2 connection per client.

import http2 from "node:http2";
import protobuf from "protobufjs";
import { OTLP_PROTO } from "../src/observe/otlp/proto.ts";

const root = protobuf.parse(OTLP_PROTO, { keepCase: false }).root;
const TYPES = {
  traces: root.lookupType("opentelemetry.proto.ExportTraceServiceRequest"),
  metrics: root.lookupType("opentelemetry.proto.ExportMetricsServiceRequest"),
};
export type BenchSignal = keyof typeof TYPES;

const ID_KEYS = new Set(["traceId", "spanId", "parentSpanId"]);

/** OTLP JSON (hex ids) → protobuf bytes. */
export function encodeOtlp(signal: BenchSignal, json: unknown): Buffer {
  const withBytes = JSON.parse(JSON.stringify(json), (key, value) =>
    ID_KEYS.has(key) && typeof value === "string" ? Buffer.from(value, "hex") : value,
  );
  const type = TYPES[signal];
  return Buffer.from(type.encode(type.fromObject(withBytes)).finish());
}

const GRPC_PATHS: Record<BenchSignal, string> = {
  traces: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
  metrics: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
};

/** A gRPC client on one HTTP/2 connection: `call` resolves with the grpc-status. */
export function grpcClient(url: string, token: string) {
  const session = http2.connect(url);
  session.on("error", () => {});
  return {
    call(signal: BenchSignal, message: Buffer): Promise<number> {
      return new Promise((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": GRPC_PATHS[signal],
          "content-type": "application/grpc",
          te: "trailers",
          authorization: `Bearer ${token}`,
        });
        let status = -1;
        stream.on("response", (h) => {
          if (h["grpc-status"] !== undefined) status = Number(h["grpc-status"]);
        });
        stream.on("trailers", (h) => {
          status = Number(h["grpc-status"]);
        });
        stream.on("error", reject);
        stream.on("end", () => resolve(status));
        stream.resume();
        const frame = Buffer.alloc(5);
        frame.writeUInt32BE(message.length, 1);
        stream.end(Buffer.concat([frame, message]));
      });
    },
    close: () => session.close(),
  };
}
