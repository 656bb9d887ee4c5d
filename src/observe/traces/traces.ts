/**
 * The traces part of the control plane: the span store, the optional OTLP
 * forwarder and the query workers, opened together from the data dir.
 *
 *   <data>/traces/spans.db      the spans (SpanStore; read by query-worker.ts threads)
 *
 * Apps send spans with their tenant's ingest token (api/ingest-tokens.ts).
 */

import { mkdirSync } from "node:fs";
import type { Clock } from "../../common/clock.ts";
import type { UrlGuard } from "../../common/url-guard.ts";
import { type QueryLimits, QueryPool } from "../query-pool.ts";
import { type DependencyMap, DependencyMapBuilder, type TopBy } from "./analysis.ts";
import type { EndpointQuery } from "./endpoint-figures.ts";
import { OtlpForwarder } from "./forwarder.ts";
import type { Span, SpanSink } from "./span.ts";
import { SpanStore, type SpanStoreOptions, type TraceSearch } from "./span-store.ts";

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
  /** Timeout and concurrency of trace queries (search, trace, map, Top-N). */
  query?: QueryLimits;
}

/** A trace query for a worker (query-worker.ts); times in µs; `tenant` limits it to one tenant's spans. */
export type TraceJob =
  | { kind: "search"; query: TraceSearch }
  | { kind: "trace"; id: string; tenant?: string }
  | { kind: "map"; from: number; to: number; tenant?: string }
  | { kind: "top"; from: number; to: number; by: TopBy; limit: number; tenant?: string }
  | { kind: "endpoints"; query: EndpointQuery };

/** A window with at most this many spans has its service map built in this thread (Traces.map): about 20 ms of the event loop with --small. */
export const INLINE_MAP_SPANS = 2_000;

export class Traces implements SpanSink {
  readonly store: SpanStore;
  readonly forwarder: OtlpForwarder | undefined;
  /** Where the API's trace queries run, off its event loop. */
  readonly queries: QueryPool;
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
    this.queries = new QueryPool(new URL("./query-worker.ts", import.meta.url), { dir }, options.query);
  }

  /** The in-process sink (the gateway's spans): false when the ingest queue is full. */
  recordSpans(spans: readonly Span[]): boolean {
    return this.store.recordSpans(spans);
  }

  /**
   * The service map of [from, to) (µs; one tenant's, or every tenant's) for
   * the control plane's own checks (dependency drift every 30 s, remediation
   * evidence). A window of few spans is scanned in this thread: a query
   * worker, once started, holds about 11 MB for the life of the process (V8
   * keeps a finished thread's pages for the next), and on an idle or small
   * platform these checks would be its only use. A busier window goes to a
   * worker, so that it does not hold the event loop.
   */
  async map(from: number, to: number, tenant?: string): Promise<DependencyMap> {
    if (this.store.count(from, to) > INLINE_MAP_SPANS) {
      return JSON.parse(
        await this.queries.run({ kind: "map", from, to, tenant }, tenant ?? ""),
      ) as DependencyMap;
    }
    const builder = new DependencyMapBuilder();
    this.store.scan(from, to, (row) => builder.add(row), { parents: true, tenant });
    return builder.result(from, to);
  }

  async close(): Promise<void> {
    await this.queries.close();
    this.store.close();
    await this.forwarder?.close();
  }
}
