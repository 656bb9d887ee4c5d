/**
 * Traces: ingest (OTLP/HTTP JSON or protobuf, Zipkin v2 JSON; all OTLP signals in otlp.ts) and queries (search,
 * one trace as a tree, the dependency map, Top-N).
 *
 *   POST /api/v1/traces/otlp/v1/traces       OTLP JSON  ─┐
 *   POST /api/v1/traces/zipkin/api/v2/spans  Zipkin v2  ─┴─► Traces.recordSpans ─► 200/202 | 429 Retry-After
 *   POST /api/v1/traces/gateway  the gateway's batches ─► SpanStore.recordColumns ─► 202 | 429
 *   GET  /api/v1/traces?service=&app=&route=&status=&minDuration=&since=&limit=
 *   GET  /api/v1/traces/:id   GET /api/v1/traces/map   GET /api/v1/traces/top   GET /api/v1/traces/stats
 *
 * Ingest takes a token with telemetry:write: a tenant's ingest token (the
 * one the agent gives its instances, see observe/ingest-tokens.ts) or a
 * member's; the spans are stamped with that tenant. Reads show a tenant
 * its own spans only (a platform admin naming no tenant sees all).
 */

import type { Readable } from "node:stream";
import { createGunzip, createInflate } from "node:zlib";
import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { HerdError, invalid, notFound } from "../../common/errors.ts";
import { QueryBusyError, QueryTimeoutError } from "../../observe/query-pool.ts";
import type { TopBy } from "../../observe/traces/analysis.ts";
import { parseGatewayBatch } from "../../observe/traces/gateway-batch.ts";
import { parseOtlpTraces } from "../../observe/traces/otlp.ts";
import { parseDurationMicros, type Span } from "../../observe/traces/span.ts";
import type { TraceSearch } from "../../observe/traces/span-store.ts";
import type { TraceJob } from "../../observe/traces/traces.ts";
import { parseZipkinSpans } from "../../observe/traces/zipkin.ts";
import type { ApiDeps } from "../deps.ts";
import { OneOf, telemetryTenant } from "../schemas.ts";
import { otlpBody, otlpRoutes, sendExported } from "./otlp.ts";

/** Largest ingest request, after decompression. */
const INGEST_BODY_LIMIT = 16 * 1024 * 1024;

const Duration = (description: string) => T.Optional(T.String({ maxLength: 20, description }));

const SearchQuery = T.Object(
  {
    service: T.Optional(
      T.String({
        maxLength: 200,
        description:
          "spans of this service and of requests sent to it (app/service: the gateway's spans of requests routed to it)",
      }),
    ),
    app: T.Optional(
      T.String({
        maxLength: 100,
        description: "spans of this app's services and the gateway's spans of requests routed to them",
      }),
    ),
    route: T.Optional(T.String({ maxLength: 500, description: "http.route or span name" })),
    status: T.Optional(OneOf(["ok", "error"])),
    minDuration: Duration("e.g. 100ms, 2s"),
    since: Duration("how far back, e.g. 15m (default 1h)"),
    from: T.Optional(T.String({ format: "date-time" })),
    to: T.Optional(T.String({ format: "date-time" })),
    limit: T.Optional(T.Integer({ minimum: 1, maximum: 1000 })),
    tenant: T.Optional(
      T.String({ maxLength: 100, description: "only spans of this herd tenant (herd.tenant)" }),
    ),
  },
  { additionalProperties: false },
);
const WindowQuery = T.Object(
  {
    window: Duration("how far back, e.g. 15m (default 15m)"),
    by: T.Optional(OneOf(["calls", "latency", "time"])),
    limit: T.Optional(T.Integer({ minimum: 1, maximum: 1000 })),
    tenant: T.Optional(
      T.String({ maxLength: 100, description: "only spans of this herd tenant (herd.tenant)" }),
    ),
  },
  { additionalProperties: false },
);
const TraceParams = T.Object({ id: T.String({ pattern: "^(?:[0-9a-fA-F]{16}|[0-9a-fA-F]{32})$" }) });

/** A duration query parameter in µs; a 400 naming it when it is not one (or is 0, for a window). */
function durationParam(value: string | undefined, name: string, fallback: number, allowZero = false): number {
  if (value === undefined) return fallback;
  const us = parseDurationMicros(value);
  if (us === null || (us === 0 && !allowZero)) {
    const message = `must be a duration${allowZero ? "" : " above 0"} like 250ms, 2s, 15m or 1h`;
    throw invalid(`querystring.${name}: ${message}, got ${value}`, [
      { field: `querystring.${name}`, message },
    ]);
  }
  return us;
}

/**
 * The ingest endpoints, in their own plugin: they take the ingest token as
 * well as API tokens, read gzip/deflate bodies, and say 429 when full.
 */
export function traceIngestRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { traces } = deps;
  // OTel SDKs may gzip (OTEL_EXPORTER_OTLP_COMPRESSION=gzip); the body limit applies after inflating.
  api.addHook("preParsing", async (req, _reply, payload) => {
    const encoding = req.headers["content-encoding"];
    if (encoding !== "gzip" && encoding !== "deflate") return payload;
    const inflate = encoding === "gzip" ? createGunzip() : createInflate();
    // Registered before the body reader's listener, so its 400 names the problem.
    inflate.on("error", (err: Error & { statusCode?: number }) => {
      err.message = `the body is not valid ${encoding} (content-encoding: ${encoding}): ${err.message}`;
      err.statusCode = 400;
    });
    const inflated = payload.pipe(inflate) as Readable & {
      receivedEncodedLength?: number;
    };
    inflated.receivedEncodedLength = 0;
    payload.on("data", (chunk: Buffer) => {
      inflated.receivedEncodedLength = (inflated.receivedEncodedLength ?? 0) + chunk.length;
    });
    payload.on("error", (err) => inflated.destroy(err));
    return inflated;
  });
  // OTLP protobuf bodies are read as bytes and decoded by the route (otlp.ts: otlpBody).
  api.addContentTypeParser(
    ["application/x-protobuf", "application/protobuf"],
    { parseAs: "buffer" },
    (_req, body, done) => done(null, body),
  );

  /** Stores or refuses (429, Retry-After) a parsed batch of `count` spans. */
  const accept = (reply: FastifyReply, count: number, stored: boolean, ok: () => unknown) => {
    if (stored) return ok();
    const wait = traces.store.retryAfterSeconds();
    return reply
      .code(429)
      .header("retry-after", String(wait))
      .send({
        code: "too_many_requests",
        message: `span ingest queue is full: ${count} spans refused, retry after ${wait}s`,
      });
  };
  /**
   * Spans sent with a tenant's credential (an ingest token, a member's token,
   * or a platform admin naming a tenant) are that tenant's, whatever their
   * `herd.tenant` resource attribute says; a platform admin naming none sends them as they are.
   */
  const acceptSpans = (req: FastifyRequest, reply: FastifyReply, spans: Span[], ok: () => unknown) => {
    const tenant = telemetryTenant(req);
    if (tenant !== undefined) for (const s of spans) s.tenant = tenant;
    return accept(reply, spans.length, traces.recordSpans(spans), ok);
  };

  api.post(
    "/traces/otlp/v1/traces",
    {
      bodyLimit: INGEST_BODY_LIMIT,
      schema: {
        summary: "Ingest spans as OTLP/HTTP JSON or protobuf (an ExportTraceServiceRequest)",
        description:
          "The traces-only path of /api/v1/otlp/v1/traces, kept for senders set up with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT. 429 with Retry-After when the ingest queue is full.",
        tags: ["traces"],
      },
    },
    async (req, reply) =>
      acceptSpans(req, reply, parseOtlpTraces(otlpBody("traces", req)), () =>
        sendExported("traces", req, reply),
      ),
  );

  api.post(
    "/traces/zipkin/api/v2/spans",
    {
      bodyLimit: INGEST_BODY_LIMIT,
      schema: {
        summary: "Ingest spans as Zipkin v2 JSON (an array of spans)",
        tags: ["traces"],
      },
    },
    async (req, reply) => acceptSpans(req, reply, parseZipkinSpans(req.body), () => reply.code(202).send()),
  );

  api.post(
    "/traces/gateway",
    {
      bodyLimit: INGEST_BODY_LIMIT,
      schema: {
        summary: "Ingest the gateway's spans (herd's compact batch; see observe/traces/gateway-batch.ts)",
        description:
          "What `herd gateway` posts: one compact JSON batch of its request spans. Apps send OTLP or Zipkin instead.",
        tags: ["traces"],
      },
    },
    async (req, reply) => {
      const rows = parseGatewayBatch(req.body);
      return accept(reply, rows.length, traces.store.recordColumns(rows), () => reply.code(202).send());
    },
  );

  otlpRoutes(api, deps);
}

/**
 * Runs a trace query in a worker (observe/traces/query-worker.ts) and sends
 * its JSON: 503 after the timeout or when too many queries wait (429 when it
 * is the tenant's share of the line), with Retry-After.
 */
async function sendQuery(
  reply: FastifyReply,
  traces: ApiDeps["traces"],
  job: TraceJob,
  tenant: string | undefined,
  ok: (json: string) => unknown = (json) => reply.type("application/json").send(json),
): Promise<unknown> {
  let json: string;
  try {
    json = await traces.queries.run(job, tenant ?? "");
  } catch (err) {
    if (err instanceof QueryTimeoutError) throw new HerdError("unavailable", err.message);
    if (err instanceof QueryBusyError) {
      reply.header("retry-after", "1");
      throw new HerdError(err.status === 429 ? "too_many" : "unavailable", err.message);
    }
    throw err;
  }
  return ok(json);
}

/** Search, one trace, the dependency map, Top-N and the store's counters. */
export function traceRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { traces } = deps;
  const nowMicros = () => Date.now() * 1000;

  api.get(
    "/traces",
    {
      schema: {
        summary: "Search traces: those with a span matching every filter, newest first",
        tags: ["traces"],
        querystring: SearchQuery,
      },
    },
    async (req, reply) => {
      const q = req.query as {
        service?: string;
        app?: string;
        route?: string;
        status?: "ok" | "error";
        minDuration?: string;
        since?: string;
        from?: string;
        to?: string;
        limit?: number;
        tenant?: string;
      };
      const to = q.to ? Date.parse(q.to) * 1000 : nowMicros();
      const from = q.from ? Date.parse(q.from) * 1000 : to - durationParam(q.since, "since", 3600e6);
      const tenant = telemetryTenant(req);
      const query: TraceSearch = {
        service: q.service,
        app: q.app,
        route: q.route,
        status: q.status,
        minDuration:
          q.minDuration === undefined ? undefined : durationParam(q.minDuration, "minDuration", 0, true),
        from,
        to,
        limit: q.limit ?? 20,
        tenant,
      };
      return sendQuery(reply, traces, { kind: "search", query }, tenant);
    },
  );

  api.get(
    "/traces/map",
    {
      schema: {
        summary: "Service dependency map: services, calls between them (rate, errors, p50/p99 in µs), cycles",
        tags: ["traces"],
        querystring: WindowQuery,
      },
    },
    async (req, reply) => {
      const q = req.query as { window?: string; tenant?: string };
      const to = nowMicros();
      const from = to - durationParam(q.window, "window", 15 * 60e6);
      const tenant = telemetryTenant(req);
      return sendQuery(reply, traces, { kind: "map", from, to, tenant }, tenant);
    },
  );

  api.get(
    "/traces/top",
    {
      schema: {
        summary: "Top-N services and routes by calls, p99 latency or total time spent (µs)",
        tags: ["traces"],
        querystring: WindowQuery,
      },
    },
    async (req, reply) => {
      const q = req.query as { window?: string; by?: TopBy; limit?: number; tenant?: string };
      const to = nowMicros();
      const from = to - durationParam(q.window, "window", 15 * 60e6);
      const tenant = telemetryTenant(req);
      const job: TraceJob = { kind: "top", from, to, by: q.by ?? "calls", limit: q.limit ?? 10, tenant };
      return sendQuery(reply, traces, job, tenant);
    },
  );

  api.get(
    "/traces/stats",
    { schema: { summary: "Span store and forwarder counters", tags: ["traces"] } },
    async () => ({ store: traces.store.stats(), forwarder: traces.forwarder?.stats() ?? null }),
  );

  api.get(
    "/traces/:id",
    {
      schema: {
        summary: "One trace as a tree of spans with offsets and durations (µs)",
        tags: ["traces"],
        params: TraceParams,
      },
    },
    async (req, reply) => {
      const raw = (req.params as { id: string }).id.toLowerCase();
      const id = raw.length === 16 ? `0000000000000000${raw}` : raw;
      const tenant = telemetryTenant(req);
      // The worker keeps a tenant's own spans of the trace only; none at all is a 404.
      return sendQuery(reply, traces, { kind: "trace", id, tenant }, tenant, (json) => {
        if (json === "null") throw notFound(`no trace ${id} (it may be older than the retention)`);
        return reply.type("application/json").send(json);
      });
    },
  );
}
