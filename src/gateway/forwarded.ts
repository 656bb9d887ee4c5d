/**
 * Headers on the way through: one pass over a request's raw headers finds
 * what the gateway needs (Host, body framing, Connection, X-Forwarded-For,
 * traceparent) and builds the upstream's header list at the same time; one
 * pass over an upstream's raw response headers drops the hop-by-hop ones.
 * Header names are classified once per spelling, not lowercased per request.
 */

import type http from "node:http";
import { isIP, type Socket } from "node:net";
import { type GatewaySpans, type TraceHop, upstreamTraceparent } from "./spans.ts";
import { nextTraceparent } from "./traceparent.ts";

/** Headers that describe one connection, not the message; never forwarded (RFC 9110 §7.6.1). */
export const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

/** Headers the gateway sets itself; incoming copies are replaced (x-forwarded-for is appended to). */
const FORWARDED = new Set(["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]);

/** What a request or response header name is to the proxy (found once per spelling, see headerKind). */
const PASS = 0;
const HOP = 1;
const X_FORWARDED_FOR = 2;
/** X-Forwarded-Proto and X-Forwarded-Host: replaced by the gateway's own. */
const X_FORWARDED_OTHER = 3;
const HOST = 4;
const CONTENT_LENGTH = 5;
/** Hop-by-hop, but the proxy reads its value. */
const TRANSFER_ENCODING = 6;
/** Hop-by-hop, but the proxy reads its value. */
const CONNECTION = 7;
/** traceparent: replaced by the gateway's own hop (traceparent.ts). */
const TRACEPARENT = 8;
/** X-Consumer-Name: set only by the gateway (auth.ts); a client's copy is dropped on every route. */
const CONSUMER_NAME = 9;
/** Idempotency-Key: passed on; makes the request retryable. */
const IDEMPOTENCY_KEY = 10;
/** Expect: the gateway answers `100-continue` itself (Node's server does), so it is not passed on. */
const EXPECT = 11;

/** Header names as clients and upstreams spell them → their kind; the set of spellings in use is small. */
const headerKinds = new Map<string, number>();
/** Beyond this many spellings (a client sending random names), names are classified without caching. */
const HEADER_KINDS_MAX = 1024;

/** The kind of a header name, without lowercasing it again for a spelling seen before. */
function headerKind(name: string): number {
  let kind = headerKinds.get(name);
  if (kind === undefined) {
    const lower = name.toLowerCase();
    if (lower === "x-forwarded-for") kind = X_FORWARDED_FOR;
    else if (FORWARDED.has(lower)) kind = X_FORWARDED_OTHER;
    else if (lower === "host") kind = HOST;
    else if (lower === "content-length") kind = CONTENT_LENGTH;
    else if (lower === "transfer-encoding") kind = TRANSFER_ENCODING;
    else if (lower === "connection") kind = CONNECTION;
    else if (lower === "traceparent") kind = TRACEPARENT;
    else if (lower === "x-consumer-name") kind = CONSUMER_NAME;
    else if (lower === "idempotency-key") kind = IDEMPOTENCY_KEY;
    else if (lower === "expect") kind = EXPECT;
    else kind = HOP_BY_HOP.has(lower) ? HOP : PASS;
    if (headerKinds.size < HEADER_KINDS_MAX) headerKinds.set(name, kind);
  }
  return kind;
}

/** Where forwardedRequest writes what it finds: the request's state (exchange.ts's Exchange). */
export interface ForwardedRequest {
  /** The first Host header, as sent ("" when there is none). */
  host: string;
  /** More than one Host header: ambiguous, refused with 400 (as nginx does). */
  duplicateHost: boolean;
  /** Content-Length as a number; -1 when absent (chunked or no body). */
  contentLength: number;
  hasBody: boolean;
  /** The client sent an Idempotency-Key: it may be retried whatever its method. */
  idempotencyKey: boolean;
  /** The headers for the upstream, as a raw [name, value, …] list. */
  headers: string[];
  /** The request's place in its trace, when the gateway records spans. */
  hop: TraceHop | null;
}

/**
 * One pass over a request's raw headers: its Host, whether it has a body, and
 * the headers for the upstream as a raw [name, value, …] list, with hop-by-hop
 * headers dropped and X-Forwarded-* set, written into `into`. The body's
 * framing is left to the upstream pool (upstream-pool.ts chunks a body
 * without a length itself); an upgrade drops its body framing too, the tunnel carries
 * the bytes.
 */
export function forwardedRequest(
  into: ForwardedRequest,
  req: http.IncomingMessage,
  proto: "http" | "https",
  spans: GatewaySpans | null,
): void {
  const raw = req.rawHeaders;
  const out: string[] = [];
  let host: string | undefined;
  let duplicateHost = false;
  let contentLength: string | undefined;
  let chunked = false;
  let connection: string | undefined;
  let forwardedFor: string | undefined;
  let traceparent: string | undefined;
  let idempotencyKey = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const value = raw[i + 1];
    switch (headerKind(name)) {
      case PASS:
        out.push(name, value);
        break;
      case HOST:
        if (host !== undefined) duplicateHost = true;
        host ??= value;
        out.push(name, value);
        break;
      case CONTENT_LENGTH:
        // One length only: the parser has refused conflicting ones, and the upstream client refuses two.
        if (contentLength === undefined) out.push(name, value);
        contentLength ??= value;
        break;
      case TRANSFER_ENCODING:
        chunked = true;
        break;
      case CONNECTION:
        connection = connection === undefined ? value : `${connection}, ${value}`;
        break;
      case TRACEPARENT:
        traceparent ??= value;
        break;
      case X_FORWARDED_FOR:
        forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
        break;
      case IDEMPOTENCY_KEY:
        idempotencyKey = true;
        out.push(name, value);
        break;
      // HOP, EXPECT, CONSUMER_NAME and X_FORWARDED_OTHER are dropped.
    }
  }
  // Headers named in Connection are hop-by-hop too; the common values name none.
  if (connection !== undefined) dropListed(out, connection);
  const client = clientOf(req.socket);
  out.push(
    "X-Forwarded-For",
    forwardedFor === undefined ? client : `${forwardedFor}, ${client}`,
    "X-Forwarded-Proto",
    proto,
    "X-Forwarded-Host",
    host ?? "",
  );
  const hop = spans === null ? null : spans.hop(traceparent);
  out.push("traceparent", hop === null ? nextTraceparent(traceparent) : upstreamTraceparent(hop));
  into.host = host ?? "";
  into.duplicateHost = duplicateHost;
  // A chunked body's length is unknown even if a Content-Length came along (the parser lets TE win).
  into.contentLength = contentLength === undefined || chunked ? -1 : Number(contentLength);
  into.hasBody = chunked || (contentLength !== undefined && contentLength !== "0");
  into.idempotencyKey = idempotencyKey;
  into.headers = out;
  into.hop = hop;
}

/** Removes from a raw header list the headers a Connection header names. */
function dropListed(headers: string[], connection: string): void {
  const value = connection.toLowerCase();
  if (value === "keep-alive" || value === "close") return;
  const listed = value.split(/\s*,\s*/);
  let kept = 0;
  for (let i = 0; i < headers.length; i += 2) {
    if (listed.includes(headers[i].toLowerCase())) continue;
    headers[kept++] = headers[i];
    headers[kept++] = headers[i + 1];
  }
  headers.length = kept;
}

/** Where responseHeaders writes the body's framing: the exchange (exchange.ts). */
export interface ResponseFraming {
  /** The body's length from Content-Length; -1 when unknown (chunked, or until the connection closes). */
  bodyLeft: number;
}

/**
 * The upstream's response headers (raw [name, value, …] from the pool) without
 * hop-by-hop ones, as a raw list for writeHead; the body's length goes into `framing`.
 */
export function responseHeaders(raw: string[], framing: ResponseFraming): string[] {
  const out: string[] = [];
  let length = -1;
  let chunked = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const kind = headerKind(name);
    if (kind === TRANSFER_ENCODING) chunked = true;
    else if (kind !== HOP && kind !== CONNECTION) {
      const value = raw[i + 1];
      // One length only (the pool's parser refuses two that differ); digits only, or unknown.
      if (kind === CONTENT_LENGTH && length === -1 && DIGITS.test(value)) length = Number(value);
      out.push(name, value);
    }
  }
  framing.bodyLeft = chunked ? -1 : length;
  return out;
}

const DIGITS = /^\d{1,15}$/;

/** A client socket with its address as sent in X-Forwarded-For, worked out once per connection. */
interface ClientSocket extends Socket {
  herdClient?: string;
}

/** The client's address as apps see it (X-Forwarded-For, rate limits by address, stickiness by ip). */
export function clientOf(socket: Socket): string {
  const client = socket as ClientSocket;
  if (client.herdClient === undefined) client.herdClient = clientAddress(socket.remoteAddress);
  return client.herdClient;
}

function clientAddress(address: string | undefined): string {
  if (address === undefined) return "unknown";
  // IPv4 clients of a dual-stack socket appear as ::ffff:a.b.c.d; apps expect a.b.c.d.
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

/** Whether the connection comes from this machine's loopback (127.0.0.0/8 or ::1), whatever its Host header says. */
export function fromLoopback(socket: Socket): boolean {
  const address = clientOf(socket);
  return address === "::1" || (isIP(address) === 4 && address.startsWith("127."));
}

/** The status line and headers of `res` as raw HTTP/1.1 text, for a socket outside the HTTP server. */
export function rawHead(res: http.IncomingMessage, close: boolean): string {
  let head = `HTTP/1.1 ${res.statusCode} ${res.statusMessage}\r\n`;
  const raw = res.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    // Keep Connection/Upgrade on a 101; drop the body framing when relaying a decoded body until close.
    const name = raw[i].toLowerCase();
    if (close && HOP_BY_HOP.has(name)) continue;
    head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  if (close) head += "Connection: close\r\n";
  return `${head}\r\n`;
}
