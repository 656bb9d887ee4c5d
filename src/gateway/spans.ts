/**
 * Spans of the gateway: every request it answers gets a SERVER span (the
 * gateway's hop, named after the route), and one it proxies also a CLIENT span
 * under it naming the upstream service in `peer.service`, whose id is the
 * parent the upstream sees in `traceparent`. So the dependency map shows
 * gateway → service even for apps that send no spans of their own.
 *
 *   incoming traceparent (trace T, parent P) ─► server span S (parent P) ─► client span C (parent S)
 *                                                                            └─► upstream: 00-T-C-flags
 *
 * Per request only a row of primitives and references is kept (the hop, the
 * route's Series, method, status, outcome, times, instance); the spans are
 * made when a batch is flushed: written straight as OTLP/HTTP JSON text for
 * the OtlpShipper posting to the control plane's ingest (span-shipper.ts), or
 * as Span objects for an in-process SpanSink. A request whose incoming
 * traceparent is not sampled, or that the sample rate leaves out, records
 * nothing but still gets a traceparent.
 */

import type { Span, SpanSink } from "../observe/traces/span.ts";
import { newSpanId, newTraceId, parseTraceparent } from "../observe/traces/trace-context.ts";
import type { Series } from "./metrics.ts";
import { OtlpShipper } from "./span-shipper.ts";

/** One request's place in its trace. */
export interface TraceHop {
  traceId: string;
  /** The caller's span id, null when the request started the trace here. */
  parentId: string | null;
  /** The gateway's server span. */
  spanId: string;
  /** The gateway's client span: the parent the upstream sees. */
  clientId: string;
  /** Whether spans are recorded for it (the incoming sampled flag and the sample rate). */
  recorded: boolean;
  /** The flags byte as sent, "01" or "00". */
  flags: string;
}

/** Requests recorded before their spans are handed on (two spans each, at most). */
const BATCH = 256;
/** Values kept per recorded request in GatewaySpans' flat buffer (times go to a Float64Array). */
const ROW = 6;

/**
 * Takes OTLP/HTTP JSON export bodies made at flush time (the shipping path:
 * no Span objects, no JSON.stringify of nested objects per span).
 */
export interface OtlpBodySink {
  postOtlp(body: string, spans: number): boolean;
}

/** JSON fragments of one Series (route × service), made once per series at flush time. */
interface SeriesJson {
  /** The route as the inside of a JSON string. */
  route: string;
  /** `herd.app` and `herd.tenant` resource key ("" for no service). */
  resourceKey: string;
  resource: string;
  /** The client span's name suffix and peer.service, inside a JSON string (`app/service`). */
  peer: string;
}

export class GatewaySpans {
  readonly #sink: SpanSink | OtlpBodySink;
  readonly #sample: number;
  /**
   * Recorded requests, ROW values each: hop, series, method, status, outcome,
   * upstream instance (null: no client span); their start and end times in
   * `#times` (unboxed). References and small integers only: the spans are
   * built when flushed, not per request.
   */
  #rows: unknown[] = [];
  #times = new Float64Array(BATCH * 2);
  #timer: NodeJS.Timeout | undefined;
  readonly #seriesJson = new Map<Series, SeriesJson>();
  /** Spans the sink refused. */
  dropped = 0;

  /** `sample`: the share of new traces recorded (0..1); an incoming trace's sampled flag decides for it. */
  constructor(sink: SpanSink | OtlpBodySink, sample = 1) {
    this.#sink = sink;
    this.#sample = sample;
  }

  /** Where a request with this incoming traceparent (or none) stands. */
  hop(incoming: string | undefined): TraceHop {
    const context = parseTraceparent(incoming);
    const recorded = context !== null ? context.sampled : this.#sample >= 1 || Math.random() < this.#sample;
    return {
      traceId: context?.traceId ?? newTraceId(),
      parentId: context?.parentId ?? null,
      spanId: newSpanId(),
      clientId: newSpanId(),
      recorded,
      flags: recorded ? "01" : "00",
    };
  }

  /**
   * Records a request's spans: the server span, and the client span when it
   * reached an upstream instance (from `startMs` to the end of the answer).
   * Times are performance.now() milliseconds.
   */
  record(
    hop: TraceHop,
    series: Series,
    method: string,
    status: number,
    outcome: string,
    startMs: number,
    endMs: number,
    upstreamInstance: string | null,
  ): void {
    if (!hop.recorded) return;
    const rows = this.#rows;
    const at = (rows.length / ROW) * 2;
    this.#times[at] = startMs;
    this.#times[at + 1] = endMs;
    rows.push(hop, series, method, status, outcome, upstreamInstance);
    if (rows.length >= BATCH * ROW) this.flush();
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), 1000);
      this.#timer.unref();
    }
  }

  /** Hands what is recorded to the sink now (also every second, and every BATCH requests). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#rows.length === 0) return;
    const rows = this.#rows;
    const times = this.#times;
    this.#rows = [];
    if ("postOtlp" in this.#sink) {
      const { body, spans } = this.#otlpBody(rows, times);
      if (!this.#sink.postOtlp(body, spans)) this.dropped += spans;
      return;
    }
    const spans = this.#spanObjects(rows, times);
    if (!this.#sink.recordSpans(spans)) this.dropped += spans.length;
  }

  #json(series: Series): SeriesJson {
    let j = this.#seriesJson.get(series);
    if (j === undefined) {
      const [tenant = "", app = "", service = ""] = series.service === "" ? [] : series.service.split("/");
      const inner = (v: string) => JSON.stringify(v).slice(1, -1);
      const attr = (key: string, value: string) =>
        `{"key":"${key}","value":{"stringValue":"${inner(value)}"}}`;
      j = {
        route: inner(series.route),
        resourceKey: app ? `${app}\0${tenant}` : "",
        resource: `{"attributes":[${[
          attr("service.name", "gateway"),
          ...(app ? [attr("herd.app", app), attr("herd.tenant", tenant)] : []),
        ].join(",")}]}`,
        peer: app ? inner(`${app}/${service}`) : "",
      };
      // Series live as long as their route; a table rebuild may retire some, so the cache is bounded.
      if (this.#seriesJson.size > 10_000) this.#seriesJson.clear();
      this.#seriesJson.set(series, j);
    }
    return j;
  }

  /** An OTLP/HTTP JSON export request, written as text: one resource per (app, tenant). */
  #otlpBody(rows: unknown[], times: Float64Array): { body: string; spans: number } {
    const groups = new Map<string, { resource: string; spans: string[] }>();
    let count = 0;
    for (let i = 0; i < rows.length; i += ROW) {
      const hop = rows[i] as TraceHop;
      const j = this.#json(rows[i + 1] as Series);
      const method = rows[i + 2] as string;
      const status = rows[i + 3] as number;
      const outcome = rows[i + 4] as string;
      const t = (i / ROW) * 2;
      const start = micros(times[t] as number);
      const end = micros(times[t + 1] as number);
      const instance = rows[i + 5] as string | null;
      let g = groups.get(j.resourceKey);
      if (g === undefined) {
        g = { resource: j.resource, spans: [] };
        groups.set(j.resourceKey, g);
      }
      const error = status >= 500 || status === 0;
      const timeJson = `"startTimeUnixNano":"${start}000","endTimeUnixNano":"${Math.max(start, end)}000"`;
      const state = error ? `{"code":2,"message":""}` : `{"code":0}`;
      // Methods are HTTP tokens and outcomes are constants: neither needs escaping.
      g.spans.push(
        `{"traceId":"${hop.traceId}","spanId":"${hop.spanId}","parentSpanId":"${hop.parentId ?? ""}","name":"${method} ${j.route}","kind":2,${timeJson},"attributes":[{"key":"http.route","value":{"stringValue":"${j.route}"}},{"key":"http.request.method","value":{"stringValue":"${method}"}},{"key":"http.response.status_code","value":{"intValue":"${status}"}},{"key":"herd.outcome","value":{"stringValue":"${outcome}"}}],"status":${state}}`,
      );
      count++;
      if (instance === null || j.peer === "") continue;
      g.spans.push(
        `{"traceId":"${hop.traceId}","spanId":"${hop.clientId}","parentSpanId":"${hop.spanId}","name":"${method} ${j.peer}","kind":3,${timeJson},"attributes":[{"key":"peer.service","value":{"stringValue":"${j.peer}"}},{"key":"http.route","value":{"stringValue":"${j.route}"}},{"key":"herd.instance","value":{"stringValue":${JSON.stringify(instance)}}}],"status":${state}}`,
      );
      count++;
    }
    const resourceSpans: string[] = [];
    for (const g of groups.values()) {
      resourceSpans.push(
        `{"resource":${g.resource},"scopeSpans":[{"scope":{"name":"herd"},"spans":[${g.spans.join(",")}]}]}`,
      );
    }
    return { body: `{"resourceSpans":[${resourceSpans.join(",")}]}`, spans: count };
  }

  /** The same spans as Span objects, for an in-process sink. */
  #spanObjects(rows: unknown[], times: Float64Array): Span[] {
    const out: Span[] = [];
    for (let i = 0; i < rows.length; i += ROW) {
      const hop = rows[i] as TraceHop;
      const series = rows[i + 1] as Series;
      const method = rows[i + 2] as string;
      const status = rows[i + 3] as number;
      const outcome = rows[i + 4] as string;
      const t = (i / ROW) * 2;
      const startMs = times[t] as number;
      const endMs = times[t + 1] as number;
      const instance = rows[i + 5] as string | null;
      const [tenant, app, service] = series.service === "" ? [] : series.service.split("/");
      const error = status >= 500 || status === 0;
      const start = micros(startMs);
      const duration = Math.max(0, Math.round((endMs - startMs) * 1000));
      out.push({
        traceId: hop.traceId,
        spanId: hop.spanId,
        parentId: hop.parentId,
        service: "gateway",
        name: `${method} ${series.route}`,
        kind: "server",
        start,
        duration,
        status: error ? "error" : "ok",
        statusCode: status,
        attributes: {
          "http.route": series.route,
          "http.request.method": method,
          "http.response.status_code": status,
          "herd.outcome": outcome,
        },
        ...(app ? { app, tenant } : {}),
      });
      if (instance === null || !app) continue;
      out.push({
        traceId: hop.traceId,
        spanId: hop.clientId,
        parentId: hop.spanId,
        service: "gateway",
        name: `${method} ${app}/${service}`,
        kind: "client",
        start,
        duration,
        status: error ? "error" : "ok",
        statusCode: status,
        attributes: {
          "peer.service": `${app}/${service}`,
          "http.route": series.route,
          "herd.instance": instance,
        },
        app,
        tenant,
      });
    }
    return out;
  }
}

/** The traceparent the upstream gets: the trace, the gateway's client span, the flags. */
export function upstreamTraceparent(hop: TraceHop): string {
  return `00-${hop.traceId}-${hop.clientId}-${hop.flags}`;
}

/** performance.now() milliseconds → µs since the epoch. */
function micros(ms: number): number {
  return Math.round((performance.timeOrigin + ms) * 1000);
}

/** Spans shipped to the control plane's OTLP ingest with the gateway's token, batched and bounded. */
export function shipSpans(
  server: string,
  token: string,
  sample: number,
): { spans: GatewaySpans; close(): Promise<void> } {
  const shipper = new OtlpShipper(`${server.replace(/\/+$/, "")}/api/v1/traces/otlp/v1/traces`, token);
  const spans = new GatewaySpans(shipper, sample);
  return {
    spans,
    close: async () => {
      spans.flush();
      await shipper.close(1000);
    },
  };
}
