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
 * Per request only a row of primitives and references is kept (the hop, the
 * route's Series, method, status, outcome, times, instance); at flush the
 * rows are written straight as one compact JSON batch
 * (observe/traces/gateway-batch.ts) for the SpanShipper to post to the
 * control plane. A request whose incoming traceparent is not sampled, or
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
/** Values kept per recorded request in GatewaySpans' flat buffer (times go to a Float64Array). */
const ROW = 6;

/** Takes a gateway batch (gateway-batch.ts) as JSON text, with its span count. */
export interface SpanBatchSink {
  postBatch(body: string, spans: number): boolean;
}

export class GatewaySpans {
  readonly #sink: SpanBatchSink;
  readonly #sample: number;
  /**
   * Recorded requests, ROW values each: hop, series, method, status, outcome,
   * upstream instance (null: not proxied); their start and end times in
   * `#times` (unboxed). References and small integers only: the spans are
   * written when flushed, not per request.
   */
  #rows: unknown[] = new Array(BATCH * ROW).fill(null);
  /** Requests in `#rows` (the buffers are reused: a batch is written out as text at once). */
  #count = 0;
  readonly #times = new Float64Array(BATCH * 2);
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
    const rows = this.#rows;
    const n = this.#count++;
    const at = n * ROW;
    rows[at] = hop;
    rows[at + 1] = series;
    rows[at + 2] = method;
    rows[at + 3] = status;
    rows[at + 4] = outcome;
    rows[at + 5] = upstreamInstance;
    this.#times[n * 2] = startMs;
    this.#times[n * 2 + 1] = endMs;
    if (this.#count >= BATCH) this.flush();
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), 1000);
      this.#timer.unref();
    }
  }

  /** Hands what is recorded to the sink now (also every second, and every BATCH requests). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const spans = this.#count;
    if (spans === 0) return;
    const body = this.#batch(this.#rows, spans, this.#times);
    this.#count = 0;
    if (!this.#sink.postBatch(body, spans)) this.dropped += spans;
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

  /** The batch as JSON text, written directly: no objects per span. */
  #batch(rows: unknown[], count: number, times: Float64Array): string {
    const index = new Map<Series, number>();
    const series: string[] = [];
    const spans: string[] = [];
    for (let i = 0; i < count * ROW; i += ROW) {
      const hop = rows[i] as TraceHop;
      const one = rows[i + 1] as Series;
      let s = index.get(one);
      if (s === undefined) {
        s = series.length;
        index.set(one, s);
        series.push(this.#json(one));
      }
      const t = (i / ROW) * 2;
      const startMs = times[t] as number;
      const start = micros(startMs);
      const duration = Math.max(0, Math.round(((times[t + 1] as number) - startMs) * 1000));
      const instance = rows[i + 5] as string | null;
      // Methods are HTTP tokens and outcomes are constants: neither needs escaping.
      spans.push(
        `["${hop.traceId}","${hop.spanId}","${hop.parentId ?? ""}",${s},"${rows[i + 2]}",${rows[i + 3]},"${rows[i + 4]}",${start},${duration},${instance === null ? '""' : JSON.stringify(instance)}]`,
      );
    }
    return `{"series":[${series.join(",")}],"spans":[${spans.join(",")}]}`;
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
