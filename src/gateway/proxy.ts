/**
 * The gateway's HTTP server: matches each request against the current
 * RouteTable and forwards it to one of the service's running endpoints.
 *
 * The table is one reference, replaced whole (`proxy.table = next`), so a
 * request sees either the old or the new configuration, never a mix. Per
 * request the work is: one match, one header copy, one upstream request.
 * Event handlers are shared module functions that find their request's state
 * on the emitter, so no closures are created per request.
 */

import http from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { HerdError } from "../common/errors.ts";
import type { Logger } from "../common/log.ts";
import type { StickySpec } from "../model/manifest.ts";
import { sendAggregate } from "./aggregate.ts";
import { AuthFailure } from "./auth.ts";
import * as metrics from "./metrics.ts";
import type { TakeResult } from "./policies/token-bucket.ts";
import {
  type Backend,
  EMPTY_TABLE,
  type Endpoint,
  type Fallback,
  normalizeHost,
  type RouteEntry,
  type RouteLimit,
  type RouteTable,
  rewritePath,
} from "./route-table.ts";
import type { CertificateStore } from "./tls.ts";
import { nextTraceparent } from "./trace-context.ts";

/** How the proxy is set up. */
export interface ProxyOptions {
  logger: Logger;
  /** An upstream that sends nothing for this long gets a 504 (or, mid-response, the connection cut). Default 60 s. */
  upstreamTimeoutMs?: number;
  /** Pooled idle connections per upstream address. Default 256 open at most, 64 idle. */
  maxSocketsPerUpstream?: number;
  /** Largest request body accepted (by Content-Length, or counted while streaming). Default 100 MiB. */
  maxBodyBytes?: number;
  /** A client must send its request headers within this time. Default 10 s. */
  headersTimeoutMs?: number;
  /** Requests in flight this process handles at most; past shares of it, services shed by criticality. Default 10,000. */
  maxInflight?: number;
}

/** Default limits: a slow or oversized client gets a clear error instead of holding a connection. */
const DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024;
const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
/** Request headers larger than this are refused with 431 (Node's parser limit). */
export const MAX_HEADER_BYTES = 16 * 1024;

/** Headers that describe one connection, not the message; never forwarded (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
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
/** traceparent: replaced by the gateway's own hop (trace-context.ts). */
const TRACEPARENT = 8;
/** X-Consumer-Name: set only by the gateway (auth.ts); a client's copy is dropped on every route. */
const CONSUMER_NAME = 9;

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
    else kind = HOP_BY_HOP.has(lower) ? HOP : PASS;
    if (headerKinds.size < HEADER_KINDS_MAX) headerKinds.set(name, kind);
  }
  return kind;
}

/** Methods safe to send twice when the first try never reached the upstream. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/** Errors that mean no byte of the request was processed: the connection failed or was reset. */
const CONNECTION_FAILURES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "EHOSTUNREACH", "ENETUNREACH"]);

const STATUS_PATH = "/_herd/status";

/** Where an exchange is: waiting for the upstream, relaying its response, or finished. */
const WAITING = 0;
const RELAYING = 1;
const DONE = 2;

/** The state of one proxied request, found by the shared handlers on the emitters they are called on. */
class Exchange {
  readonly proxy: GatewayProxy;
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly host: string;
  readonly headers: string[];
  /** The path sent upstream (the route's rewrite applied). */
  readonly path: string;
  /** Bodiless and idempotent: may be sent again to another endpoint. */
  readonly retryable: boolean;
  endpoint: Endpoint;
  upstream: http.ClientRequest | undefined;
  /** CORS headers to add to the response (raw [name, value, …]), or null. */
  cors: string[] | null = null;
  /** The route's degraded answer, for when the upstream fails. */
  fallback: Fallback | null = null;
  /** The endpoint whose in-flight count this exchange holds. */
  counted: Endpoint | undefined = undefined;
  /** The service it goes to (its breaker hears every outcome). */
  backend: Backend | undefined = undefined;
  /** The upstream's response while it is relayed (paused when the client reads slower). */
  upstreamResponse: http.IncomingMessage | undefined = undefined;
  /** Whether `res` has the drain handler yet (added on the first full write only). */
  drainHooked = false;
  attempts = 0;
  state = WAITING;
  /** Where the response is counted when it closes, when it began (performance.now()), and who answered. */
  series: metrics.Series | undefined = undefined;
  startedAt = 0;
  outcome = metrics.UPSTREAM;

  constructor(
    proxy: GatewayProxy,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    endpoint: Endpoint,
    request: ForwardedRequest,
    path: string,
  ) {
    this.proxy = proxy;
    this.req = req;
    this.res = res;
    this.endpoint = endpoint;
    this.path = path;
    this.host = request.host;
    this.headers = request.headers;
    this.retryable = !request.hasBody && IDEMPOTENT.has(req.method ?? "");
  }
}

/** What one pass over a request's raw headers finds. */
interface ForwardedRequest {
  /** The first Host header, as sent ("" when there is none). */
  host: string;
  /** More than one Host header: ambiguous, refused with 400 (as nginx does). */
  duplicateHost: boolean;
  /** Content-Length as a number; -1 when absent (chunked or no body). */
  contentLength: number;
  hasBody: boolean;
  /** The headers for the upstream, as a raw [name, value, …] list. */
  headers: string[];
}

interface UpstreamRequest extends http.ClientRequest {
  exchange: Exchange;
}
interface UpstreamResponse extends http.IncomingMessage {
  exchange: Exchange;
}
interface ClientResponse extends http.ServerResponse {
  exchange: Exchange;
}

/** The gateway's reverse proxy. Assign `table` to reconfigure it. */
export class GatewayProxy {
  /** The table every new request is matched against. Replace it whole; never mutate it. */
  table: RouteTable = EMPTY_TABLE;
  readonly server: http.Server;
  /** The HTTPS server, once `listenHttps` made it; it shares every handler with `server`. */
  httpsServer: https.Server | undefined;
  readonly logger: Logger;
  readonly upstreamTimeoutMs: number;
  readonly maxBodyBytes: number;
  readonly maxInflight: number;
  /** Requests in flight through this process now. */
  inflight = 0;
  /** Counters of requests no route took (metrics.ts). */
  readonly unrouted = metrics.unroutedSeries();
  /** One keep-alive pool for all upstreams; it keeps a separate pool per address:port. */
  readonly agent: http.Agent;
  /** Upgraded (WebSocket) connections, which the HTTP server no longer tracks. */
  readonly #tunnels = new Set<Duplex>();
  readonly #headersTimeoutMs: number;
  /** The certificates HTTPS handshakes pick from (replaced whole on reload). */
  #certificates: CertificateStore | undefined;

  constructor(options: ProxyOptions) {
    this.logger = options.logger;
    this.upstreamTimeoutMs = options.upstreamTimeoutMs ?? 60_000;
    const maxSockets = options.maxSocketsPerUpstream ?? 256;
    this.agent = new http.Agent({
      keepAlive: true,
      maxSockets,
      maxFreeSockets: Math.min(64, maxSockets),
      // LIFO reuses warm sockets and lets the rest idle out.
      scheduling: "lifo",
      // Idle sockets close before a typical upstream's keep-alive timeout (Node: 5 s); a server's
      // `Keep-Alive: timeout=` hint shortens this further.
      timeout: 4_000,
    });
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.maxInflight = options.maxInflight ?? 10_000;
    this.#headersTimeoutMs = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
    this.server = http.createServer(this.#serverOptions(), (req, res) => this.#onRequest(req, res, "http"));
    this.#configure(this.server);
  }

  /** Options both servers share. */
  #serverOptions(): http.ServerOptions {
    return {
      maxHeaderSize: MAX_HEADER_BYTES,
      // Node looks for late headers on this interval: a fraction of the timeout keeps the cut close to it.
      connectionsCheckingInterval: Math.max(100, Math.floor(this.#headersTimeoutMs / 4)),
    };
  }

  /** Timeouts and handlers both servers share: HTTPS only adds TLS in front of the same proxy. */
  #configure(server: http.Server): void {
    server.headersTimeout = this.#headersTimeoutMs;
    // Bodies may take long (uploads); a slow body is the upstream's call, and its silence is cut by upstreamTimeoutMs.
    server.requestTimeout = 0;
    server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#onUpgrade(req, socket, head),
    );
    server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
      const status = onClientError(err, socket);
      if (status !== 0) this.unrouted.record(status, metrics.INVALID, 0);
    });
  }

  /** Client connections open now, over HTTP and HTTPS (for /metrics). */
  async openConnections(): Promise<number> {
    const count = (server: http.Server | undefined) =>
      new Promise<number>((resolve) =>
        server === undefined ? resolve(0) : server.getConnections((err, n) => resolve(err ? 0 : n)),
      );
    return (await count(this.server)) + (await count(this.httpsServer));
  }

  /** Listens; resolves with the port. A port in use is a HerdError that says so. */
  listen(port: number, host: string): Promise<number> {
    return listenOn(this.server, port, host, "--port");
  }

  /**
   * Serves HTTPS too, on its own port, with the same routes and handlers
   * (HTTP/1.1 over TLS). Each handshake picks its certificate by SNI.
   */
  listenHttps(port: number, host: string, certificates: CertificateStore): Promise<number> {
    if (this.httpsServer !== undefined) throw new Error("the gateway already serves HTTPS");
    this.#certificates = certificates;
    this.httpsServer = https.createServer(
      {
        ...this.#serverOptions(),
        cert: certificates.default.cert,
        key: certificates.default.key,
        SNICallback: (servername, done) => done(null, this.#certificates?.pick(servername)),
        ALPNProtocols: ["http/1.1"],
      },
      (req, res) => this.#onRequest(req, res, "https"),
    );
    this.#configure(this.httpsServer);
    // A failed handshake (a client that does not trust the certificate) is the client's business.
    this.httpsServer.on("tlsClientError", destroyQuietlySocket);
    return listenOn(this.httpsServer, port, host, "--https-port");
  }

  /** Swaps in reloaded certificates: new handshakes use them, open connections keep theirs. */
  useCertificates(certificates: CertificateStore): void {
    this.#certificates = certificates;
    this.httpsServer?.setSecureContext({ cert: certificates.default.cert, key: certificates.default.key });
  }

  /** Stops listening and cuts every open connection, client and upstream. */
  async close(): Promise<void> {
    // Not waiting for the servers' "close": a TLS handshake in progress would hold it up to its own timeout.
    for (const server of [this.server, this.httpsServer]) {
      server?.close();
      server?.closeAllConnections();
    }
    for (const socket of this.#tunnels) socket.destroy();
    this.#tunnels.clear();
    this.agent.destroy();
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse, proto: "http" | "https"): void {
    const start = performance.now();
    // One pass over the raw headers; `req.headers` (an object built on first use) is never read.
    const forwarded = forwardedRequest(req, false, proto);
    const host = forwarded.host;
    let url = req.url ?? "/";
    const table = this.table;
    if (forwarded.duplicateHost) {
      sendJson(res, 400, { code: "invalid", message: "more than one Host header" });
      answered(this.unrouted, res, metrics.INVALID, start);
      return;
    }
    if (url === STATUS_PATH && isLocalHost(host)) {
      sendJson(res, 200, { version: table.version, routes: table.routeCount, problems: table.problems });
      answered(this.unrouted, res, metrics.STATUS, start);
      return;
    }
    // `req.headers` is built only when some route matches on headers.
    const route = table.route(host, url, req.method ?? "GET", table.matchesHeaders ? req.headers : undefined);
    if (route === undefined) {
      sendMiss(res, table, host, url);
      answered(this.unrouted, res, metrics.NO_ROUTE, start);
      return;
    }
    let cors: string[] | null = null;
    if (route.cors !== null) {
      const origin = req.headers.origin;
      if (origin !== undefined) {
        const allowed = route.cors.allows(origin);
        if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
          // A preflight: answered here, never forwarded.
          if (!allowed) sendJson(res, 403, { code: "forbidden", message: `origin ${origin} is not allowed` });
          else {
            res.writeHead(
              204,
              route.cors.preflightHeaders(origin, req.headers["access-control-request-headers"]),
            );
            res.end();
          }
          answered(route.stats.home, res, metrics.CORS_PREFLIGHT, start);
          return;
        }
        if (allowed) cors = route.cors.responseHeaders(origin);
      }
    }
    let consumer: string | null = null;
    if (route.auth !== null) {
      const verdict = route.auth.check(req, url, Date.now());
      if (typeof verdict !== "string") {
        if (verdict instanceof AuthFailure) {
          sendUnauthorized(res, verdict, cors);
          answered(route.stats.home, res, metrics.UNAUTHORIZED, start);
        }
        // JWKS keys are being fetched (an unknown kid): take the request again once they are in.
        else void verdict.then(() => this.#onRequestAgain(req, res));
        return;
      }
      consumer = verdict;
      if (route.auth.hideApiKey || route.auth.hideAuthorization)
        url = route.auth.hide(forwarded.headers, url);
      forwarded.headers.push("X-Consumer-Name", consumer);
    }
    if (route.limit !== null) {
      const verdict = route.limit.take(clientOf(req.socket), Date.now(), consumer);
      if (!verdict.ok) {
        sendRateLimited(res, route.limit, verdict);
        answered(route.stats.home, res, metrics.RATE_LIMITED, start);
        return;
      }
    }
    if (forwarded.contentLength > this.maxBodyBytes) {
      sendJson(res, 413, { code: "too_large", message: `request body over ${this.maxBodyBytes} bytes` });
      answered(route.stats.home, res, metrics.TOO_LARGE, start);
      return;
    }
    if (route.aggregate !== null) {
      const home = route.stats.home;
      res.once("close", () => answered(home, res, metrics.AGGREGATE, start));
      sendAggregate(this, route, req, res, forwarded.headers, cors);
      return;
    }
    const backend =
      route.split === null
        ? route.backend
        : route.split.choose(route.split.sticky === null ? undefined : clientKey(route.split.sticky, req));
    const series = route.split === null ? route.stats.home : route.stats.of(backend);
    if (backend.breaker !== null && !backend.breaker.allow(Date.now())) {
      if (route.fallback !== null) {
        sendFallback(res, route.fallback, "circuit_open");
        answered(series, res, metrics.FALLBACK_CIRCUIT_OPEN, start);
        return;
      }
      const wait = Math.max(1, Math.ceil(backend.breaker.retryAfterMs(Date.now()) / 1000));
      sendJson(
        res,
        503,
        { code: "circuit_open", message: `${backend.name} is failing: its circuit breaker is open` },
        String(wait),
      );
      answered(series, res, metrics.CIRCUIT_OPEN, start);
      return;
    }
    if (backend.inflight >= backend.concurrency || this.inflight >= this.maxInflight * backend.shedAbove) {
      if (route.fallback !== null) {
        sendFallback(res, route.fallback, "shed");
        answered(series, res, metrics.FALLBACK_SHED, start);
        return;
      }
      sendJson(
        res,
        503,
        { code: "overloaded", message: `${backend.name} is shedding load: try again shortly` },
        "1",
      );
      answered(series, res, metrics.SHED, start);
      return;
    }
    const endpoint = pickEndpoint(route, backend, req);
    if (endpoint === undefined) {
      if (route.fallback !== null) {
        sendFallback(res, route.fallback, "unavailable");
        answered(series, res, metrics.FALLBACK_UNAVAILABLE, start);
        return;
      }
      sendUnavailable(res, backend);
      answered(series, res, metrics.UNAVAILABLE, start);
      return;
    }
    const exchange = new Exchange(this, req, res, endpoint, forwarded, rewritePath(route, url));
    exchange.backend = backend;
    exchange.series = series;
    exchange.startedAt = start;
    // Counted until the client's response closes (onClientClose).
    this.inflight++;
    backend.inflight++;
    if (route.mirror !== null && !forwarded.hasBody && route.mirror.sample()) {
      sendShadow(this, route.mirror.backend, req, forwarded.headers, exchange.path);
    }
    exchange.fallback = route.fallback;
    exchange.cors = cors;
    backend.policies.retries.request(Date.now());
    // A body without a length is counted as it streams.
    if (forwarded.hasBody && forwarded.contentLength < 0) {
      (req as CountedRequest).exchange = exchange;
      (req as CountedRequest).bodyBytes = 0;
      req.on("data", countBody);
    }
    (res as ClientResponse).exchange = exchange;
    res.on("close", onClientClose);
    send(exchange);
  }

  #onRequestAgain(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (!res.writableEnded && !res.destroyed && !req.socket.destroyed) {
      this.#onRequest(req, res, (req.socket as TLSSocket).encrypted ? "https" : "http");
    }
  }

  #onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", destroyQuietly);
    const host = req.headers.host ?? "";
    const url = req.url ?? "/";
    const route = this.table.route(host, url, req.method ?? "GET", req.headers);
    if (route === undefined) {
      writeRawError(socket, 404, "not_found", `no app serves host ${normalizeHost(host)}`);
      return;
    }
    let consumer: string | null = null;
    if (route.auth !== null) {
      const verdict = route.auth.check(req, url, Date.now());
      if (typeof verdict !== "string") {
        if (verdict instanceof AuthFailure) {
          writeRawError(
            socket,
            401,
            "unauthorized",
            verdict.message,
            `WWW-Authenticate: ${verdict.challenge}`,
          );
        } else {
          void verdict.then(() => {
            if (!socket.destroyed) this.#onUpgrade(req, socket, head);
          });
        }
        return;
      }
      consumer = verdict;
    }
    if (route.aggregate !== null) {
      writeRawError(socket, 405, "method_not_allowed", "an aggregation route answers GET and HEAD");
      return;
    }
    const backend = route.backend;
    const endpoint = backend.next();
    if (endpoint === undefined) {
      writeRawError(socket, 503, "unavailable", `no running instance of ${backend.name}`);
      return;
    }
    const headers = forwardedRequest(
      req,
      true,
      (req.socket as TLSSocket).encrypted ? "https" : "http",
    ).headers;
    let target = url;
    if (route.auth !== null && consumer !== null) {
      if (route.auth.hideApiKey || route.auth.hideAuthorization) target = route.auth.hide(headers, url);
      headers.push("X-Consumer-Name", consumer);
    }
    headers.push("Connection", "Upgrade", "Upgrade", req.headers.upgrade ?? "websocket");
    // Its own connection: an upgraded socket leaves the pool for good.
    const upstream = http.request({
      host: endpoint.address,
      port: endpoint.port,
      method: req.method,
      path: rewritePath(route, target),
      headers,
      agent: false,
      timeout: this.upstreamTimeoutMs,
    });
    this.#tunnels.add(socket);
    socket.on("close", () => {
      this.#tunnels.delete(socket);
      upstream.destroy();
    });
    upstream.on("upgrade", (upRes: http.IncomingMessage, upSocket: Socket, upHead: Buffer) => {
      upSocket.setTimeout(0);
      upSocket.on("error", destroyQuietly);
      this.#tunnels.add(upSocket);
      upSocket.on("close", () => {
        this.#tunnels.delete(upSocket);
        socket.destroy();
      });
      socket.on("close", () => upSocket.destroy());
      socket.write(rawHead(upRes, false));
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      upSocket.pipe(socket);
      socket.pipe(upSocket);
    });
    // The upstream refused the upgrade: relay its answer and close.
    upstream.on("response", (upRes: http.IncomingMessage) => {
      socket.write(rawHead(upRes, true));
      upRes.pipe(socket);
    });
    upstream.on("timeout", () => {
      writeRawError(
        socket,
        504,
        "timeout",
        `${backend.name} did not answer within ${this.upstreamTimeoutMs} ms`,
      );
      upstream.destroy();
    });
    upstream.on("error", (err: NodeJS.ErrnoException) => {
      if (socket.destroyed) return;
      this.logger.warn("upgrade to upstream failed", {
        service: backend.name,
        endpoint: endpoint.instance,
        error: err,
      });
      writeRawError(
        socket,
        502,
        "bad_gateway",
        `${backend.name} did not accept the connection (${err.code ?? err.message})`,
      );
    });
    upstream.end();
  }
}

/** Sends (or re-sends) an exchange's request to its endpoint. */
function send(exchange: Exchange): void {
  const { req, endpoint } = exchange;
  exchange.attempts++;
  endpoint.inflight++;
  exchange.counted = endpoint;
  const upstream = http.request({
    host: endpoint.address,
    port: endpoint.port,
    method: req.method,
    path: exchange.path,
    headers: exchange.headers,
    agent: exchange.proxy.agent,
    timeout: exchange.proxy.upstreamTimeoutMs,
  }) as UpstreamRequest;
  upstream.exchange = exchange;
  exchange.upstream = upstream;
  upstream.on("response", onUpstreamResponse);
  upstream.on("error", onUpstreamError);
  upstream.on("timeout", onUpstreamTimeout);
  if (exchange.retryable) upstream.end();
  else req.pipe(upstream);
}

function onUpstreamResponse(this: UpstreamRequest, upRes: http.IncomingMessage): void {
  const exchange = this.exchange;
  if (exchange.state === DONE) {
    upRes.resume();
    return;
  }
  exchange.state = RELAYING;
  exchange.upstreamResponse = upRes;
  recordOutcome(exchange, (upRes.statusCode ?? 502) < 500);
  const headers = responseHeaders(upRes.rawHeaders);
  if (exchange.cors !== null) headers.push(...exchange.cors);
  exchange.res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, headers);
  (upRes as UpstreamResponse).exchange = exchange;
  upRes.on("error", onUpstreamBodyError);
  // What pipe() does, with shared handlers instead of the closures pipe() makes per call.
  upRes.on("data", onUpstreamData);
  upRes.on("end", onUpstreamEnd);
}

/**
 * A shadow copy of a request: same method, path and headers, to one instance
 * of the mirror service. Its answer and its errors are dropped; it never
 * delays or changes the real response.
 */
function sendShadow(
  proxy: GatewayProxy,
  backend: Backend,
  req: http.IncomingMessage,
  headers: string[],
  path: string,
): void {
  const endpoint = backend.next();
  if (endpoint === undefined) return;
  const shadow = http.request({
    host: endpoint.address,
    port: endpoint.port,
    method: req.method,
    path,
    headers,
    agent: proxy.agent,
    timeout: proxy.upstreamTimeoutMs,
  });
  shadow.on("response", drainShadow);
  shadow.on("error", ignoreShadowError);
  shadow.on("timeout", shadow.destroy);
  shadow.end();
}

function drainShadow(res: http.IncomingMessage): void {
  res.resume();
}

function ignoreShadowError(): void {}

/** The instance for a request, by the route's balancing. */
function pickEndpoint(route: RouteEntry, backend: Backend, req: http.IncomingMessage): Endpoint | undefined {
  const balance = route.balance;
  if (balance.kind === "round_robin") return backend.next();
  if (balance.kind === "least_request") return backend.leastRequest();
  const key = clientKey(balance, req);
  // No key (no header, no cookie yet): any instance; the app's own cookie makes the next request sticky.
  return key === undefined || key === "" ? backend.next() : backend.byKey(key);
}

/** The value that identifies a client for stickiness: its address, a header or a cookie. */
function clientKey(spec: StickySpec, req: http.IncomingMessage): string | undefined {
  if (spec.on === "ip") return clientOf(req.socket);
  if (spec.on === "header") {
    const value = req.headers[spec.name];
    return Array.isArray(value) ? value[0] : value;
  }
  return cookieValue(req.headers.cookie, spec.name);
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function releaseEndpoint(exchange: Exchange): void {
  const counted = exchange.counted;
  if (counted !== undefined) {
    counted.inflight--;
    exchange.counted = undefined;
  }
}

/** Tells the service's breaker and outlier detector how an attempt went (5xx, refused and timeouts fail). */
function recordOutcome(exchange: Exchange, success: boolean): void {
  const backend = exchange.backend;
  if (backend === undefined) return;
  const { breaker, outlier } = backend.policies;
  if (breaker === null && outlier === null) return;
  const now = Date.now();
  breaker?.record(success, now);
  outlier?.record(exchange.endpoint.instance, success, now, backend.endpoints.length);
}

function onUpstreamData(this: UpstreamResponse, chunk: Buffer): void {
  const exchange = this.exchange;
  if (exchange.res.write(chunk) || exchange.state === DONE) return;
  // The client reads slower than the upstream sends: wait for it.
  this.pause();
  if (!exchange.drainHooked) {
    exchange.drainHooked = true;
    exchange.res.on("drain", onClientDrain);
  }
}

function onClientDrain(this: ClientResponse): void {
  this.exchange.upstreamResponse?.resume();
}

function onUpstreamEnd(this: UpstreamResponse): void {
  this.exchange.res.end();
}

function onUpstreamBodyError(this: UpstreamResponse): void {
  // The upstream went away mid-response: the client must not mistake the cut body for a whole one.
  this.exchange.state = DONE;
  this.exchange.res.destroy();
}

function onUpstreamError(this: UpstreamRequest, err: NodeJS.ErrnoException): void {
  const exchange = this.exchange;
  if (exchange.state === DONE) return;
  if (exchange.state === RELAYING) {
    exchange.state = DONE;
    exchange.res.destroy();
    return;
  }
  const { proxy, req, res } = exchange;
  recordOutcome(exchange, false);
  if (
    exchange.retryable &&
    exchange.attempts === 1 &&
    CONNECTION_FAILURES.has(err.code ?? "") &&
    exchange.backend?.policies.retries.tryRetry(Date.now()) !== false
  ) {
    // Match again: the table may have changed since, and the failed instance may be gone from it.
    const table = proxy.table;
    const route = table.route(
      exchange.host,
      req.url ?? "/",
      req.method ?? "GET",
      table.matchesHeaders ? req.headers : undefined,
    );
    const next = route?.backend.nextExcept(exchange.endpoint);
    if (next !== undefined) {
      proxy.logger.debug("retrying on another endpoint", {
        failed: exchange.endpoint.instance,
        next: next.instance,
        error: err,
      });
      releaseEndpoint(exchange);
      exchange.endpoint = next;
      send(exchange);
      return;
    }
  }
  exchange.state = DONE;
  proxy.logger.warn("upstream request failed", {
    endpoint: `${exchange.endpoint.address}:${exchange.endpoint.port}`,
    instance: exchange.endpoint.instance,
    error: err,
  });
  if (exchange.fallback !== null) {
    exchange.outcome = metrics.FALLBACK_BAD_GATEWAY;
    sendFallback(res, exchange.fallback, "bad_gateway");
    return;
  }
  exchange.outcome = metrics.BAD_GATEWAY;
  sendJson(res, 502, {
    code: "bad_gateway",
    message: `instance ${exchange.endpoint.instance} did not answer (${err.code ?? err.message})`,
  });
}

function onUpstreamTimeout(this: UpstreamRequest): void {
  const exchange = this.exchange;
  if (exchange.state === WAITING) {
    recordOutcome(exchange, false);
    if (exchange.fallback !== null) {
      exchange.outcome = metrics.FALLBACK_TIMEOUT;
      sendFallback(exchange.res, exchange.fallback, "timeout");
    } else {
      exchange.outcome = metrics.TIMEOUT;
      sendJson(exchange.res, 504, {
        code: "timeout",
        message: `instance ${exchange.endpoint.instance} did not answer within ${exchange.proxy.upstreamTimeoutMs} ms`,
      });
    }
  } else if (exchange.state === RELAYING) {
    exchange.res.destroy();
  }
  exchange.state = DONE;
  this.destroy();
}

function onClientClose(this: ClientResponse): void {
  const exchange = this.exchange;
  releaseEndpoint(exchange);
  if (exchange.backend !== undefined) {
    exchange.proxy.inflight--;
    exchange.backend.inflight--;
  }
  // Counted once, when the response is over; one cut short says so (499: the client left before any answer).
  const finished = this.writableFinished;
  exchange.series?.record(
    finished || this.headersSent ? this.statusCode : 499,
    finished ? exchange.outcome : this.headersSent ? metrics.INCOMPLETE : metrics.CLIENT_CLOSED,
    performance.now() - exchange.startedAt,
  );
  // A response that finished closes normally; one that did not means the client left.
  if (!this.writableFinished && exchange.state !== DONE) {
    exchange.state = DONE;
    exchange.upstream?.destroy();
  }
}

/** Answers a request the HTTP parser refused; returns the status sent (0: none, the socket was gone). */
function onClientError(err: NodeJS.ErrnoException, socket: Duplex): number {
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return 0;
  }
  if (err.code === "HPE_HEADER_OVERFLOW") {
    writeRawError(socket, 431, "too_large", `request headers over ${MAX_HEADER_BYTES} bytes`);
    return 431;
  }
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    writeRawError(socket, 408, "timeout", "the request headers did not arrive in time");
    return 408;
  }
  writeRawError(socket, 400, "invalid", "malformed HTTP request");
  return 400;
}

interface CountedRequest extends http.IncomingMessage {
  exchange: Exchange;
  bodyBytes: number;
}

/** Counts a streamed body; past the limit the exchange ends with 413 (or is cut if the answer has begun). */
function countBody(this: CountedRequest, chunk: Buffer): void {
  this.bodyBytes += chunk.length;
  const exchange = this.exchange;
  if (this.bodyBytes <= exchange.proxy.maxBodyBytes || exchange.state === DONE) return;
  this.off("data", countBody);
  exchange.upstream?.destroy();
  if (exchange.state === WAITING && !exchange.res.headersSent) {
    exchange.state = DONE;
    exchange.res.setHeader("connection", "close");
    exchange.outcome = metrics.TOO_LARGE;
    sendJson(exchange.res, 413, {
      code: "too_large",
      message: `request body over ${exchange.proxy.maxBodyBytes} bytes`,
    });
  } else {
    exchange.state = DONE;
    exchange.res.destroy();
  }
  this.unpipe();
  this.resume();
}

function destroyQuietly(this: Duplex): void {
  this.destroy();
}

function destroyQuietlySocket(_err: Error, socket: Duplex): void {
  socket.destroy();
}

/** Listens on `port`; a port in use is a HerdError naming the flag that sets it. */
function listenOn(server: http.Server, port: number, host: string, flag: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off("listening", onListening);
      if (err.code === "EADDRINUSE") {
        reject(new HerdError("unavailable", `port ${port} is in use by another program; pass ${flag}`));
      } else if (err.code === "EACCES") {
        reject(new HerdError("unavailable", `no permission to listen on port ${port}; pass ${flag}`));
      } else reject(err);
    };
    const onListening = () => {
      server.off("error", onError);
      resolve((server.address() as AddressInfo).port);
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(port, host);
  });
}

/**
 * One pass over a request's raw headers: its Host, whether it has a body, and
 * the headers for the upstream as a raw [name, value, …] list, with hop-by-hop
 * headers dropped and X-Forwarded-* set. A request with a body keeps a
 * `Transfer-Encoding: chunked` so the upstream request is framed the same way;
 * an upgrade drops its body framing (`upgrade`), the tunnel carries the bytes.
 */
function forwardedRequest(
  req: http.IncomingMessage,
  upgrade: boolean,
  proto: "http" | "https",
): ForwardedRequest {
  const raw = req.rawHeaders;
  const out: string[] = [];
  let host: string | undefined;
  let duplicateHost = false;
  let contentLength: string | undefined;
  let chunked = false;
  let connection: string | undefined;
  let forwardedFor: string | undefined;
  let traceparent: string | undefined;
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
        contentLength ??= value;
        out.push(name, value);
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
      // HOP and X_FORWARDED_OTHER are dropped.
    }
  }
  // Headers named in Connection are hop-by-hop too; the common values name none.
  if (connection !== undefined) dropListed(out, connection);
  const hasBody = chunked || (contentLength !== undefined && contentLength !== "0");
  if (chunked && !upgrade) out.push("Transfer-Encoding", "chunked");
  const client = clientOf(req.socket);
  out.push(
    "X-Forwarded-For",
    forwardedFor === undefined ? client : `${forwardedFor}, ${client}`,
    "X-Forwarded-Proto",
    proto,
    "X-Forwarded-Host",
    host ?? "",
    "traceparent",
    nextTraceparent(traceparent),
  );
  return {
    host: host ?? "",
    duplicateHost,
    contentLength: contentLength === undefined ? -1 : Number(contentLength),
    hasBody,
    headers: out,
  };
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

/** The upstream's response headers without hop-by-hop ones, as a raw list for writeHead. */
function responseHeaders(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const kind = headerKind(raw[i]);
    if (kind !== HOP && kind !== CONNECTION && kind !== TRANSFER_ENCODING) out.push(raw[i], raw[i + 1]);
  }
  return out;
}

/** A client socket with its address as sent in X-Forwarded-For, worked out once per connection. */
interface ClientSocket extends Socket {
  herdClient?: string;
}

function clientOf(socket: Socket): string {
  const client = socket as ClientSocket;
  if (client.herdClient === undefined) client.herdClient = clientAddress(socket.remoteAddress);
  return client.herdClient;
}

function clientAddress(address: string | undefined): string {
  if (address === undefined) return "unknown";
  // IPv4 clients of a dual-stack socket appear as ::ffff:a.b.c.d; apps expect a.b.c.d.
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

function isLocalHost(host: string): boolean {
  const name = normalizeHost(host);
  return name === "localhost" || name === "127.0.0.1" || name === "[::1]";
}

/** Counts an answer the gateway gave itself (its status is on `res` once written). */
function answered(series: metrics.Series, res: http.ServerResponse, outcome: number, start: number): void {
  series.record(res.statusCode, outcome, performance.now() - start);
}

/** 429 with Retry-After and the IETF RateLimit headers (limit, remaining, reset in seconds). */
function sendRateLimited(res: http.ServerResponse, limit: RouteLimit, verdict: TakeResult): void {
  const retryAfter = Math.max(1, Math.ceil(verdict.retryAfterMs / 1000));
  res.setHeader("ratelimit-policy", `${limit.burst};w=${Math.max(1, Math.round(limit.burst / limit.rate))}`);
  res.setHeader("ratelimit", `limit=${limit.burst}, remaining=0, reset=${Math.ceil(verdict.resetMs / 1000)}`);
  sendJson(
    res,
    429,
    { code: "rate_limited", message: `rate limit reached: retry in ${retryAfter}s` },
    String(retryAfter),
  );
}

/** A JSON reply (errors are `{code, message}` like the control plane's). */
function sendJson(res: http.ServerResponse, status: number, body: unknown, retryAfter?: string): void {
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

/** 401 with the route's WWW-Authenticate challenge (and its CORS headers, so a browser can read it). */
function sendUnauthorized(res: http.ServerResponse, failure: AuthFailure, cors: string[] | null): void {
  if (cors !== null) for (let i = 0; i < cors.length; i += 2) res.setHeader(cors[i], cors[i + 1]);
  res.setHeader("www-authenticate", failure.challenge);
  sendJson(res, 401, { code: "unauthorized", message: failure.message });
}

function sendMiss(res: http.ServerResponse, table: RouteTable, host: string, url: string): void {
  const name = normalizeHost(host);
  const message = table.servesHost(host)
    ? `no app serves path ${url.split("?")[0]} on host ${name}`
    : `no app serves host ${name}`;
  sendJson(res, 404, { code: "not_found", message });
}

/** The route's degraded answer; `x-herd-fallback` says why it was given. */
function sendFallback(res: http.ServerResponse, fallback: Fallback, reason: string): void {
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

function sendUnavailable(res: http.ServerResponse, backend: Backend): void {
  const message =
    backend.down > 0
      ? `every instance of ${backend.name} fails its health probe`
      : `no running instance of ${backend.name}`;
  // Usually brief (a deploy or restart in progress), so tell clients to come back soon.
  sendJson(res, 503, { code: "unavailable", message }, "1");
}

/** The status line and headers of `res` as raw HTTP/1.1 text, for a socket outside the HTTP server. */
function rawHead(res: http.IncomingMessage, close: boolean): string {
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

function writeRawError(socket: Duplex, status: number, code: string, message: string, header?: string): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ code, message });
  const reason = http.STATUS_CODES[status] ?? "Error";
  let head = `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n`;
  if (status === 503) head += "Retry-After: 1\r\n";
  if (header !== undefined) head += `${header}\r\n`;
  socket.end(`${head}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

// Shared with aggregate.ts, whose parts are admitted, balanced and answered the same way.
export { CONNECTION_FAILURES, pickEndpoint, sendFallback, sendJson };
