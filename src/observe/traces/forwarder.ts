/**
 * Forwarding spans to an OTLP/HTTP endpoint (a collector, Jaeger, Tempo…) as
 * OTLP JSON, through the batching, retrying, bounded BatchForwarder
 * (observe/batch-forwarder.ts).
 *
 * The same class serves any process that must ship spans to herd itself
 * (e.g. the gateway): point it at herd's OTLP ingest URL.
 */

import { BatchForwarder, type BatchForwarderOptions } from "../batch-forwarder.ts";
import { toOtlpJson } from "./otlp.ts";
import type { Span, SpanSink } from "./span.ts";

export interface OtlpForwarderOptions
  extends Omit<BatchForwarderOptions<Span>, "encode" | "batchSize" | "maxPending"> {
  /** Spans per request (default 500). */
  batchSpans?: number;
  /** Most spans waiting; beyond it the oldest are dropped (default 50,000). */
  maxPendingSpans?: number;
}

export class OtlpForwarder extends BatchForwarder<Span> implements SpanSink {
  constructor(options: OtlpForwarderOptions) {
    const { batchSpans, maxPendingSpans, headers, ...rest } = options;
    super({
      ...rest,
      headers: { "content-type": "application/json", ...headers },
      encode: (batch) => JSON.stringify(toOtlpJson(batch)),
      ...(batchSpans !== undefined ? { batchSize: batchSpans } : {}),
      ...(maxPendingSpans !== undefined ? { maxPending: maxPendingSpans } : {}),
    });
  }

  /** Queues spans; always takes them, dropping the oldest past the bound. */
  recordSpans(spans: readonly Span[]): boolean {
    return this.add(spans);
  }
}
