/**
 * The traces part of the control plane: the span store and the optional OTLP
 * forwarder, opened together from the data dir.
 *
 *   <data>/traces/spans.db      the spans (SpanStore)
 *
 * Apps send spans with their tenant's ingest token (api/ingest-tokens.ts).
 */

import { mkdirSync } from "node:fs";
import type { Clock } from "../../common/clock.ts";
import { OtlpForwarder } from "./forwarder.ts";
import type { Span, SpanSink } from "./span.ts";
import { SpanStore, type SpanStoreOptions } from "./span-store.ts";

/** Settings of `herd server` for traces. */
export interface TracesOptions {
  /** Keep spans this long (default 24 h). */
  maxAgeMs?: number;
  /** Hard size limit of stored spans (default 512 MiB). */
  maxBytes?: number;
  /** Also send every span to this OTLP/HTTP endpoint (e.g. `http://collector:4318/v1/traces`). */
  forwardUrl?: string;
  /** Headers for the forward endpoint. */
  forwardHeaders?: Record<string, string>;
  /** Ingest queue bounds (see SpanStoreOptions). */
  maxQueueSpans?: number;
  maxQueueBytes?: number;
  /** See SpanStoreOptions.flushMs. */
  flushMs?: number;
}

export class Traces implements SpanSink {
  readonly store: SpanStore;
  readonly forwarder: OtlpForwarder | undefined;
  constructor(dir: string, clock: Clock, options: TracesOptions = {}) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.forwarder = options.forwardUrl
      ? new OtlpForwarder({ url: options.forwardUrl, headers: options.forwardHeaders })
      : undefined;
    const storeOptions: SpanStoreOptions = {
      dir,
      clock,
      maxAgeMs: options.maxAgeMs,
      maxBytes: options.maxBytes,
      maxQueueSpans: options.maxQueueSpans,
      maxQueueBytes: options.maxQueueBytes,
      flushMs: options.flushMs,
      forward: this.forwarder,
    };
    this.store = new SpanStore(storeOptions);
  }

  /** The in-process sink (the gateway's spans): false when the ingest queue is full. */
  recordSpans(spans: readonly Span[]): boolean {
    return this.store.recordSpans(spans);
  }

  async close(): Promise<void> {
    this.store.close();
    await this.forwarder?.close();
  }
}
