/**
 * One request's state (the Exchange), from the moment it arrives to its
 * last byte; and the proxied path: the request to an instance through the
 * keep-alive pool's `dispatch(request, handler)` (upstream-pool.ts), with
 * the Exchange itself as the handler.
 *
 *   proxy.ts: new Exchange ─► chain.ts: stages read and fill it ─► proxyTo(exchange, endpoint)
 *        endpoint.pool.dispatch(exchange.options, exchange)
 *              │ onConnect(abort) · onHeaders(raw [name, value, …]) · onData · onComplete · onError
 *              ▼
 *        res.writeHead / res.write (false → pause; 'drain' → resume) / res.end
 *
 * No closures per request: client-side handlers (`close`, `drain`, body
 * `data`) are module functions that find their Exchange on the emitter, and
 * timers get it as their argument.
 */

import type http from "node:http";
import type { Duplex } from "node:stream";
import type { ForwardedRequest, ResponseFraming } from "./forwarded.ts";
import { responseHeaders } from "./forwarded.ts";
import { DETACHED_INSTANCE } from "./load-recorder.ts";
import * as metrics from "./metrics.ts";
import { CONNECT_FAILURES, NodeBook } from "./node-health.ts";
import { CONNECTION_FAILURES, recordOutcome } from "./pick.ts";
import type { TakeResult } from "./policies/token-bucket.ts";
import type { ProxyContext } from "./proxy-context.ts";
import { sendFallback, sendJson } from "./replies.ts";
import { rewritePath } from "./route-match.ts";
import type { Backend, Endpoint, Fallback, RouteEntry } from "./route-table.ts";
import type { GatewaySpans, TraceHop } from "./spans.ts";
import {
  CONNECT_TIMEOUT,
  HEADERS_TIMEOUT,
  INVALID_REQUEST,
  type UpstreamHandler,
  type UpstreamRequest,
} from "./upstream-pool.ts";

/**
 * Bodies up to this size of requests with an Idempotency-Key are held in
 * memory so that they can be sent again; larger ones stream and are not retried.
 */
export const MAX_RETRY_BODY_BYTES = 64 * 1024;

/**
 * Idempotent methods (RFC 9110 §9.2.2): sending one twice has the effect of
 * sending it once, so a try cut by any connection failure may be repeated.
 * Other methods only with an Idempotency-Key, or when the connection could not
 * be opened at all (the instance never saw the request).
 */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** What an exchange may be sent again after: nothing, a connection that did not open, any connection failure. */
const NO_RETRY = 0;
const RETRY_UNOPENED = 1;
const RETRY_ANY = 2;

/** Tries of one request at most (the first and two retries, each on another instance, within the retry budget). */
const MAX_ATTEMPTS = 3;

/**
 * A whole body up to this size is sent with its head as one string (latin1: one character per byte, so
 * any bytes pass unchanged); the copy into a string is cheaper than a writev of two pieces.
 */
const ONE_WRITE_BYTES = 16 * 1024;

/** Where an exchange is: waiting for the upstream, relaying its response, or finished. */
const WAITING = 0;
const RELAYING = 1;
const DONE = 2;

/** Why an exchange ends early; handed to the pool's abort so its error says so. */
const ABORTED = Object.assign(new Error("the gateway ended the upstream request"), { code: "HERD_ABORTED" });

/** Placeholders until the endpoint stage sets the real ones, so the fields keep one type. */
const NO_ENDPOINT: Endpoint = {
  instance: "",
  release: 0,
  load: DETACHED_INSTANCE,
  address: "",
  port: 0,
  inflight: 0,
  seed: 0,
  down: false,
  node: new NodeBook().of(""),
};
const NO_OPTIONS: UpstreamRequest = {
  path: "/",
  method: "GET",
  headers: [],
  body: null,
  headersTimeout: 0,
  bodyTimeout: 0,
};

/** Replaced by forwardedRequest before anything reads it; never written to. */
const NO_HEADERS: string[] = [];

/**
 * One request: what its headers said, what the stages decided, and — once
 * proxied — the pool's handler for its upstream request (the pool calls
 * onConnect, onHeaders, onData, onComplete or onError on it), so no handler
 * object or closure is made. A WebSocket upgrade has a `socket` and no `res`.
 */
export class Exchange implements UpstreamHandler, ForwardedRequest, ResponseFraming {
  readonly proxy: ProxyContext;
  readonly req: http.IncomingMessage;
  /** The HTTP response; null for an upgrade (answered on `socket`). */
  readonly res: http.ServerResponse | null;
  /** The upgrade's client socket and the bytes that came after its head; null for HTTP. */
  readonly socket: Duplex | null;
  readonly head: Buffer | null;
  /** When it arrived (performance.now()). */
  readonly startedAt: number;
  // What forwardedRequest found (forwarded.ts).
  host = "";
  duplicateHost = false;
  contentLength = -1;
  hasBody = false;
  idempotencyKey = false;
  headers: string[] = NO_HEADERS;
  hop: TraceHop | null = null;
  /** The request target; auth may strip a credential from its query. */
  url: string;
  /** The matched route (set before the chain runs). */
  route: RouteEntry | null = null;
  /** The chain stage to run next; a stage that waits (JWKS, lease) is run again from here. */
  stage = 0;
  /** CORS headers to add to the response (raw [name, value, …]), or null. */
  cors: string[] | null = null;
  /** The consumer auth found, or null. */
  consumer: string | null = null;
  /** The rate limit's verdict, when it had to wait for it (a worker's lease). */
  limitVerdict: TakeResult | undefined = undefined;
  /** The service it goes to (its breaker hears every outcome). */
  backend: Backend | undefined = undefined;
  /** Where the answer is counted: the route's, or its split target's series. */
  series: metrics.Series | undefined = undefined;
  /** The upstream request (path, method, headers, timeouts, body), made once, reused on a retry. */
  options: UpstreamRequest = NO_OPTIONS;
  /**
   * What it may be sent again to another endpoint after (no body or a held one):
   * any connection failure (idempotent method or Idempotency-Key), or only a connection that did not open.
   */
  retryable = NO_RETRY;
  endpoint: Endpoint = NO_ENDPOINT;
  /** Aborts the upstream request in flight (from the pool's onConnect), or null before it is on a connection. */
  abort: ((err: Error) => void) | null = null;
  /** Resumes the upstream's paused response (from the pool's onHeaders). */
  resume: (() => void) | null = null;
  /** The route's degraded answer, for when the upstream fails. */
  fallback: Fallback | null = null;
  /** The endpoint whose in-flight count this exchange holds. */
  counted: Endpoint | undefined = undefined;
  /** The whole-request deadline's timer, or null (the route has none). */
  deadline: NodeJS.Timeout | null = null;
  /** While a body is held for retries: the timer that gives up on a client that stopped sending it. */
  stall: NodeJS.Timeout | null = null;
  /** The route's connect timeout (ms). */
  connectMs = 0;
  /** A streamed body without a length, to count against the limit once it starts flowing. */
  countsBody = false;
  /** Bytes of the upstream's body still to come when its length is known (Content-Length), else -1. */
  bodyLeft = -1;
  /** Whether a piece of the upstream's body was written to the client yet. */
  bodyStarted = false;
  /** Whether `res` has the drain handler yet (added on the first full write only). */
  drainHooked = false;
  attempts = 0;
  state = WAITING;
  /** Who answered, for the metrics (metrics.UPSTREAM unless the gateway answered instead). */
  outcome = metrics.UPSTREAM;

  constructor(
    proxy: ProxyContext,
    req: http.IncomingMessage,
    res: http.ServerResponse | null,
    socket: Duplex | null,
    head: Buffer | null,
    startedAt: number,
  ) {
    this.proxy = proxy;
    this.req = req;
    this.res = res;
    this.socket = socket;
    this.head = head;
    this.startedAt = startedAt;
    this.url = req.url ?? "/";
  }

  /** The pool: the request is on a connection; `abort` ends it (and closes that connection). */
  onConnect(abort: (err: Error) => void): void {
    // Ended while it waited for a connection (client gone, deadline): end it now.
    if (this.state === DONE) {
      abort(ABORTED);
      return;
    }
    this.abort = abort;
    if (this.countsBody) {
      // Only now: a `data` listener starts the body flowing, and bytes must not flow before the pool,
      // which attaches its own listener in this same tick, is there to forward them.
      this.countsBody = false;
      this.req.on("data", countBody);
    }
  }

  /** The pool: the upstream's status and headers (raw [name, value, …]). */
  onHeaders(status: number, raw: string[], resume: () => void, statusText: string): boolean {
    if (this.state === DONE) return false;
    // 1xx interim answers (103 Early Hints) are not relayed: the final one follows.
    if (status < 200) return true;
    this.state = RELAYING;
    this.resume = resume;
    const node = this.endpoint.node;
    if (node.suspectUntil !== 0) node.answered();
    recordOutcome(this.backend, this.endpoint, status < 500);
    const headers = responseHeaders(raw, this);
    if (this.cors !== null) headers.push(...this.cors);
    const res = this.res as http.ServerResponse;
    if (statusText === "") res.writeHead(status, headers);
    else res.writeHead(status, statusText, headers);
    return true;
  }

  /** The pool: a chunk of the response body; false pauses the upstream until the client drains. */
  onData(chunk: Buffer): boolean {
    const res = this.res as http.ServerResponse;
    if (this.bodyLeft >= 0) {
      this.bodyLeft -= chunk.length;
      if (this.bodyLeft === 0 && this.state === RELAYING) {
        // The body's last bytes: end with them (no separate end step); onComplete follows.
        this.state = DONE;
        clearDeadline(this);
        // A small body whole in one piece goes as text, which Node appends to the head: one write of
        // one string. As a Buffer it would be a writev of the head and the body.
        if (!this.bodyStarted && chunk.length <= ONE_WRITE_BYTES) res.end(chunk.toString("latin1"), "latin1");
        else res.end(chunk);
        return true;
      }
    }
    this.bodyStarted = true;
    if (res.write(chunk) || this.state === DONE) return true;
    // The client reads slower than the upstream sends: wait for it.
    if (!this.drainHooked) {
      this.drainHooked = true;
      res.on("drain", onClientDrain);
    }
    return false;
  }

  /** The pool: the response is complete. */
  onComplete(): void {
    if (this.state === DONE) return;
    this.state = DONE;
    clearDeadline(this);
    (this.res as http.ServerResponse).end();
  }

  /** The pool: the request failed (connection, timeout, abort), before or during the response. */
  onError(err: Error): void {
    onUpstreamError(this, err as NodeJS.ErrnoException);
  }
}

/** A response with its exchange (the server's response class has the field from construction). */
interface ClientResponse extends http.ServerResponse {
  exchange: Exchange;
}

/** A response whose request the gateway records spans of (spans.ts). */
interface TracedResponse extends http.ServerResponse {
  hop?: TraceHop;
  spans?: GatewaySpans;
}

/**
 * Proxies an admitted HTTP request to `endpoint`: builds the dispatch
 * options once, counts it in flight until the client's response closes,
 * sends a shadow copy to the route's mirror, and either sends it now or
 * (a small retryable body) once the body is held.
 */
export function proxyTo(x: Exchange, endpoint: Endpoint): void {
  const { proxy, req } = x;
  const route = x.route as RouteEntry;
  const backend = x.backend as Backend;
  const res = x.res as ClientResponse;
  const method = req.method ?? "GET";
  const timeouts = route.timeouts;
  const idleMs = timeouts?.idleMs ?? proxy.upstreamTimeoutMs;
  const options: UpstreamRequest = {
    path: rewritePath(route, x.url),
    method,
    headers: x.headers,
    body: null,
    headersTimeout: idleMs,
    bodyTimeout: idleMs,
  };
  // Sent again after a connection failure: idempotent methods and requests with an Idempotency-Key, and
  // of those with a body only the ones small enough to hold (a streamed body cannot be replayed). Any
  // request without a body is sent again when its connection did not open.
  const mayRetry = x.idempotencyKey || IDEMPOTENT.has(method);
  const holdBody = mayRetry && x.hasBody && x.contentLength >= 0 && x.contentLength <= MAX_RETRY_BODY_BYTES;
  if (x.hasBody && !holdBody) options.body = req;
  const connectMs = timeouts?.connectMs ?? proxy.connectTimeoutMs;
  x.endpoint = endpoint;
  x.options = options;
  x.retryable = x.hasBody && !holdBody ? NO_RETRY : mayRetry ? RETRY_ANY : RETRY_UNOPENED;
  x.connectMs = connectMs;
  // Counted until the client's response closes (onClientClose).
  proxy.inflight++;
  backend.inflight++;
  backend.load.inflight++;
  if (route.mirror !== null && !x.hasBody && route.mirror.sample()) {
    sendShadow(proxy, route.mirror.backend, options, connectMs);
  }
  x.fallback = route.fallback;
  backend.policies.retries.request(Date.now());
  res.exchange = x;
  res.on("close", onClientClose);
  const requestMs = timeouts?.requestMs;
  if (requestMs !== undefined) x.deadline = setTimeout(onDeadline, requestMs, x, requestMs);
  if (holdBody) {
    // Sent once the whole (small) body is here; a client that stalls is cut by the idle timeout.
    const held = req as HeldRequest;
    held.exchange = x;
    held.chunks = [];
    x.stall = setTimeout(onBodyStall, idleMs, x, idleMs);
    req.on("data", holdChunk);
    req.on("end", bodyHeld);
    return;
  }
  // A body without a length is counted as it streams (from onConnect, see there).
  if (x.hasBody && x.contentLength < 0) {
    (req as CountedRequest).exchange = x;
    (req as CountedRequest).bodyBytes = 0;
    x.countsBody = true;
  }
  send(x);
}

/** Sends (or re-sends) an exchange's request to its endpoint's pool; the pool calls the exchange back. */
function send(x: Exchange): void {
  const endpoint = x.endpoint;
  x.attempts++;
  endpoint.inflight++;
  endpoint.load.inflight++;
  x.counted = endpoint;
  x.abort = null;
  x.proxy.poolFor(endpoint, x.connectMs).dispatch(x.options, x);
}

/** Drops the answer and the errors of a shadow copy. */
const SHADOW_HANDLER: UpstreamHandler = {
  onConnect() {},
  onHeaders: () => true,
  onData: () => true,
  onComplete() {},
  onError() {},
};

/**
 * A shadow copy of a bodiless request: same method, path and headers (the
 * real request's dispatch options), to one instance of the mirror service.
 * Its answer and its errors are dropped; it never delays or changes the real response.
 */
function sendShadow(
  proxy: ProxyContext,
  backend: Backend,
  options: UpstreamRequest,
  connectMs: number,
): void {
  const endpoint = backend.next();
  if (endpoint === undefined) return;
  proxy.poolFor(endpoint, connectMs).dispatch(options, SHADOW_HANDLER);
}

function releaseEndpoint(x: Exchange): void {
  const counted = x.counted;
  if (counted !== undefined) {
    counted.inflight--;
    counted.load.inflight--;
    x.counted = undefined;
  }
}

/** Ends the upstream request in flight (the pool closes its connection); one still queued ends on connect. */
function abortUpstream(x: Exchange): void {
  const abort = x.abort;
  x.abort = null;
  if (abort !== null) abort(ABORTED);
}

/** Stops the exchange's timers (the request deadline, the held body's stall timer). */
function clearDeadline(x: Exchange): void {
  if (x.deadline !== null) {
    clearTimeout(x.deadline);
    x.deadline = null;
  }
  if (x.stall !== null) {
    clearTimeout(x.stall);
    x.stall = null;
  }
}

function onClientDrain(this: ClientResponse): void {
  this.exchange.resume?.();
}

/** Errors that mean the instance was too slow, not unreachable. */
const TIMEOUTS = new Set([HEADERS_TIMEOUT, CONNECT_TIMEOUT]);

function onUpstreamError(x: Exchange, err: NodeJS.ErrnoException): void {
  if (x.state === DONE) return;
  const proxy = x.proxy;
  const res = x.res as http.ServerResponse;
  if (x.state === RELAYING) {
    // The upstream went away mid-response (or went silent): the client must not mistake the cut body for a whole one.
    x.state = DONE;
    clearDeadline(x);
    res.destroy();
    return;
  }
  const code = err.code ?? "";
  if (code === INVALID_REQUEST) {
    // The request itself cannot be sent as HTTP/1.1 (e.g. a request target that is not a path).
    x.state = DONE;
    clearDeadline(x);
    sendJson(res, 400, { code: "invalid", message: `the request cannot be forwarded: ${err.message}` });
    return;
  }
  recordOutcome(x.backend, x.endpoint, false);
  const now = Date.now();
  const unopened = CONNECT_FAILURES.has(code);
  // The first sign that the instance's machine may be gone: its other endpoints, in every service, go last.
  if (unopened) x.endpoint.node.suspect(now);
  if (CONNECTION_FAILURES.has(code) && x.backend !== undefined) {
    // A service without an outlier policy still ejects an instance that is not there (UNREACHABLE_OUTLIER).
    x.backend.policies.outlier?.unreachable(x.endpoint.instance, now, x.backend.endpoints.length);
  }
  const backend = x.backend;
  const retryOn =
    x.retryable === RETRY_ANY ? CONNECTION_FAILURES.has(code) : x.retryable === RETRY_UNOPENED && unopened;
  if (retryOn && x.attempts < MAX_ATTEMPTS && backend?.policies.retries.tryRetry(now) === true) {
    // The service's backend in the current table: the failed instance may be gone from it since.
    const current = proxy.table.backends.get(backend.service) ?? backend;
    const failed = x.endpoint;
    const next = current.nextExcept(failed);
    // A second retry only to another instance (the first may go back to a lone one: a reset keep-alive socket).
    if (
      next !== undefined &&
      (x.attempts === 1 || next.port !== failed.port || next.address !== failed.address)
    ) {
      proxy.logger.debug("retrying on another endpoint", {
        failed: failed.instance,
        next: next.instance,
        error: err,
      });
      releaseEndpoint(x);
      x.endpoint = next;
      send(x);
      return;
    }
  }
  x.state = DONE;
  clearDeadline(x);
  const instance = x.endpoint.instance;
  proxy.logger.warn("upstream request failed", {
    endpoint: `${x.endpoint.address}:${x.endpoint.port}`,
    instance,
    error: err,
  });
  if (TIMEOUTS.has(code)) {
    const message =
      code === CONNECT_TIMEOUT
        ? `instance ${instance} did not accept a connection within ${x.connectMs} ms`
        : `instance ${instance} did not answer within ${x.options.headersTimeout} ms`;
    replyTimeout(x, message);
    return;
  }
  if (x.fallback !== null) {
    x.outcome = metrics.FALLBACK_BAD_GATEWAY;
    sendFallback(res, x.fallback, "bad_gateway");
    return;
  }
  x.outcome = metrics.BAD_GATEWAY;
  sendJson(res, 502, {
    code: "bad_gateway",
    message: `instance ${instance} did not answer (${code || err.message})`,
  });
}

/** 504 `timeout` (or the route's fallback). */
function replyTimeout(x: Exchange, message: string): void {
  const res = x.res as http.ServerResponse;
  if (x.fallback !== null) {
    x.outcome = metrics.FALLBACK_TIMEOUT;
    sendFallback(res, x.fallback, "timeout");
  } else {
    x.outcome = metrics.TIMEOUT;
    sendJson(res, 504, { code: "timeout", message });
  }
}

/** The route's whole-request deadline passed: 504 (or the fallback) before the answer, a cut during it. */
function onDeadline(x: Exchange, ms: number): void {
  x.deadline = null;
  if (x.state === DONE) return;
  const waiting = x.state === WAITING;
  x.state = DONE;
  abortUpstream(x);
  if (!waiting) {
    (x.res as http.ServerResponse).destroy();
    return;
  }
  recordOutcome(x.backend, x.endpoint, false);
  replyTimeout(x, `instance ${x.endpoint.instance} did not answer within the route's ${ms} ms`);
}

function onClientClose(this: ClientResponse): void {
  const x = this.exchange;
  releaseEndpoint(x);
  clearDeadline(x);
  if (x.backend !== undefined) {
    x.proxy.inflight--;
    x.backend.inflight--;
    x.backend.load.inflight--;
    x.proxy.admission?.release();
  }
  // Counted once, when the response is over; one cut short says so (499: the client left before any answer).
  const finished = this.writableFinished;
  const end = performance.now();
  const status = finished || this.headersSent ? this.statusCode : 499;
  const outcome = finished ? x.outcome : this.headersSent ? metrics.INCOMPLETE : metrics.CLIENT_CLOSED;
  const series = x.series;
  if (series !== undefined) {
    series.record(status, outcome, end - x.startedAt);
    series.load?.finished(x.endpoint.load, status, outcome, x.startedAt, end);
    const { hop, spans } = this as TracedResponse;
    if (hop !== undefined && spans !== undefined) {
      const method = x.req.method ?? "GET";
      spans.record(
        hop,
        series,
        method,
        status,
        metrics.OUTCOMES[outcome],
        x.startedAt,
        end,
        x.endpoint.instance,
      );
    }
  }
  // A response that finished closes normally; one that did not means the client left.
  if (!this.writableFinished && x.state !== DONE) {
    x.state = DONE;
    abortUpstream(x);
  }
}

interface CountedRequest extends http.IncomingMessage {
  exchange: Exchange;
  bodyBytes: number;
}

/** Counts a streamed body; past the limit the exchange ends with 413 (or is cut if the answer has begun). */
function countBody(this: CountedRequest, chunk: Buffer): void {
  this.bodyBytes += chunk.length;
  const x = this.exchange;
  const res = x.res as http.ServerResponse;
  if (this.bodyBytes <= x.proxy.maxBodyBytes || x.state === DONE) return;
  this.off("data", countBody);
  const waiting = x.state === WAITING && !res.headersSent;
  x.state = DONE;
  clearDeadline(x);
  abortUpstream(x);
  if (waiting) {
    res.setHeader("connection", "close");
    x.outcome = metrics.TOO_LARGE;
    sendJson(res, 413, { code: "too_large", message: `request body over ${x.proxy.maxBodyBytes} bytes` });
  } else {
    res.destroy();
  }
  this.unpipe();
  this.resume();
}

/** A request whose (small) body is held so that it can be sent again. */
interface HeldRequest extends http.IncomingMessage {
  exchange: Exchange;
  chunks: Buffer[];
}

function holdChunk(this: HeldRequest, chunk: Buffer): void {
  this.chunks.push(chunk);
}

function bodyHeld(this: HeldRequest): void {
  const x = this.exchange;
  if (x.stall !== null) {
    clearTimeout(x.stall);
    x.stall = null;
  }
  if (x.state === DONE) return;
  const chunks = this.chunks;
  x.options.body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  send(x);
}

/** A client that stopped sending the body the gateway waits for: 408, and the connection closed. */
function onBodyStall(x: Exchange, ms: number): void {
  x.stall = null;
  if (x.state === DONE) return;
  x.state = DONE;
  clearDeadline(x);
  const res = x.res as http.ServerResponse;
  res.setHeader("connection", "close");
  sendJson(res, 408, { code: "timeout", message: `the request body did not arrive within ${ms} ms` });
}
