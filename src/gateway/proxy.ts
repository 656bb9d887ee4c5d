/**
 * The gateway's HTTP server: matches each request against the current
 * RouteTable and forwards it to one of the service's running endpoints.
 *
 * The table is one reference, replaced whole (`proxy.table = next`), so a
 * request sees either the old or the new configuration, never a mix. Per
 * request the work is: one match, one header copy, one upstream request.
 *
 * Upstream requests go through undici's low-level `dispatch(options,
 * handler)` on a keep-alive pool per instance: no ClientRequest, no response
 * stream, no agent bookkeeping — the response arrives as calls on the handler,
 * and the handler is the request's own state (the Exchange), so nothing is
 * allocated per request for it. Client-side event handlers are shared module
 * functions that find their request's state on the emitter, so no closures
 * are created per request either.
 */

import http from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { type Dispatcher, Pool } from "undici";
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
import { type GatewaySpans, type TraceHop, upstreamTraceparent } from "./spans.ts";
import type { CertificateStore } from "./tls.ts";
import { nextTraceparent } from "./trace-context.ts";

/** How the proxy is set up. */
export interface ProxyOptions {
  logger: Logger;
  /**
   * An upstream silent this long (before its answer's head, or between body
   * chunks) gets a 504 (or, mid-response, the connection cut). Default 60 s;
   * a route's `timeouts.idle` overrides it.
   */
  upstreamTimeoutMs?: number;
  /** Time to open a connection to an instance. Default 5 s; a route's `timeouts.connect` overrides it. */
  connectTimeoutMs?: number;
  /** Connections per upstream instance at most (idle ones close after 4 s). Default 256. */
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
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Request headers larger than this are refused with 431 (Node's parser limit). */
export const MAX_HEADER_BYTES = 16 * 1024;
/**
 * Bodies up to this size of requests with an Idempotency-Key are held in
 * memory so that they can be sent again; larger ones stream and are not retried.
 */
export const MAX_RETRY_BODY_BYTES = 64 * 1024;

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

/**
 * Safe methods (RFC 9110 §9.2.1): sending one twice changes nothing, so a
 * failed try may be repeated. Other methods only with an Idempotency-Key.
 */
const SAFE = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

/**
 * Errors that mean the request did not get an answer because the connection
 * failed: refused, reset, closed by the instance, or not opened in time.
 */
const CONNECTION_FAILURES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  // undici: the instance closed the connection before answering.
  "UND_ERR_SOCKET",
  // undici: the connection did not open within the connect timeout.
  "UND_ERR_CONNECT_TIMEOUT",
]);

const STATUS_PATH = "/_herd/status";

/** Where an exchange is: waiting for the upstream, relaying its response, or finished. */
const WAITING = 0;
const RELAYING = 1;
const DONE = 2;

/** Why an exchange ends early; handed to undici's abort so its error says so. */
const ABORTED = Object.assign(new Error("the gateway ended the upstream request"), { code: "HERD_ABORTED" });

/** An endpoint with the keep-alive pool the proxy opened to it (set on first use). */
interface PooledEndpoint extends Endpoint {
  pool?: Pool;
  /** The connect timeout the pool was made with. */
  poolConnectMs?: number;
}

/**
 * One proxied request: its state, and at the same time undici's handler for
 * its upstream request (undici calls onConnect, onHeaders, onData,
 * onComplete or onError on it), so no handler object or closure is made.
 */
class Exchange implements Dispatcher.DispatchHandler {
  readonly proxy: GatewayProxy;
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  /** undici's dispatch options (path, method, headers, timeouts, body), made once, reused on a retry. */
  readonly options: Dispatcher.DispatchOptions;
  /** Safe method or Idempotency-Key, and no body or a buffered one: may be sent again to another endpoint. */
  retryable: boolean;
  endpoint: Endpoint;
  /** Aborts the upstream request in flight (from undici's onConnect), or null before it is on a connection. */
  abort: ((err: Error) => void) | null = null;
  /** Resumes the upstream's paused response (from undici's onHeaders). */
  resume: (() => void) | null = null;
  /** CORS headers to add to the response (raw [name, value, …]), or null. */
  cors: string[] | null = null;
  /** The route's degraded answer, for when the upstream fails. */
  fallback: Fallback | null = null;
  /** The endpoint whose in-flight count this exchange holds. */
  counted: Endpoint | undefined = undefined;
  /** The service it goes to (its breaker hears every outcome). */
  backend: Backend | undefined = undefined;
  /** The whole-request deadline's timer, or null (the route has none). */
  deadline: NodeJS.Timeout | null = null;
  /** While a body is held for retries: the timer that gives up on a client that stopped sending it. */
  stall: NodeJS.Timeout | null = null;
  /** The route's connect timeout (ms). */
  connectMs: number;
  /** A streamed body without a length, to count against the limit once it starts flowing. */
  countsBody = false;
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
    options: Dispatcher.DispatchOptions,
    retryable: boolean,
    connectMs: number,
  ) {
    this.proxy = proxy;
    this.req = req;
    this.res = res;
    this.endpoint = endpoint;
    this.options = options;
    this.retryable = retryable;
    this.connectMs = connectMs;
  }

  /** undici: the request is on a connection; `abort` ends it (and closes that connection). */
  onConnect(abort: (err?: Error) => void): void {
    // Ended while it waited for a connection (client gone, deadline): end it now.
    if (this.state === DONE) {
      abort(ABORTED);
      return;
    }
    this.abort = abort;
    if (this.countsBody) {
      // Only now: a `data` listener starts the body flowing, and bytes must not flow before undici,
      // which attaches its own listener in this same tick, is there to forward them.
      this.countsBody = false;
      this.req.on("data", countBody);
    }
  }

  /** undici: the upstream's status and headers (raw, as buffers). */
  onHeaders(status: number, raw: Buffer[], resume: () => void, statusText: string): boolean {
    if (this.state === DONE) return false;
    // 1xx interim answers (103 Early Hints) are not relayed: the final one follows.
    if (status < 200) return true;
    this.state = RELAYING;
    this.resume = resume;
    recordOutcome(this.backend, this.endpoint, status < 500);
    const headers = responseHeaders(raw);
    if (this.cors !== null) headers.push(...this.cors);
    if (statusText === "") this.res.writeHead(status, headers);
    else this.res.writeHead(status, statusText, headers);
    return true;
  }

  /** undici: a chunk of the response body; false pauses the upstream until the client drains. */
  onData(chunk: Buffer): boolean {
    if (this.res.write(chunk) || this.state === DONE) return true;
    // The client reads slower than the upstream sends: wait for it.
    if (!this.drainHooked) {
      this.drainHooked = true;
      this.res.on("drain", onClientDrain);
    }
    return false;
  }

  /** undici: the response is complete. */
  onComplete(): void {
    if (this.state === DONE) return;
    this.state = DONE;
    clearDeadline(this);
    this.res.end();
  }

  /** undici: the request failed (connection, timeout, abort), before or during the response. */
  onError(err: Error): void {
    onUpstreamError(this, err as NodeJS.ErrnoException);
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
  /** The client sent an Idempotency-Key: it may be retried whatever its method. */
  idempotencyKey: boolean;
  /** The headers for the upstream, as a raw [name, value, …] list. */
  headers: string[];
  /** The request's place in its trace, when the gateway records spans. */
  hop: TraceHop | null;
}

interface ClientResponse extends http.ServerResponse {
  exchange: Exchange;
}

/** A response whose request the gateway records spans of (spans.ts). */
interface TracedResponse extends http.ServerResponse {
  hop?: TraceHop;
  spans?: GatewaySpans;
}

/**
 * The servers' response class: the fields the proxy sets per request exist
 * from construction, so every response keeps one hidden class; added on the
 * fly they would change the shape of Node's own objects under its hot code.
 */
class GatewayResponse extends http.ServerResponse {
  exchange: Exchange | undefined = undefined;
  hop: TraceHop | undefined = undefined;
  spans: GatewaySpans | undefined = undefined;
}

/** A request that waited for its rate-limit verdict (a worker's empty lease): taken again with it. */
interface LimitedRequest extends http.IncomingMessage {
  limitVerdict?: TakeResult;
}

/** The gateway's reverse proxy. Assign `table` to reconfigure it. */
export class GatewayProxy {
  readonly server: http.Server;
  /** The HTTPS server, once `listenHttps` made it; it shares every handler with `server`. */
  httpsServer: https.Server | undefined;
  readonly logger: Logger;
  /** Default idle timeout of upstream requests (ms). */
  readonly upstreamTimeoutMs: number;
  /** Default connect timeout of upstream connections (ms). */
  readonly connectTimeoutMs: number;
  readonly maxBodyBytes: number;
  readonly maxInflight: number;
  readonly maxSocketsPerUpstream: number;
  /** Requests in flight through this process now. */
  inflight = 0;
  /** Counters of requests no route took (metrics.ts). */
  readonly unrouted = metrics.unroutedSeries();
  /** Records the spans of every request (spans.ts) when set; null: only traceparent is passed on. */
  spans: GatewaySpans | null = null;
  /** Keep-alive connections for aggregation parts (aggregate.ts), which call through node:http. */
  readonly partsAgent = new http.Agent({
    keepAlive: true,
    maxSockets: 256,
    maxFreeSockets: 64,
    scheduling: "lifo",
    timeout: 4_000,
  });
  #table: RouteTable = EMPTY_TABLE;
  /** Keep-alive pools by `address:port connectMs`; kept while some table routes to them. */
  readonly #pools = new Map<string, Pool>();
  /** Upgraded (WebSocket) connections, which the HTTP server no longer tracks. */
  readonly #tunnels = new Set<Duplex>();
  readonly #headersTimeoutMs: number;
  /** The certificates HTTPS handshakes pick from (replaced whole on reload). */
  #certificates: CertificateStore | undefined;

  constructor(options: ProxyOptions) {
    this.logger = options.logger;
    this.upstreamTimeoutMs = options.upstreamTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.maxSocketsPerUpstream = options.maxSocketsPerUpstream ?? 256;
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.maxInflight = options.maxInflight ?? 10_000;
    this.#headersTimeoutMs = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
    this.server = http.createServer(this.#serverOptions(), (req, res) => this.#onRequest(req, res, "http"));
    this.#configure(this.server);
  }

  /** Options both servers share. */
  #serverOptions(): http.ServerOptions<typeof http.IncomingMessage, typeof GatewayResponse> {
    return {
      ServerResponse: GatewayResponse,
      maxHeaderSize: MAX_HEADER_BYTES,
      // Node looks for late headers on this interval: a fraction of the timeout keeps the cut close to it.
      connectionsCheckingInterval: Math.max(100, Math.floor(this.#headersTimeoutMs / 4)),
    };
  }

  /** Timeouts and handlers both servers share: HTTPS only adds TLS in front of the same proxy. */
  #configure(server: http.Server): void {
    server.headersTimeout = this.#headersTimeoutMs;
    // Bodies may take long (uploads); a body that stalls is cut by the upstream's idle timeout (the
    // instance waits for it too) or, while the gateway holds a body to retry it, by the same timeout here.
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

  /** The table every new request is matched against. Replace it whole; never mutate it. */
  get table(): RouteTable {
    return this.#table;
  }

  set table(next: RouteTable) {
    this.#table = next;
    this.#closeUnusedPools(next);
  }

  /** The keep-alive pool to an endpoint with a connect timeout, cached on the endpoint for the next request. */
  poolFor(endpoint: Endpoint, connectMs: number): Pool {
    const pooled = endpoint as PooledEndpoint;
    const cached = pooled.pool;
    // A pool is closed when a new table no longer routes to its address; a request that picked its
    // endpoint from the old table (a body held for a retry arrives later) gets a fresh pool.
    if (cached !== undefined && pooled.poolConnectMs === connectMs && !cached.closed) return cached;
    const key = `${endpoint.address}:${endpoint.port} ${connectMs}`;
    let pool = this.#pools.get(key);
    if (pool === undefined || pool.closed) {
      const host = endpoint.address.includes(":") ? `[${endpoint.address}]` : endpoint.address;
      pool = new Pool(`http://${host}:${endpoint.port}`, {
        connections: this.maxSocketsPerUpstream,
        // One request at a time per connection: a slow answer never holds up another request.
        pipelining: 1,
        // Idle connections close before a typical upstream's keep-alive timeout (Node: 5 s); a server's
        // `Keep-Alive: timeout=` hint shortens this further.
        keepAliveTimeout: 4_000,
        keepAliveMaxTimeout: 4_000,
        connect: { timeout: connectMs },
      });
      this.#pools.set(key, pool);
    }
    // The first route's timeout is the one cached; a route with another one looks its pool up.
    if (cached === undefined || cached.closed) {
      pooled.pool = pool;
      pooled.poolConnectMs = connectMs;
    }
    return pool;
  }

  /** Closes (gracefully: requests in flight finish) the pools to addresses no route of `table` reaches. */
  #closeUnusedPools(table: RouteTable): void {
    if (this.#pools.size === 0) return;
    const used = new Set<string>();
    for (const backend of table.backends.values()) {
      for (const e of backend.endpoints) used.add(`${e.address}:${e.port}`);
    }
    for (const [key, pool] of this.#pools) {
      if (used.has(key.slice(0, key.indexOf(" ")))) continue;
      this.#pools.delete(key);
      pool.close().catch(() => {});
    }
  }

  /**
   * Listens; resolves with the port. A port in use is a HerdError that says so.
   * `reusePort`: SO_REUSEPORT, so a successor can bind the same port before this one lets go.
   */
  listen(port: number, host: string, reusePort = false): Promise<number> {
    return listenOn(this.server, port, host, "--port", reusePort);
  }

  /**
   * Serves HTTPS too, on its own port, with the same routes and handlers
   * (HTTP/1.1 over TLS). Each handshake picks its certificate by SNI.
   */
  listenHttps(
    port: number,
    host: string,
    certificates: CertificateStore,
    reusePort = false,
  ): Promise<number> {
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
    return listenOn(this.httpsServer, port, host, "--https-port", reusePort);
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
    this.partsAgent.destroy();
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((pool) => pool.destroy().catch(() => {})));
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse, proto: "http" | "https"): void {
    const start = performance.now();
    // One pass over the raw headers; `req.headers` (an object built on first use) is never read.
    const forwarded = forwardedRequest(req, proto, this.spans);
    if (forwarded.hop !== null) {
      (res as TracedResponse).hop = forwarded.hop;
      (res as TracedResponse).spans = this.spans ?? undefined;
    }
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
      // A request that waited for a worker's lease (rate-lease.ts) comes back with its verdict.
      let verdict = (req as LimitedRequest).limitVerdict;
      if (verdict === undefined) {
        const taken = route.limit.take(clientOf(req.socket), Date.now(), consumer);
        if (taken instanceof Promise) {
          void taken.then((v) => {
            (req as LimitedRequest).limitVerdict = v;
            this.#onRequestAgain(req, res);
          });
          return;
        }
        verdict = taken;
      }
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
    const backend = chooseBackend(route, req);
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
    const method = req.method ?? "GET";
    const timeouts = route.timeouts;
    const idleMs = timeouts?.idleMs ?? this.upstreamTimeoutMs;
    const options: Dispatcher.DispatchOptions = {
      path: rewritePath(route, url),
      method,
      headers: forwarded.headers,
      body: null,
      headersTimeout: idleMs,
      bodyTimeout: idleMs,
    };
    // Sent again after a connection failure: safe methods and requests with an Idempotency-Key, and
    // of those with a body only the ones small enough to hold (a streamed body cannot be replayed).
    const mayRetry = forwarded.idempotencyKey || SAFE.has(method);
    const holdBody =
      mayRetry &&
      forwarded.hasBody &&
      forwarded.contentLength >= 0 &&
      forwarded.contentLength <= MAX_RETRY_BODY_BYTES;
    if (forwarded.hasBody && !holdBody) options.body = req;
    const connectMs = timeouts?.connectMs ?? this.connectTimeoutMs;
    const exchange = new Exchange(
      this,
      req,
      res,
      endpoint,
      options,
      mayRetry && (holdBody || !forwarded.hasBody),
      connectMs,
    );
    exchange.backend = backend;
    exchange.series = series;
    exchange.startedAt = start;
    // Counted until the client's response closes (onClientClose).
    this.inflight++;
    backend.inflight++;
    if (route.mirror !== null && !forwarded.hasBody && route.mirror.sample()) {
      sendShadow(this, route.mirror.backend, options, connectMs);
    }
    exchange.fallback = route.fallback;
    exchange.cors = cors;
    backend.policies.retries.request(Date.now());
    (res as ClientResponse).exchange = exchange;
    res.on("close", onClientClose);
    const requestMs = timeouts?.requestMs;
    if (requestMs !== undefined) exchange.deadline = setTimeout(onDeadline, requestMs, exchange, requestMs);
    if (holdBody) {
      // Sent once the whole (small) body is here; a client that stalls is cut by the idle timeout.
      const held = req as HeldRequest;
      held.exchange = exchange;
      held.chunks = [];
      exchange.stall = setTimeout(onBodyStall, idleMs, exchange, idleMs);
      req.on("data", holdChunk);
      req.on("end", bodyHeld);
      return;
    }
    // A body without a length is counted as it streams (from onConnect, see there).
    if (forwarded.hasBody && forwarded.contentLength < 0) {
      (req as CountedRequest).exchange = exchange;
      (req as CountedRequest).bodyBytes = 0;
      exchange.countsBody = true;
    }
    send(exchange);
  }

  #onRequestAgain(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (!res.writableEnded && !res.destroyed && !req.socket.destroyed) {
      this.#onRequest(req, res, (req.socket as TLSSocket).encrypted ? "https" : "http");
    }
  }

  /**
   * A WebSocket (any Upgrade) request: routed like any request (splits,
   * balancing, the breaker and load shedding apply), then given its own
   * upstream connection, and the two sockets are piped together. A tunnel
   * does not count as a request in flight: it may live for hours.
   */
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
    const backend = chooseBackend(route, req);
    if (backend.breaker !== null && !backend.breaker.allow(Date.now())) {
      writeRawError(socket, 503, "circuit_open", `${backend.name} is failing: its circuit breaker is open`);
      return;
    }
    if (backend.inflight >= backend.concurrency || this.inflight >= this.maxInflight * backend.shedAbove) {
      writeRawError(socket, 503, "overloaded", `${backend.name} is shedding load: try again shortly`);
      return;
    }
    const endpoint = pickEndpoint(route, backend, req);
    if (endpoint === undefined) {
      writeRawError(socket, 503, "unavailable", `no running instance of ${backend.name}`);
      return;
    }
    const headers = forwardedRequest(
      req,
      (req.socket as TLSSocket).encrypted ? "https" : "http",
      null,
    ).headers;
    let target = url;
    if (route.auth !== null && consumer !== null) {
      if (route.auth.hideApiKey || route.auth.hideAuthorization) target = route.auth.hide(headers, url);
      headers.push("X-Consumer-Name", consumer);
    }
    headers.push("Connection", "Upgrade", "Upgrade", req.headers.upgrade ?? "websocket");
    const idleMs = route.timeouts?.idleMs ?? this.upstreamTimeoutMs;
    // Its own connection: an upgraded socket leaves the pool for good.
    const upstream = http.request({
      host: endpoint.address,
      port: endpoint.port,
      method: req.method,
      path: rewritePath(route, target),
      headers,
      agent: false,
      timeout: Math.min(idleMs, route.timeouts?.connectMs ?? this.connectTimeoutMs),
    });
    this.#tunnels.add(socket);
    socket.on("close", () => {
      this.#tunnels.delete(socket);
      upstream.destroy();
    });
    upstream.on("socket", (upSocket: Socket) => {
      // The connect timeout until connected; then the idle timeout until the answer.
      upSocket.once("connect", () => upstream.setTimeout(idleMs));
    });
    upstream.on("upgrade", (upRes: http.IncomingMessage, upSocket: Socket, upHead: Buffer) => {
      recordOutcome(backend, endpoint, true);
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
      recordOutcome(backend, endpoint, (upRes.statusCode ?? 502) < 500);
      socket.write(rawHead(upRes, true));
      upRes.pipe(socket);
    });
    upstream.on("timeout", () => {
      recordOutcome(backend, endpoint, false);
      writeRawError(socket, 504, "timeout", `${backend.name} did not answer in time`);
      upstream.destroy();
    });
    upstream.on("error", (err: NodeJS.ErrnoException) => {
      if (socket.destroyed) return;
      recordOutcome(backend, endpoint, false);
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

/** The service a request goes to: the route's own, or the one its traffic split picks. */
function chooseBackend(route: RouteEntry, req: http.IncomingMessage): Backend {
  const split = route.split;
  if (split === null) return route.backend;
  return split.choose(split.sticky === null ? undefined : clientKey(split.sticky, req));
}

/** Sends (or re-sends) an exchange's request to its endpoint's pool; undici calls the exchange back. */
function send(exchange: Exchange): void {
  const endpoint = exchange.endpoint;
  exchange.attempts++;
  endpoint.inflight++;
  exchange.counted = endpoint;
  exchange.abort = null;
  exchange.proxy.poolFor(endpoint, exchange.connectMs).dispatch(exchange.options, exchange);
}

/** Drops the answer and the errors of a shadow copy. */
const SHADOW_HANDLER: Dispatcher.DispatchHandler = {
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
  proxy: GatewayProxy,
  backend: Backend,
  options: Dispatcher.DispatchOptions,
  connectMs: number,
): void {
  const endpoint = backend.next();
  if (endpoint === undefined) return;
  proxy.poolFor(endpoint, connectMs).dispatch(options, SHADOW_HANDLER);
}

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

/** Tells a service's breaker and outlier detector how an attempt went (5xx, refused and timeouts fail). */
function recordOutcome(backend: Backend | undefined, endpoint: Endpoint, success: boolean): void {
  if (backend === undefined) return;
  const { breaker, outlier } = backend.policies;
  if (breaker === null && outlier === null) return;
  const now = Date.now();
  breaker?.record(success, now);
  outlier?.record(endpoint.instance, success, now, backend.endpoints.length);
}

/** Ends the upstream request in flight (undici closes its connection); one still queued ends on connect. */
function abortUpstream(exchange: Exchange): void {
  const abort = exchange.abort;
  exchange.abort = null;
  if (abort !== null) abort(ABORTED);
}

/** Stops the exchange's timers (the request deadline, the held body's stall timer). */
function clearDeadline(exchange: Exchange): void {
  if (exchange.deadline !== null) {
    clearTimeout(exchange.deadline);
    exchange.deadline = null;
  }
  if (exchange.stall !== null) {
    clearTimeout(exchange.stall);
    exchange.stall = null;
  }
}

function onClientDrain(this: ClientResponse): void {
  this.exchange.resume?.();
}

/** undici errors that mean the instance was too slow, not unreachable. */
const TIMEOUTS = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_CONNECT_TIMEOUT"]);

function onUpstreamError(exchange: Exchange, err: NodeJS.ErrnoException): void {
  if (exchange.state === DONE) return;
  const { proxy, res } = exchange;
  if (exchange.state === RELAYING) {
    // The upstream went away mid-response (or went silent): the client must not mistake the cut body for a whole one.
    exchange.state = DONE;
    clearDeadline(exchange);
    res.destroy();
    return;
  }
  const code = err.code ?? "";
  if (code === "UND_ERR_INVALID_ARG" || code === "UND_ERR_NOT_SUPPORTED") {
    // The request itself cannot be sent as HTTP/1.1 (e.g. a request target that is not a path).
    exchange.state = DONE;
    clearDeadline(exchange);
    sendJson(res, 400, { code: "invalid", message: `the request cannot be forwarded: ${err.message}` });
    return;
  }
  recordOutcome(exchange.backend, exchange.endpoint, false);
  if (CONNECTION_FAILURES.has(code) && exchange.backend !== undefined) {
    const backend = exchange.backend;
    backend.policies.outlier?.unreachable(exchange.endpoint.instance, Date.now(), backend.endpoints.length);
  }
  if (
    exchange.retryable &&
    exchange.attempts === 1 &&
    CONNECTION_FAILURES.has(code) &&
    exchange.backend?.policies.retries.tryRetry(Date.now()) !== false
  ) {
    // The service's backend in the current table: the failed instance may be gone from it since.
    const backend = exchange.backend;
    const current = (backend && proxy.table.backends.get(backend.service)) ?? backend;
    const next = current?.nextExcept(exchange.endpoint);
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
  clearDeadline(exchange);
  const instance = exchange.endpoint.instance;
  proxy.logger.warn("upstream request failed", {
    endpoint: `${exchange.endpoint.address}:${exchange.endpoint.port}`,
    instance,
    error: err,
  });
  if (TIMEOUTS.has(code)) {
    const message =
      code === "UND_ERR_CONNECT_TIMEOUT"
        ? `instance ${instance} did not accept a connection within ${exchange.connectMs} ms`
        : `instance ${instance} did not answer within ${exchange.options.headersTimeout} ms`;
    replyTimeout(exchange, message);
    return;
  }
  if (exchange.fallback !== null) {
    exchange.outcome = metrics.FALLBACK_BAD_GATEWAY;
    sendFallback(res, exchange.fallback, "bad_gateway");
    return;
  }
  exchange.outcome = metrics.BAD_GATEWAY;
  sendJson(res, 502, {
    code: "bad_gateway",
    message: `instance ${instance} did not answer (${code || err.message})`,
  });
}

/** 504 `timeout` (or the route's fallback). */
function replyTimeout(exchange: Exchange, message: string): void {
  if (exchange.fallback !== null) {
    exchange.outcome = metrics.FALLBACK_TIMEOUT;
    sendFallback(exchange.res, exchange.fallback, "timeout");
  } else {
    exchange.outcome = metrics.TIMEOUT;
    sendJson(exchange.res, 504, { code: "timeout", message });
  }
}

/** The route's whole-request deadline passed: 504 (or the fallback) before the answer, a cut during it. */
function onDeadline(exchange: Exchange, ms: number): void {
  exchange.deadline = null;
  if (exchange.state === DONE) return;
  const waiting = exchange.state === WAITING;
  exchange.state = DONE;
  abortUpstream(exchange);
  if (!waiting) {
    exchange.res.destroy();
    return;
  }
  recordOutcome(exchange.backend, exchange.endpoint, false);
  replyTimeout(exchange, `instance ${exchange.endpoint.instance} did not answer within the route's ${ms} ms`);
}

function onClientClose(this: ClientResponse): void {
  const exchange = this.exchange;
  releaseEndpoint(exchange);
  clearDeadline(exchange);
  if (exchange.backend !== undefined) {
    exchange.proxy.inflight--;
    exchange.backend.inflight--;
  }
  // Counted once, when the response is over; one cut short says so (499: the client left before any answer).
  const finished = this.writableFinished;
  const end = performance.now();
  const status = finished || this.headersSent ? this.statusCode : 499;
  const outcome = finished ? exchange.outcome : this.headersSent ? metrics.INCOMPLETE : metrics.CLIENT_CLOSED;
  const series = exchange.series;
  if (series !== undefined) {
    series.record(status, outcome, end - exchange.startedAt);
    const { hop, spans } = this as TracedResponse;
    if (hop !== undefined && spans !== undefined) {
      const method = exchange.req.method ?? "GET";
      const instance = exchange.endpoint.instance;
      spans.record(hop, series, method, status, metrics.OUTCOMES[outcome], exchange.startedAt, end, instance);
    }
  }
  // A response that finished closes normally; one that did not means the client left.
  if (!this.writableFinished && exchange.state !== DONE) {
    exchange.state = DONE;
    abortUpstream(exchange);
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
  const waiting = exchange.state === WAITING && !exchange.res.headersSent;
  exchange.state = DONE;
  clearDeadline(exchange);
  abortUpstream(exchange);
  if (waiting) {
    exchange.res.setHeader("connection", "close");
    exchange.outcome = metrics.TOO_LARGE;
    sendJson(exchange.res, 413, {
      code: "too_large",
      message: `request body over ${exchange.proxy.maxBodyBytes} bytes`,
    });
  } else {
    exchange.res.destroy();
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
  const exchange = this.exchange;
  if (exchange.stall !== null) {
    clearTimeout(exchange.stall);
    exchange.stall = null;
  }
  if (exchange.state === DONE) return;
  const chunks = this.chunks;
  exchange.options.body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  send(exchange);
}

/** A client that stopped sending the body the gateway waits for: 408, and the connection closed. */
function onBodyStall(exchange: Exchange, ms: number): void {
  exchange.stall = null;
  if (exchange.state === DONE) return;
  exchange.state = DONE;
  clearDeadline(exchange);
  exchange.res.setHeader("connection", "close");
  sendJson(exchange.res, 408, {
    code: "timeout",
    message: `the request body did not arrive within ${ms} ms`,
  });
}

function destroyQuietly(this: Duplex): void {
  this.destroy();
}

function destroyQuietlySocket(_err: Error, socket: Duplex): void {
  socket.destroy();
}

/** Listens on `port`; a port in use is a HerdError naming the flag that sets it. */
function listenOn(
  server: http.Server,
  port: number,
  host: string,
  flag: string,
  reusePort: boolean,
): Promise<number> {
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
    server.listen({ port, host, reusePort });
  });
}

/**
 * One pass over a request's raw headers: its Host, whether it has a body, and
 * the headers for the upstream as a raw [name, value, …] list, with hop-by-hop
 * headers dropped and X-Forwarded-* set. The body's framing is left to the
 * upstream client (undici chunks a body without a length itself); an upgrade
 * drops its body framing too, the tunnel carries the bytes.
 */
function forwardedRequest(
  req: http.IncomingMessage,
  proto: "http" | "https",
  spans: GatewaySpans | null,
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
      // HOP, EXPECT and X_FORWARDED_OTHER are dropped.
    }
  }
  // Headers named in Connection are hop-by-hop too; the common values name none.
  if (connection !== undefined) dropListed(out, connection);
  const hasBody = chunked || (contentLength !== undefined && contentLength !== "0");
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
  return {
    host: host ?? "",
    duplicateHost,
    // A chunked body's length is unknown even if a Content-Length came along (the parser lets TE win).
    contentLength: contentLength === undefined || chunked ? -1 : Number(contentLength),
    hasBody,
    idempotencyKey,
    headers: out,
    hop,
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

/** The upstream's response headers (raw buffers from undici) without hop-by-hop ones, as a raw list for writeHead. */
function responseHeaders(raw: Buffer[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toString("latin1");
    const kind = headerKind(name);
    if (kind !== HOP && kind !== CONNECTION && kind !== TRANSFER_ENCODING) {
      out.push(name, raw[i + 1].toString("latin1"));
    }
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
  const end = performance.now();
  series.record(res.statusCode, outcome, end - start);
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
