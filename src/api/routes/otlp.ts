/**
 * OTLP/HTTP ingest for all three signals, JSON or protobuf bodies (gzip or
 * deflate too, read by the ingest plugin in traces.ts): what an OpenTelemetry
 * SDK sends when OTEL_EXPORTER_OTLP_ENDPOINT points at `/api/v1/otlp`.
 *
 *   POST /api/v1/otlp/v1/traces   ─► parseOtlpTraces  ─► Traces.recordSpans ─┐
 *   POST /api/v1/otlp/v1/metrics  ─► parseOtlpMetrics ─► IngestQueue (Tsdb) ─┼─► 200 Export*ServiceResponse | 400 | 429 Retry-After
 *   POST /api/v1/otlp/v1/logs     ─► parseOtlpLogs    ─► LogStore.append   ─┘
 *
 * A protobuf body (application/x-protobuf) is decoded to the JSON form first
 * (observe/otlp/protobuf.ts) and answered in protobuf; a JSON body in JSON.
 * The credential's tenant is stamped on everything, as for the other ingest
 * routes. OTLP/gRPC (observe/otlp/grpc.ts) is served by these same routes.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { invalid } from "../../common/errors.ts";
import { IngestBusyError } from "../../observe/ingest.ts";
import { parseOtlpLogs } from "../../observe/otlp/logs.ts";
import { parseOtlpMetrics } from "../../observe/otlp/metrics.ts";
import { decodeOtlp, encodeOtlpResponse, type Signal } from "../../observe/otlp/protobuf.ts";
import { TENANT_LABEL } from "../../observe/promql/tenancy.ts";
import { parseOtlpTraces } from "../../observe/traces/otlp.ts";
import type { ApiDeps } from "../deps.ts";
import { telemetryTenant } from "../schemas.ts";

/** Largest ingest request, after decompression. */
export const OTLP_BODY_LIMIT = 16 * 1024 * 1024;

const REJECTED_FIELD: Record<Signal, string> = {
  traces: "rejectedSpans",
  metrics: "rejectedDataPoints",
  logs: "rejectedLogRecords",
};

/** The body as OTLP JSON: protobuf bodies (read as a Buffer) decoded, JSON ones as they came. */
export function otlpBody(signal: Signal, req: FastifyRequest): unknown {
  if (Buffer.isBuffer(req.body)) return decodeOtlp(signal, req.body);
  if (req.body === undefined) {
    throw invalid("the body is empty: send an OTLP export request", [
      { field: "body", message: "must be an OTLP export request (JSON or protobuf)" },
    ]);
  }
  return req.body;
}

/** 200 with an Export*ServiceResponse in the request's encoding. */
export function sendExported(
  signal: Signal,
  req: FastifyRequest,
  reply: FastifyReply,
  rejected = 0,
  message = "",
): FastifyReply {
  if (Buffer.isBuffer(req.body)) {
    return reply
      .code(200)
      .type("application/x-protobuf")
      .send(Buffer.from(encodeOtlpResponse(rejected, message)));
  }
  const partialSuccess =
    rejected > 0 || message ? { [REJECTED_FIELD[signal]]: rejected, errorMessage: message } : {};
  return reply.code(200).send({ partialSuccess });
}

/** 429 (queue full, Retry-After) or 413 (never fits). */
function refuse(reply: FastifyReply, status: 413 | 429, message: string, retryAfter?: number): FastifyReply {
  if (retryAfter !== undefined) reply.header("retry-after", String(retryAfter));
  return reply.code(status).send({ code: status === 413 ? "too_large" : "too_many_requests", message });
}

/** Registered inside the ingest plugin (traces.ts), which reads protobuf and compressed bodies. */
export function otlpRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { traces, metrics, logs } = deps;
  const schema = (what: string) => ({
    summary: `Ingest OTLP ${what} (OTLP/HTTP, JSON or protobuf)`,
    description:
      "Point an OpenTelemetry SDK at /api/v1/otlp with OTEL_EXPORTER_OTLP_ENDPOINT (protocol http/protobuf or http/json); OTLP/gRPC is on the server's gRPC port. 429 with Retry-After when the ingest queue is full.",
    tags: ["telemetry"],
  });

  api.post("/otlp/v1/traces", { bodyLimit: OTLP_BODY_LIMIT, schema: schema("spans") }, async (req, reply) => {
    const spans = parseOtlpTraces(otlpBody("traces", req));
    const tenant = telemetryTenant(req);
    if (tenant !== undefined) for (const s of spans) s.tenant = tenant;
    if (!traces.recordSpans(spans)) {
      const wait = traces.store.retryAfterSeconds();
      return refuse(
        reply,
        429,
        `span ingest queue is full: ${spans.length} spans refused, retry after ${wait}s`,
        wait,
      );
    }
    return sendExported("traces", req, reply);
  });

  api.post(
    "/otlp/v1/metrics",
    { bodyLimit: OTLP_BODY_LIMIT, schema: schema("metrics") },
    async (req, reply) => {
      const read = parseOtlpMetrics(otlpBody("metrics", req), Date.now());
      const tenant = telemetryTenant(req);
      if (tenant !== undefined) for (const s of read.series) s.labels[TENANT_LABEL] = tenant;
      try {
        if (read.series.length > 0) await metrics.queue.submit(read.series);
      } catch (err) {
        if (!(err instanceof IngestBusyError)) throw err;
        return err.tooLarge
          ? refuse(reply, 413, err.message)
          : refuse(reply, 429, err.message, err.retryAfterSeconds);
      }
      return sendExported("metrics", req, reply, read.rejected, read.message);
    },
  );

  api.post("/otlp/v1/logs", { bodyLimit: OTLP_BODY_LIMIT, schema: schema("logs") }, async (req, reply) => {
    const entries = parseOtlpLogs(otlpBody("logs", req), Date.now());
    const tenant = telemetryTenant(req);
    if (tenant !== undefined) for (const e of entries) e.tenant = tenant;
    if (!logs.append(entries)) {
      const wait = logs.retryAfterSeconds();
      return refuse(
        reply,
        429,
        `log ingest queue is full: ${entries.length} records refused, retry after ${wait}s`,
        wait,
      );
    }
    return sendExported("logs", req, reply);
  });
}
