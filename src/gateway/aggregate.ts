/**
 * Aggregation routes: one GET calls several services of the app in parallel
 * and answers with their JSON merged into one object,
 *
 *   { "user": <users' answer>, "orders": <orders' answer> }
 *
 * Each part goes through the same machinery as a proxied request (the route's
 * balancing, the service's breaker, outlier detector, retry budget, shedding
 * and in-flight counts, the proxy's keep-alive pool), but has its own time
 * limit. A part that fails (timeout, connection error, non-2xx, a body that is
 * not JSON or over PART_MAX_BYTES, breaker open, shed, no instance) is `null`
 * and explained under `"_errors"`; the answer is 200 while one part succeeded,
 * else 504 (every part timed out) or 502, or the route's fallback.
 *
 *   client ─GET─► chain.ts AGGREGATE stage ─► sendAggregate
 *                                                            ├─► part 1 ─► service A ┐ each: its timer,
 *                                                            └─► part 2 ─► service B ┘ its body limit
 *                           merged JSON ◄── finish() when the last part settles ◄─┘
 *
 * As in exchange.ts, handlers are module functions that find their state on the
 * emitter (or get it as the timer's argument), so no closures per request.
 */

import type http from "node:http";
import { nodeHttp } from "../common/node-http.ts";
import { CONNECT_FAILURES } from "./node-health.ts";
import { CONNECTION_FAILURES, pickEndpoint } from "./pick.ts";
import type { ProxyContext } from "./proxy-context.ts";
import { sendFallback, sendJson } from "./replies.ts";
import type { AggregatePart, Aggregation } from "./route-aggregation.ts";
import type { Endpoint, RouteEntry } from "./route-table.ts";

/** A part's body is cut at this size and the part fails as `too_large`. */
export const PART_MAX_BYTES = 1024 * 1024;

/** An error answer (non-2xx) with a Content-Length up to this is read to the end to keep its connection. */
const DRAIN_MAX_BYTES = 64 * 1024;

/** Why a part has no value; the `_errors` entry under its name. */
export interface PartError {
  /** timeout, bad_gateway, status, invalid_json, too_large, circuit_open, overloaded or unavailable. */
  code: string;
  message: string;
  /** The part's HTTP status, for code `status`. */
  status?: number;
}

/** Headers the gateway sets itself (forwarded.ts's forwardedRequest) that every part gets. */
const GATEWAY_HEADERS = new Set([
  "host",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
  "traceparent",
  "tracestate",
  // Set by route auth (auth.ts); a client's own copy never gets this far.
  "x-consumer-name",
]);

/** One client request answered by an aggregation. */
class AggregateCall {
  readonly proxy: ProxyContext;
  readonly route: RouteEntry;
  readonly aggregation: Aggregation;
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  /** CORS headers for the answer (raw [name, value, …]), or null. */
  readonly cors: string[] | null;
  /** The headers every part is sent, as a raw [name, value, …] list. */
  readonly headers: string[];
  /** The client's query string without `?` ("" when none). */
  readonly query: string;
  readonly parts: PartCall[] = [];
  /** Parts not settled yet. */
  pending: number;
  failed = 0;
  timeouts = 0;
  done = false;

  constructor(
    proxy: ProxyContext,
    route: RouteEntry,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    headers: string[],
    cors: string[] | null,
  ) {
    this.proxy = proxy;
    this.route = route;
    this.aggregation = route.aggregate!;
    this.req = req;
    this.res = res;
    this.cors = cors;
    this.headers = headers;
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    this.query = q === -1 ? "" : url.slice(q + 1);
    this.pending = this.aggregation.parts.length;
  }
}

/** One part's call to its service. */
class PartCall {
  readonly call: AggregateCall;
  readonly part: AggregatePart;
  readonly path: string;
  /** The endpoint whose in-flight count this part holds, if any. */
  endpoint: Endpoint | undefined = undefined;
  /** Whether the backend's in-flight count includes this part. */
  counted = false;
  upstream: http.ClientRequest | undefined = undefined;
  timer: NodeJS.Timeout | undefined = undefined;
  chunks: Buffer[] = [];
  bytes = 0;
  attempts = 0;
  settled = false;
  /** The merged value: the part's JSON text, or null. */
  value: string | null = null;
  error: PartError | null = null;

  constructor(call: AggregateCall, part: AggregatePart) {
    this.call = call;
    this.part = part;
    this.path =
      part.queryJoin !== null && call.query !== "" ? `${part.path}${part.queryJoin}${call.query}` : part.path;
  }
}

interface PartRequest extends http.ClientRequest {
  part: PartCall;
}
interface PartResponse extends http.IncomingMessage {
  part: PartCall;
}
interface AggregateResponse extends http.ServerResponse {
  aggregate: AggregateCall;
}

/**
 * Answers a request that matched an aggregation route. `forwarded` is the
 * header list forwarded.ts built for an upstream (X-Forwarded-*, the new
 * traceparent); the parts get its gateway-set headers and the client headers
 * the aggregation names, nothing else (no Accept-Encoding: bodies are merged).
 */
export function sendAggregate(
  proxy: ProxyContext,
  route: RouteEntry,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  forwarded: readonly string[],
  cors: string[] | null,
): void {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    sendJson(res, 405, { code: "method_not_allowed", message: "an aggregation route answers GET and HEAD" });
    return;
  }
  const wanted = route.aggregate!.headers;
  const headers: string[] = [];
  for (let i = 0; i < forwarded.length; i += 2) {
    const name = forwarded[i].toLowerCase();
    if (GATEWAY_HEADERS.has(name) || wanted.has(name)) headers.push(forwarded[i], forwarded[i + 1]);
  }
  headers.push("Accept", "application/json");
  const call = new AggregateCall(proxy, route, req, res, headers, cors);
  // Counted until the client's response closes (onClientClose), like a proxied request.
  proxy.inflight++;
  (res as AggregateResponse).aggregate = call;
  res.on("close", onClientClose);
  for (const part of call.aggregation.parts) {
    const pc = new PartCall(call, part);
    call.parts.push(pc);
    startPart(pc);
  }
}

/** Admits a part as the chain admits a request (breaker, shedding, an instance), then sends it. */
function startPart(pc: PartCall): void {
  const { call, part } = pc;
  const { backend } = part;
  const proxy = call.proxy;
  const now = Date.now();
  if (backend.breaker !== null && !backend.breaker.allow(now)) {
    settle(pc, null, {
      code: "circuit_open",
      message: `${backend.name} is failing: its circuit breaker is open`,
    });
    return;
  }
  // The aggregation itself is already in proxy.inflight; a proxied request is checked before it counts.
  if (
    backend.inflight >= backend.concurrency ||
    proxy.inflight - 1 >= proxy.maxInflight * backend.shedAbove
  ) {
    settle(pc, null, { code: "overloaded", message: `${backend.name} is shedding load` });
    return;
  }
  const endpoint = pickEndpoint(call.route, backend, call.req);
  if (endpoint === undefined) {
    settle(pc, null, { code: "unavailable", message: `no running instance of ${backend.name}` });
    return;
  }
  backend.inflight++;
  pc.counted = true;
  backend.policies.retries.request(now);
  pc.timer = setTimeout(onPartTimeout, part.timeoutMs, pc);
  send(pc, endpoint);
}

function send(pc: PartCall, endpoint: Endpoint): void {
  pc.attempts++;
  pc.endpoint = endpoint;
  endpoint.inflight++;
  const upstream = nodeHttp.request({
    host: endpoint.address,
    port: endpoint.port,
    method: "GET",
    path: pc.path,
    headers: pc.call.headers,
    agent: pc.call.proxy.partsAgent,
  }) as PartRequest;
  upstream.part = pc;
  pc.upstream = upstream;
  upstream.on("response", onPartResponse);
  upstream.on("error", onPartError);
  upstream.end();
}

/** Tells the service's breaker and outlier detector how an attempt went (5xx, refused and timeouts fail). */
function recordOutcome(pc: PartCall, success: boolean): void {
  const { backend } = pc.part;
  const { breaker, outlier } = backend.policies;
  const now = Date.now();
  breaker?.record(success, now);
  if (outlier !== null && pc.endpoint !== undefined) {
    outlier.record(pc.endpoint.instance, success, now, backend.endpoints.length);
  }
}

function onPartResponse(this: PartRequest, upRes: http.IncomingMessage): void {
  const pc = this.part;
  if (pc.settled) {
    upRes.resume();
    return;
  }
  const status = upRes.statusCode ?? 502;
  recordOutcome(pc, status < 500);
  const name = pc.part.backend.name;
  const length = Number(upRes.headers["content-length"] ?? Number.NaN);
  if (status < 200 || status >= 300) {
    // A short error body is drained so the connection goes back to the pool; any other is cut, since
    // nothing would bound how long it takes once the part has settled.
    const drain = length <= DRAIN_MAX_BYTES;
    if (drain) upRes.resume();
    settle(pc, null, { code: "status", status, message: `${name} answered ${status}` }, !drain);
    return;
  }
  if (length > PART_MAX_BYTES) {
    settle(pc, null, tooLarge(name), true);
    return;
  }
  (upRes as PartResponse).part = pc;
  upRes.on("data", onPartData);
  upRes.on("end", onPartEnd);
  upRes.on("error", onPartBodyError);
}

function tooLarge(name: string): PartError {
  return { code: "too_large", message: `${name} answered more than ${PART_MAX_BYTES} bytes` };
}

function onPartData(this: PartResponse, chunk: Buffer): void {
  const pc = this.part;
  if (pc.settled) return;
  pc.bytes += chunk.length;
  if (pc.bytes > PART_MAX_BYTES) {
    settle(pc, null, tooLarge(pc.part.backend.name), true);
    return;
  }
  pc.chunks.push(chunk);
}

function onPartEnd(this: PartResponse): void {
  const pc = this.part;
  if (pc.settled) return;
  const text = Buffer.concat(pc.chunks, pc.bytes).toString("utf8");
  pc.chunks = [];
  try {
    JSON.parse(text);
  } catch {
    const what = text.length === 0 ? "an empty body" : "a body that is not JSON";
    settle(pc, null, { code: "invalid_json", message: `${pc.part.backend.name} answered ${what}` });
    return;
  }
  // Spliced into the merged body as sent: it parsed, so it is one JSON value.
  settle(pc, text, null);
}

function onPartBodyError(this: PartResponse): void {
  const pc = this.part;
  if (pc.settled) return;
  settle(pc, null, { code: "bad_gateway", message: `${pc.part.backend.name} cut its answer short` });
}

function onPartError(this: PartRequest, err: NodeJS.ErrnoException): void {
  const pc = this.part;
  if (pc.settled) return;
  recordOutcome(pc, false);
  const { backend } = pc.part;
  const failed = pc.endpoint!;
  if (CONNECT_FAILURES.has(err.code ?? "")) failed.node.suspect(Date.now());
  // As in exchange.ts: a GET that never reached an instance gets one more try elsewhere, within the budget.
  if (
    pc.attempts === 1 &&
    CONNECTION_FAILURES.has(err.code ?? "") &&
    backend.policies.retries.tryRetry(Date.now())
  ) {
    const next = backend.nextExcept(failed);
    if (next !== undefined) {
      failed.inflight--;
      pc.endpoint = undefined;
      send(pc, next);
      return;
    }
  }
  pc.call.proxy.logger.debug("aggregation part failed", {
    part: pc.part.name,
    instance: failed.instance,
    error: err,
  });
  settle(pc, null, {
    code: "bad_gateway",
    message: `instance ${failed.instance} of ${backend.name} did not answer (${err.code ?? err.message})`,
  });
}

function onPartTimeout(pc: PartCall): void {
  if (pc.settled) return;
  recordOutcome(pc, false);
  pc.call.timeouts++;
  settle(
    pc,
    null,
    { code: "timeout", message: `${pc.part.backend.name} did not answer within ${pc.part.timeoutMs} ms` },
    true,
  );
}

/** Ends a part's call with its value or error; `abort` cuts its upstream request. The last one answers. */
function settle(pc: PartCall, value: string | null, error: PartError | null, abort = false): void {
  release(pc, abort);
  pc.value = value;
  pc.error = error;
  const call = pc.call;
  if (error !== null) call.failed++;
  if (--call.pending === 0) finish(call);
}

/** Frees what a part holds: its timer, its in-flight counts, and (abort) its upstream connection. */
function release(pc: PartCall, abort: boolean): void {
  pc.settled = true;
  if (pc.timer !== undefined) clearTimeout(pc.timer);
  if (pc.endpoint !== undefined) {
    pc.endpoint.inflight--;
    pc.endpoint = undefined;
  }
  if (pc.counted) {
    pc.part.backend.inflight--;
    pc.counted = false;
  }
  if (abort) pc.upstream?.destroy();
}

/** Sends the merged answer once every part has settled. */
function finish(call: AggregateCall): void {
  if (call.done) return;
  call.done = true;
  const { res, parts } = call;
  if (res.destroyed) return;
  if (call.cors !== null) {
    for (let i = 0; i < call.cors.length; i += 2) res.setHeader(call.cors[i], call.cors[i + 1]);
  }
  const errors: Record<string, PartError> = {};
  for (const pc of parts) if (pc.error !== null) errors[pc.part.name] = pc.error;
  if (call.failed === parts.length) {
    const timedOut = call.timeouts === parts.length;
    if (call.route.fallback !== null) {
      sendFallback(res, call.route.fallback, timedOut ? "timeout" : "bad_gateway");
      return;
    }
    sendJson(res, timedOut ? 504 : 502, {
      code: timedOut ? "timeout" : "bad_gateway",
      message: timedOut
        ? "no part of the aggregation answered in time"
        : "no part of the aggregation answered",
      _errors: errors,
    });
    return;
  }
  let body = "{";
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) body += ",";
    body += parts[i].part.key;
    body += parts[i].value ?? "null";
  }
  if (call.failed > 0) body += `,"_errors":${JSON.stringify(errors)}`;
  body += "}";
  res.writeHead(200, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    // Parts may answer per user (Authorization, Cookie are forwarded): never cached on the way.
    "cache-control": "no-store",
  });
  res.end(body);
}

/** The client's response closed: done, or the client left (then every part still running is cut). */
function onClientClose(this: AggregateResponse): void {
  const call = this.aggregate;
  call.proxy.inflight--;
  if (call.done) return;
  call.done = true;
  for (const pc of call.parts) if (!pc.settled) release(pc, true);
}
