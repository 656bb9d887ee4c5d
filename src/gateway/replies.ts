/**
 * The answers the gateway gives itself (errors, fallbacks, the status page),
 * on an HTTP response or, for a WebSocket upgrade, as raw bytes on the
 * socket; and how each is counted in the route's metrics and spans.
 */

import type http from "node:http";
import type { Duplex } from "node:stream";
import { nodeHttp } from "../common/node-http.ts";
import { DETACHED_INSTANCE } from "./load-recorder.ts";
import * as metrics from "./metrics.ts";
import type { TakeResult } from "./policies/token-bucket.ts";
import type { RouteLimit } from "./route-limit.ts";
import { normalizeHost } from "./route-match.ts";
import type { Backend, Fallback, RouteTable } from "./route-table.ts";
import type { GatewaySpans, TraceHop } from "./spans.ts";

/** A response whose request the gateway records spans of (spans.ts). */
interface TracedResponse extends http.ServerResponse {
  hop?: TraceHop;
  spans?: GatewaySpans;
}

/** Counts an answer the gateway gave itself (its status is on `res` once written). */
export function answered(
  series: metrics.Series,
  res: http.ServerResponse,
  outcome: number,
  start: number,
): void {
  const end = performance.now();
  series.record(res.statusCode, outcome, end - start);
  series.load?.finished(DETACHED_INSTANCE, res.statusCode, outcome, start, end);
  const { hop, spans } = res as TracedResponse;
  if (hop !== undefined && spans !== undefined) {
    spans.record(
      hop,
      series,
      (res.req as http.IncomingMessage).method ?? "GET",
      res.statusCode,
      metrics.OUTCOMES[outcome],
      start,
      end,
      null,
    );
  }
}

/** A JSON reply (errors are `{code, message}` like the control plane's). */
export function sendJson(res: http.ServerResponse, status: number, body: unknown, retryAfter?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  const headers: http.OutgoingHttpHeaders = {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  };
  if (retryAfter !== undefined) headers["retry-after"] = retryAfter;
  res.writeHead(status, headers);
  res.end(text);
}

/** The same `{code, message}` answer as raw HTTP/1.1 on a socket the HTTP server let go of (an upgrade). */
export function writeRawError(
  socket: Duplex,
  status: number,
  code: string,
  message: string,
  headers: readonly string[] | null = null,
): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ code, message });
  const reason = nodeHttp.STATUS_CODES[status] ?? "Error";
  let head = `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n`;
  if (headers !== null)
    for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  socket.end(`${head}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/** The route's degraded answer; `x-herd-fallback` says why it was given. */
export function sendFallback(res: http.ServerResponse, fallback: Fallback, reason: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(fallback.status, {
    "content-type": fallback.contentType,
    "content-length": fallback.body.length,
    "cache-control": "no-store",
    "x-herd-fallback": reason,
  });
  res.end(fallback.body);
}

/** Why no instance takes the request (503 unavailable). */
export function unavailableMessage(backend: Backend): string {
  return backend.down > 0
    ? `every instance of ${backend.name} fails its health probe`
    : `no running instance of ${backend.name}`;
}

/** Why no route takes the request (404 not_found): a host nothing serves, or a path on a host that is served. */
export function missMessage(table: RouteTable, host: string, url: string): string {
  const name = normalizeHost(host);
  return table.servesHost(host)
    ? `no app serves path ${url.split("?")[0]} on host ${name}`
    : `no app serves host ${name}`;
}

/** The IETF RateLimit headers of a refusal (limit, remaining, reset in seconds), as a raw [name, value, …] list. */
export function rateLimitHeaders(limit: RouteLimit, verdict: TakeResult): string[] {
  return [
    "RateLimit-Policy",
    `${limit.burst};w=${Math.max(1, Math.round(limit.burst / limit.rate))}`,
    "RateLimit",
    `limit=${limit.burst}, remaining=0, reset=${Math.ceil(verdict.resetMs / 1000)}`,
  ];
}
