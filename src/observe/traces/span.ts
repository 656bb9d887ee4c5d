/**
 * The one span shape herd keeps, whatever protocol it came in by (OTLP/HTTP
 * JSON, Zipkin v2 JSON, or the gateway in-process), and the sink every
 * producer hands spans to.
 *
 *   OTLP JSON ─┐
 *   Zipkin v2 ─┼─► Span[] ─► SpanSink.recordSpans ─► SpanStore (and the forwarder)
 *   gateway  ──┘
 */

/** What a span measures, lower case (OTLP's SPAN_KIND_SERVER is `server`). */
export type SpanKind = "unspecified" | "internal" | "server" | "client" | "producer" | "consumer";

export const SPAN_KINDS: readonly SpanKind[] = [
  "unspecified",
  "internal",
  "server",
  "client",
  "producer",
  "consumer",
];

/** Attribute values after flattening (arrays and maps become JSON text). */
export type AttributeValue = string | number | boolean;

/** A normalized span. Times are integer microseconds since the Unix epoch. */
export interface Span {
  /** 32 lower-case hex characters (a 64-bit Zipkin id is left-padded with zeros). */
  traceId: string;
  /** 16 lower-case hex characters. */
  spanId: string;
  /** The parent's spanId; null for a root span. */
  parentId: string | null;
  /** The service that recorded the span (OTLP `service.name`, Zipkin `localEndpoint.serviceName`). */
  service: string;
  name: string;
  kind: SpanKind;
  /** Start, µs since the epoch. */
  start: number;
  /** µs. */
  duration: number;
  /** `error` when the span says so (OTLP status ERROR, Zipkin `error` tag, or an HTTP status ≥ 500). */
  status: "ok" | "error";
  /** The HTTP status code, when the span carries one (`http.status_code` / `http.response.status_code`). */
  statusCode: number | null;
  /** OTLP status message or Zipkin `error` tag, when there is one. */
  statusMessage?: string;
  /** Includes `http.route`, `http.status_code`, `peer.service` when known. */
  attributes: Record<string, AttributeValue>;
  /** The herd app and tenant, when known (resource attributes `herd.app`, `herd.tenant`). */
  app?: string;
  tenant?: string;
}

/**
 * Where producers hand spans. Returns false when the spans were not taken
 * (the ingest queue is full): the caller drops them or retries later; it must
 * never block on the sink.
 */
export interface SpanSink {
  recordSpans(spans: readonly Span[]): boolean;
}

/** The route a span counts under in Top-N and search: `http.route`, else its name. */
export function spanRoute(span: Span): string {
  const route = span.attributes["http.route"];
  return typeof route === "string" && route !== "" ? route : span.name;
}

/** The service a CLIENT/PRODUCER span calls, when it names one (`peer.service`, Zipkin remote endpoint). */
export function spanPeer(span: Span): string | null {
  const peer = span.attributes["peer.service"];
  return typeof peer === "string" && peer !== "" ? peer : null;
}

/** Whether the span is where a request enters its service: server/consumer spans and roots. */
export function isEntrySpan(kind: SpanKind, parentId: string | null): boolean {
  return kind === "server" || kind === "consumer" || parentId === null;
}

/** The HTTP status code in a span's attributes (old and new semantic conventions). */
export function httpStatusOf(attributes: Record<string, AttributeValue>): number | null {
  const v = attributes["http.status_code"] ?? attributes["http.response.status_code"];
  const n = typeof v === "string" ? Number(v) : v;
  return typeof n === "number" && Number.isInteger(n) && n >= 100 && n <= 999 ? n : null;
}

/** Rough size of a span in memory and on disk, for the ingest queue's byte bound. */
export function spanBytes(span: Span): number {
  let n = 160 + span.service.length + span.name.length;
  for (const k in span.attributes) {
    const v = span.attributes[k];
    n += k.length + (typeof v === "string" ? v.length : 8) + 8;
  }
  return n;
}

/**
 * Durations as people write them: `250us`, `100ms`, `1.5s`, `15m`, `2h`, `1d`;
 * a bare number is milliseconds. Returns µs, or null when it is not one.
 */
export function parseDurationMicros(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) return null;
  const scale = { us: 1, µs: 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6, d: 86400e6 }[m[2] ?? "ms"] ?? 1e3;
  return Math.round(Number(m[1]) * scale);
}

/** µs for people: `850µs`, `12ms`, `1.25s`, `3m20s`. */
export function formatMicros(us: number): string {
  if (us < 1000) return `${Math.round(us)}µs`;
  if (us < 10_000) return `${Number((us / 1000).toFixed(1))}ms`;
  if (us < 1_000_000) return `${Math.round(us / 1000)}ms`;
  if (us < 60_000_000) return `${Number((us / 1e6).toFixed(2))}s`;
  const s = Math.round(us / 1e6);
  return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ""}`;
}
