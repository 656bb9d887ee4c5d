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
 * Spans are handed to a SpanSink (an OtlpForwarder posting to the control
 * plane's OTLP ingest from the gateway's processes) in batches; a request
 * whose incoming traceparent is not sampled, or that the sample rate leaves
 * out, records nothing but still gets a traceparent.
 */

import { OtlpForwarder } from "../observe/traces/forwarder.ts";
import type { Span, SpanSink } from "../observe/traces/span.ts";
import { newSpanId, newTraceId, parseTraceparent } from "../observe/traces/trace-context.ts";
import type { Series } from "./metrics.ts";

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

/** Spans recorded per batch handed to the sink. */
const BATCH = 256;

export class GatewaySpans {
  readonly #sink: SpanSink;
  readonly #sample: number;
  #batch: Span[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** Spans the sink refused. */
  dropped = 0;

  /** `sample`: the share of new traces recorded (0..1); an incoming trace's sampled flag decides for it. */
  constructor(sink: SpanSink, sample = 1) {
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
   * reached an upstream (`upstreamMs` from sending to the end of the answer).
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
    upstream: { instance: string; startMs: number } | null,
  ): void {
    if (!hop.recorded) return;
    const [tenant, app, service] = series.service === "" ? [] : series.service.split("/");
    const error = status >= 500 || status === 0;
    const attributes: Span["attributes"] = {
      "http.route": series.route,
      "http.request.method": method,
      "http.response.status_code": status,
      "herd.outcome": outcome,
    };
    this.#push({
      traceId: hop.traceId,
      spanId: hop.spanId,
      parentId: hop.parentId,
      service: "gateway",
      name: `${method} ${series.route}`,
      kind: "server",
      start: micros(startMs),
      duration: Math.max(0, Math.round((endMs - startMs) * 1000)),
      status: error ? "error" : "ok",
      statusCode: status,
      attributes,
      ...(app ? { app, tenant } : {}),
    });
    if (upstream === null || !app) return;
    this.#push({
      traceId: hop.traceId,
      spanId: hop.clientId,
      parentId: hop.spanId,
      service: "gateway",
      name: `${method} ${app}/${service}`,
      kind: "client",
      start: micros(upstream.startMs),
      duration: Math.max(0, Math.round((endMs - upstream.startMs) * 1000)),
      status: error ? "error" : "ok",
      statusCode: status,
      attributes: {
        "peer.service": `${app}/${service}`,
        "http.route": series.route,
        "herd.instance": upstream.instance,
      },
      app,
      tenant,
    });
  }

  /** Hands what is batched to the sink now (also every second). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#batch.length === 0) return;
    const batch = this.#batch;
    this.#batch = [];
    if (!this.#sink.recordSpans(batch)) this.dropped += batch.length;
  }

  #push(span: Span): void {
    this.#batch.push(span);
    if (this.#batch.length >= BATCH) this.flush();
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), 1000);
      this.#timer.unref();
    }
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
  const forwarder = new OtlpForwarder({
    url: `${server.replace(/\/+$/, "")}/api/v1/traces/otlp/v1/traces`,
    headers: { authorization: `Bearer ${token}` },
    batchSpans: 1000,
    maxPendingSpans: 20_000,
  });
  const spans = new GatewaySpans(forwarder, sample);
  return {
    spans,
    close: async () => {
      spans.flush();
      await forwarder.close(1000);
    },
  };
}
