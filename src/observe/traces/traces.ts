/**
 * The traces part of the control plane: the span store, the optional OTLP
 * forwarder and the ingest token, opened together from the data dir.
 *
 *   <data>/traces/spans.db      the spans (SpanStore)
 *   <data>/traces/ingest-token  a secret that may only send spans (mode 0600)
 */

import { randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Clock } from "../../common/clock.ts";
import type { UrlGuard } from "../../common/url-guard.ts";
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
  /** Checks the forward URL's address (default: no internal address allowed). */
  forwardGuard?: UrlGuard;
  /** Ingest queue bounds (see SpanStoreOptions). */
  maxQueueSpans?: number;
  maxQueueBytes?: number;
  /** See SpanStoreOptions.flushMs. */
  flushMs?: number;
}

export class Traces implements SpanSink {
  readonly store: SpanStore;
  readonly forwarder: OtlpForwarder | undefined;
  /** The secret in `ingest-token`: accepted by the ingest endpoints only. */
  readonly ingestToken: string;
  readonly ingestTokenFile: string;

  constructor(dir: string, clock: Clock, options: TracesOptions = {}) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.forwarder = options.forwardUrl
      ? new OtlpForwarder({
          url: options.forwardUrl,
          headers: options.forwardHeaders,
          guard: options.forwardGuard,
        })
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
    this.ingestTokenFile = join(dir, "ingest-token");
    if (existsSync(this.ingestTokenFile))
      this.ingestToken = readFileSync(this.ingestTokenFile, "utf8").trim();
    else {
      this.ingestToken = `herd_ingest_${randomBytes(24).toString("base64url")}`;
      writeFileSync(this.ingestTokenFile, `${this.ingestToken}\n`, { mode: 0o600 });
    }
  }

  /** The in-process sink (the gateway's spans): false when the ingest queue is full. */
  recordSpans(spans: readonly Span[]): boolean {
    return this.store.recordSpans(spans);
  }

  /** Whether `secret` is the ingest token (constant time). */
  isIngestToken(secret: string): boolean {
    const a = Buffer.from(secret);
    const b = Buffer.from(this.ingestToken);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  async close(): Promise<void> {
    this.store.close();
    await this.forwarder?.close();
  }
}
