/**
 * Spans of the gateway: every request it answers gets one SERVER span (the
 * gateway's hop, named after the route). A proxied one also names the
 * upstream service in `peer.service` and the instance in `herd.instance`,
 * and its id is the parent the upstream sees in `traceparent`, so the
 * dependency map shows gateway → service even for apps that send no spans of
 * their own. One span per request, as Envoy records, not a server and a
 * client span: the span store's work per request is halved.
 *
 *   incoming traceparent (trace T, parent P) ─► span S (parent P) ─► upstream: 00-T-S-flags
 *
 * Each recorded request's span is written as its row of the compact JSON
 * batch (observe/traces/gateway-batch.ts) when its response closes, so the
 * work is spread evenly; at flush the rows are joined into the batch for the
 * SpanShipper to post to the control plane. A request whose incoming traceparent is not sampled, or
 * that the sample rate leaves out, records nothing but still gets a
 * traceparent.
 */

import { serversOf } from "../common/server-list.ts";
import { newSpanId, newTraceId, parseTraceparent } from "../observe/traces/trace-context.ts";
import type { Series } from "./metrics.ts";
import { SpanShipper } from "./span-shipper.ts";

/** One request's place in its trace. */
export interface TraceHop {
  traceId: string;
  /** The caller's span id, null when the request started the trace here. */
  parentId: string | null;
  /** The gateway's span: the parent the upstream sees. */
  spanId: string;
  /** Whether a span is recorded for it (the incoming sampled flag and the sample rate). */
  recorded: boolean;
  /** The flags byte as sent, "01" or "00". */
  flags: string;
}

/** Requests recorded before their spans are handed on. */
const BATCH = 512;

/** Takes a gateway batch (gateway-batch.ts) as JSON text, with its span count. */
export interface SpanBatchSink {
  postBatch(body: string, spans: number): boolean;
}

export class GatewaySpans {
  readonly #sink: SpanBatchSink;
  readonly #sample: number;
  /**
   * The batch's spans, each written as its JSON row when recorded: the work
   * is spread over the requests, so a flush only joins them (a batch written
   * out whole at flush blocked the event loop for about 0.3–1 ms every 512
   * requests, which the requests arriving meanwhile waited for).
   */
  #spans: string[] = [];
  /** The batch's series, as JSON rows, and each one's place in it. */
  #series: string[] = [];
  #seriesIndex = new Map<Series, number>();
  #timer: NodeJS.Timeout | undefined;
  /** Each series' entry of the batch's `series` list, made once per series. */
  readonly #seriesJson = new Map<Series, string>();
  /** Spans the sink refused. */
  dropped = 0;

  /** `sample`: the share of new traces recorded (0..1); an incoming trace's sampled flag decides for it. */
  constructor(sink: SpanBatchSink, sample = 1) {
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
      recorded,
      flags: recorded ? "01" : "00",
    };
  }

  /**
   * Records a request's span; `upstreamInstance` is where it was proxied
   * (null: it reached none). Times are performance.now() milliseconds.
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
    let at = this.#seriesIndex.get(series);
    if (at === undefined) {
      at = this.#series.length;
      this.#seriesIndex.set(series, at);
      this.#series.push(this.#json(series));
    }
    const duration = Math.max(0, Math.round((endMs - startMs) * 1000));
    // Methods are HTTP tokens and outcomes are constants: neither needs escaping.
    this.#spans.push(
      `["${hop.traceId}","${hop.spanId}","${hop.parentId ?? ""}",${at},"${method}",${status},"${outcome}",${micros(startMs)},${duration},${upstreamInstance === null ? '""' : JSON.stringify(upstreamInstance)}]`,
    );
    if (this.#spans.length >= BATCH) this.flush();
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), 1000);
      this.#timer.unref();
    }
  }

  /** Hands what is recorded to the sink now (also every second, and every BATCH requests). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const spans = this.#spans;
    if (spans.length === 0) return;
    const body = `{"series":[${this.#series.join(",")}],"spans":[${spans.join(",")}]}`;
    this.#spans = [];
    this.#series = [];
    this.#seriesIndex = new Map();
    if (!this.#sink.postBatch(body, spans.length)) this.dropped += spans.length;
  }

  /** `[route, tenant, app, service]` of a series, as JSON. */
  #json(series: Series): string {
    let j = this.#seriesJson.get(series);
    if (j === undefined) {
      const [tenant = "", app = "", service = ""] = series.service === "" ? [] : series.service.split("/");
      const row = [series.route, tenant, app, service];
      if (series.caller !== "") row.push(series.caller);
      j = JSON.stringify(row);
      // Series live as long as their route; a table rebuild may retire some, so the cache is bounded.
      if (this.#seriesJson.size > 10_000) this.#seriesJson.clear();
      this.#seriesJson.set(series, j);
    }
    return j;
  }
}

/** The traceparent the upstream gets: the trace, the gateway's span, the flags. */
export function upstreamTraceparent(hop: TraceHop): string {
  return `00-${hop.traceId}-${hop.spanId}-${hop.flags}`;
}

/** performance.now() milliseconds → µs since the epoch. */
function micros(ms: number): number {
  return Math.round((performance.timeOrigin + ms) * 1000);
}

/** Spans shipped to the control plane's gateway span ingest with the gateway's token, batched and bounded. */
export function shipSpans(
  server: string,
  token: string,
  sample: number,
): { spans: GatewaySpans; close(): Promise<void> } {
  const servers = serversOf(server);
  const shipper = new SpanShipper(() => `${servers.url}/api/v1/traces/gateway`, token);
  const spans = new GatewaySpans(shipper, sample);
  return {
    spans,
    close: async () => {
      spans.flush();
      await shipper.close(1000);
    },
  };
}
