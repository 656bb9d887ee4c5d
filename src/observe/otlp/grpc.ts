/**
 * OTLP/gRPC: the three collector services' unary `Export` calls over HTTP/2
 * (node:http2, cleartext h2c or TLS), each handed on as the OTLP/HTTP
 * protobuf request it carries, so both protocols share one code path.
 *
 *   POST /opentelemetry.proto.collector.{trace|metrics|logs}.v1.*Service/Export
 *     application/grpc, one length-prefixed message (gzip or deflate when grpc-encoding says)
 *   ─► forward(signal, message, authorization) ─► {status, body}   (an OTLP/HTTP answer)
 *   ─► 200 + the response message + trailers grpc-status 0
 *      | trailers-only grpc-status (400 → INVALID_ARGUMENT, 401 → UNAUTHENTICATED,
 *        403 → PERMISSION_DENIED, 429/503 → UNAVAILABLE (retried), 413 → RESOURCE_EXHAUSTED, …)
 *
 * The API server forwards in process (fastify inject: the same authentication,
 * permission check and audit as HTTP); the agent's telemetry relay forwards to
 * the control plane's OTLP/HTTP routes.
 *
 * The port is taken with node:net and node:http2 (with node:tls, about 4.5 MB
 * of RSS) is loaded at the first connection, which is handed to it: every
 * agent's relay listens, few instances ever speak gRPC.
 */

import type http2 from "node:http2";
import { createRequire } from "node:module";
import { type AddressInfo, createServer as createNetServer, type Socket } from "node:net";
import { promisify } from "node:util";
import { gunzip, inflate } from "node:zlib";
import type { Signal } from "./protobuf.ts";

const gunzipAsync = promisify(gunzip);
const inflateAsync = promisify(inflate);

export const GRPC_PATHS: Readonly<Record<string, Signal>> = {
  "/opentelemetry.proto.collector.trace.v1.TraceService/Export": "traces",
  "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": "metrics",
  "/opentelemetry.proto.collector.logs.v1.LogsService/Export": "logs",
};

/** gRPC status codes used here. */
const GRPC = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** http2.constants.NGHTTP2_INTERNAL_ERROR (RFC 9113's INTERNAL_ERROR), without loading node:http2. */
const NGHTTP2_INTERNAL_ERROR = 2;

/** Largest message taken, after decompression (the OTLP/HTTP routes' limit). */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** What an OTLP/HTTP endpoint answered. */
export interface ForwardResult {
  status: number;
  /** The protobuf Export*ServiceResponse on 200; the JSON error body otherwise. */
  body: Buffer;
}

/** Hands one call on: its signal, message, Authorization header and the caller's address. */
export type Forward = (
  signal: Signal,
  message: Buffer,
  authorization: string | undefined,
  peer: string | undefined,
) => Promise<ForwardResult>;

export interface GrpcServerOptions {
  host: string;
  port: number;
  /** PEM certificate and key: serve TLS (the API's own certificate); absent: cleartext HTTP/2. */
  tls?: { cert: string; key: string };
  forward: Forward;
  /** Called with errors that reach no caller (a broken stream). */
  onError?: (err: Error) => void;
}

export interface GrpcServer {
  /** `http://host:port` (or https): what OTEL_EXPORTER_OTLP_ENDPOINT names with protocol grpc. */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Starts an OTLP/gRPC listener. */
export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServer> {
  const sessions = new Set<http2.ServerHttp2Session>();
  let h2: http2.Http2Server | http2.Http2SecureServer | undefined;
  const listener = createNetServer((socket: Socket) => {
    h2 ??= http2Server(options, sessions);
    h2.emit("connection", socket);
  });
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(options.port, options.host, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  const port = (listener.address() as AddressInfo).port;
  const host = options.host === "0.0.0.0" || options.host === "::" ? "127.0.0.1" : options.host;
  return {
    url: `${options.tls ? "https" : "http"}://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        listener.close(() => resolve());
        for (const s of sessions) s.close();
      }),
  };
}

const require = createRequire(import.meta.url);

/** The HTTP/2 server the listener's connections are handed to (it listens on no port of its own). */
function http2Server(
  options: GrpcServerOptions,
  sessions: Set<http2.ServerHttp2Session>,
): http2.Http2Server | http2.Http2SecureServer {
  const { createSecureServer, createServer } = require("node:http2") as typeof http2;
  const server: http2.Http2Server | http2.Http2SecureServer = options.tls
    ? createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: false })
    : createServer();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => {});
  });
  server.on("stream", (raw, headers) => {
    const stream = raw as http2.ServerHttp2Stream;
    stream.on("error", (err) => options.onError?.(err));
    handle(stream, headers, options.forward).catch((err: Error) => {
      options.onError?.(err);
      finish(stream, GRPC.INTERNAL, `internal error: ${err.message}`);
    });
  });
  return server;
}

async function handle(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  forward: Forward,
): Promise<void> {
  const signal = GRPC_PATHS[headers[":path"] ?? ""];
  if (headers[":method"] !== "POST" || signal === undefined) {
    stream.resume();
    return finish(stream, GRPC.UNIMPLEMENTED, `no OTLP service at ${headers[":path"]}`);
  }
  const contentType = headers["content-type"] ?? "";
  if (!contentType.startsWith("application/grpc")) {
    stream.resume();
    stream.respond({ ":status": 415, "content-type": "text/plain" });
    stream.end("gRPC needs content-type application/grpc");
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_MESSAGE_BYTES + 5) {
      return finish(stream, GRPC.RESOURCE_EXHAUSTED, `the message is over ${MAX_MESSAGE_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  const body = Buffer.concat(chunks);
  if (body.length < 5 || body.readUInt32BE(1) !== body.length - 5) {
    return finish(
      stream,
      GRPC.INVALID_ARGUMENT,
      "expected exactly one length-prefixed message (a unary call)",
    );
  }
  let message = body.subarray(5);
  if (body[0] === 1) {
    const encoding = headers["grpc-encoding"];
    try {
      if (encoding === "gzip") message = await gunzipAsync(message, { maxOutputLength: MAX_MESSAGE_BYTES });
      else if (encoding === "deflate")
        message = await inflateAsync(message, { maxOutputLength: MAX_MESSAGE_BYTES });
      else
        return finish(
          stream,
          GRPC.UNIMPLEMENTED,
          `grpc-encoding ${encoding ?? "(none)"} is not supported: use gzip`,
        );
    } catch (err) {
      return finish(
        stream,
        GRPC.INVALID_ARGUMENT,
        `the message is not valid ${encoding}: ${(err as Error).message}`,
      );
    }
  }
  const auth = headers.authorization;
  const result = await forward(
    signal,
    message,
    typeof auth === "string" ? auth : undefined,
    stream.session?.socket?.remoteAddress,
  );
  if (stream.destroyed) return;
  if (result.status !== 200) return finish(stream, grpcStatusOf(result.status), errorMessage(result));
  const frame = Buffer.alloc(5 + result.body.length);
  frame.writeUInt32BE(result.body.length, 1);
  result.body.copy(frame, 5);
  stream.respond({ ":status": 200, "content-type": "application/grpc+proto" }, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": String(GRPC.OK) }));
  stream.end(frame);
}

/** A trailers-only answer: the call's status and its message. */
function finish(stream: http2.ServerHttp2Stream, code: number, message: string): void {
  if (stream.destroyed || stream.headersSent) {
    if (!stream.destroyed) stream.close(NGHTTP2_INTERNAL_ERROR);
    return;
  }
  stream.respond(
    {
      ":status": 200,
      "content-type": "application/grpc+proto",
      "grpc-status": String(code),
      "grpc-message": encodeURIComponent(message),
    },
    { endStream: true },
  );
}

/** The gRPC status for an OTLP/HTTP status (the mapping gRPC's own HTTP gateways use). */
export function grpcStatusOf(http: number): number {
  if (http === 400) return GRPC.INVALID_ARGUMENT;
  if (http === 401) return GRPC.UNAUTHENTICATED;
  if (http === 403) return GRPC.PERMISSION_DENIED;
  if (http === 404) return GRPC.NOT_FOUND;
  if (http === 413) return GRPC.RESOURCE_EXHAUSTED;
  if (http === 429 || http === 502 || http === 503 || http === 504) return GRPC.UNAVAILABLE;
  return GRPC.INTERNAL;
}

function errorMessage(result: ForwardResult): string {
  try {
    const parsed = JSON.parse(result.body.toString("utf8")) as { message?: unknown };
    if (typeof parsed.message === "string") return parsed.message;
  } catch {}
  return `the OTLP endpoint answered ${result.status}`;
}
