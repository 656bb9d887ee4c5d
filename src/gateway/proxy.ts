/**
 * The gateway's HTTP and HTTPS servers: each request (and each WebSocket
 * upgrade) gets one Exchange (exchange.ts), its state for its whole life,
 * and is routed and run through its route's chain of stages (chain.ts,
 * stages.ts). The servers, their timeouts, the upstream keep-alive pools and
 * the open tunnels live here.
 *
 * The table is one reference, replaced whole (`proxy.table = next`), so a
 * request sees either the old or the new configuration, never a mix.
 */

import type http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { HerdError } from "../common/errors.ts";
import type { Logger } from "../common/log.ts";
import { nodeHttp } from "../common/node-http.ts";
import type { AcmeChallenges } from "./acme-challenge.ts";
import { Admission, type AdmissionOptions } from "./admission.ts";
import { admit } from "./chain.ts";
import { Exchange } from "./exchange.ts";
import { forwardedRequest } from "./forwarded.ts";
import type { HeldRequests } from "./hold.ts";
import * as metrics from "./metrics.ts";
import type { ProxyContext } from "./proxy-context.ts";
import { writeRawError } from "./replies.ts";
import { EMPTY_TABLE, type Endpoint, type RouteTable } from "./route-table.ts";
import type { GatewaySpans, TraceHop } from "./spans.ts";
import type { CertificateStore } from "./tls.ts";
import { destroyQuietly } from "./tunnel.ts";
import { UpstreamPool } from "./upstream-pool.ts";

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
  /** A client's keep-alive connection idle this long (to twice as long) is closed. Default 5 s. */
  keepAliveMs?: number;
  /** Requests in flight this process handles at most; past shares of it, services shed by criticality. Default 10,000. */
  maxInflight?: number;
  /** Admission by criticality while the process is saturated (admission.ts); false: off. Default on. */
  admission?: AdmissionOptions | false;
}

/** Default limits: a slow or oversized client gets a clear error instead of holding a connection. */
const DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024;
const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Request headers larger than this are refused with 431 (Node's parser limit). */
export const MAX_HEADER_BYTES = 16 * 1024;

/** An endpoint with the keep-alive pool the proxy opened to it (set on first use). */
interface PooledEndpoint extends Endpoint {
  pool?: UpstreamPool;
  /** The connect timeout the pool was made with. */
  poolConnectMs?: number;
}

/**
 * The servers' response class: the fields the proxy sets per request exist
 * from construction, so every response keeps one hidden class; added on the
 * fly they would change the shape of Node's own objects under its hot code.
 */
class GatewayResponse extends nodeHttp.ServerResponse {
  exchange: Exchange | undefined = undefined;
  hop: TraceHop | undefined = undefined;
  spans: GatewaySpans | undefined = undefined;
}

/**
 * How long a client's keep-alive connection may idle by default
 * (`keepAliveMs`): it is closed after keepAliveMs to 2 × keepAliveMs without
 * a byte either way (one sweep of the server's idle connections per
 * keepAliveMs, `sweepIdle`), and every response announces it (`Keep-Alive: timeout=5`),
 * so a client never reuses a connection this side is about to close. Node's
 * own keep-alive timeout would arm a timer on the socket after each response
 * and clear it at the next request: two timer-list operations and a Timeout
 * allocated per request.
 */
const DEFAULT_KEEP_ALIVE_MS = 5_000;

/** A server with the keep-alive time its responses announce. */
interface KeepAliveServer {
  herdKeepAliveMs?: number;
}

// Node sets each response's `_keepAliveTimeout` (what its Keep-Alive header says) from the server's
// keepAliveTimeout, which is 0 here (no timer per request): the response announces the sweep's time instead.
Object.defineProperty(GatewayResponse.prototype, "_keepAliveTimeout", {
  get(this: GatewayResponse): number {
    const server = (this.req?.socket as { server?: KeepAliveServer } | undefined)?.server;
    return server?.herdKeepAliveMs ?? DEFAULT_KEEP_ALIVE_MS;
  },
  set: () => {},
});

/** Node's list of a server's connections (the one `closeIdleConnections` reads), when this Node has one. */
interface ConnectionsList {
  idle(): { socket: IdleSocket | null }[];
}

/** A client socket with what it had read and written at the last sweep that found it idle. */
interface IdleSocket extends Duplex {
  bytesRead: number;
  bytesWritten: number;
  _httpMessage: http.ServerResponse | null;
  herdIdleBytes?: number;
}

/**
 * Closes the server's connections that carried no byte either way since the
 * last sweep and have no request open: idle for at least the sweep's interval.
 */
function sweepIdle(connections: ConnectionsList): void {
  for (const { socket } of connections.idle()) {
    if (socket === null) continue;
    const open = socket._httpMessage;
    if (open !== null && open !== undefined && !open.writableFinished) continue;
    const bytes = socket.bytesRead + socket.bytesWritten;
    if (socket.herdIdleBytes === bytes) socket.destroy();
    else socket.herdIdleBytes = bytes;
  }
}

/** The gateway's reverse proxy. Assign `table` to reconfigure it. */
export class GatewayProxy implements ProxyContext {
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
  /** Service discovery's internal listener of this process, set by it (internal-listener.ts); its series and connections count here. */
  internal: { server: http.Server; series(): metrics.Series[] } | null = null;
  /** Records the spans of every request (spans.ts) when set; null: only traceparent is passed on. */
  spans: GatewaySpans | null = null;
  /** Answers ACME HTTP-01 challenges (acme-challenge.ts) when set. */
  acmeChallenges: AcmeChallenges | null = null;
  /** Holds requests of services scaled to zero until an instance runs (hold.ts); null: they get a 503. */
  holds: HeldRequests | null = null;
  readonly admission: Admission | null;
  /** Keep-alive connections for aggregation parts (aggregate.ts), which call through node:http. */
  readonly partsAgent = new nodeHttp.Agent({
    keepAlive: true,
    maxSockets: 256,
    maxFreeSockets: 64,
    scheduling: "lifo",
    timeout: 4_000,
  });
  #table: RouteTable = EMPTY_TABLE;
  /** Keep-alive pools by `address:port connectMs`; kept while some table routes to them. */
  readonly #pools = new Map<string, UpstreamPool>();
  /** Upgraded (WebSocket) connections, which the HTTP server no longer tracks. */
  readonly tunnels = new Set<Duplex>();
  readonly #headersTimeoutMs: number;
  readonly #keepAliveMs: number;
  /** The certificates HTTPS handshakes pick from (replaced whole on reload). */
  #certificates: CertificateStore | undefined;

  constructor(options: ProxyOptions) {
    this.logger = options.logger;
    this.upstreamTimeoutMs = options.upstreamTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.maxSocketsPerUpstream = options.maxSocketsPerUpstream ?? 256;
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.maxInflight = options.maxInflight ?? 10_000;
    this.admission =
      options.admission === false ? null : new Admission(() => this.inflight, options.admission);
    this.#headersTimeoutMs = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
    this.#keepAliveMs = options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS;
    this.server = nodeHttp.createServer(this.#serverOptions(), (req, res) =>
      this.#onRequest(req, res, "http"),
    );
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
    server.on("listening", () => this.#sweepIdle(server));
    // Bodies may take long (uploads); a body that stalls is cut by the upstream's idle timeout (the
    // instance waits for it too) or, while the gateway holds a body to retry it, by the same timeout here.
    server.requestTimeout = 0;
    const proto = server instanceof https.Server ? "https" : "http";
    server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#onUpgrade(req, socket, head, proto),
    );
    server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
      const status = onClientError(err, socket);
      if (status !== 0) this.unrouted.record(status, metrics.INVALID, 0);
    });
  }

  /**
   * Idle keep-alive connections closed by one sweep per keepAliveMs instead
   * of Node's timer per request (see DEFAULT_KEEP_ALIVE_MS); on a Node without
   * the connections list, Node's own keep-alive timeout stays.
   */
  #sweepIdle(server: http.Server): void {
    const ms = this.#keepAliveMs;
    (server as KeepAliveServer).herdKeepAliveMs = ms;
    const key = Object.getOwnPropertySymbols(server).find((k) => k.description === "http.server.connections");
    const connections =
      key === undefined ? undefined : (server as unknown as Record<symbol, ConnectionsList | undefined>)[key];
    if (typeof connections?.idle !== "function") {
      server.keepAliveTimeout = ms;
      return;
    }
    server.keepAliveTimeout = 0;
    const sweep = setInterval(sweepIdle, ms, connections);
    sweep.unref();
    server.once("close", () => clearInterval(sweep));
  }

  /** Client connections open now, over HTTP, HTTPS and the internal listener (for /metrics). */
  async openConnections(): Promise<number> {
    const count = (server: http.Server | undefined) =>
      new Promise<number>((resolve) =>
        server === undefined ? resolve(0) : server.getConnections((err, n) => resolve(err ? 0 : n)),
      );
    return (
      (await count(this.server)) + (await count(this.httpsServer)) + (await count(this.internal?.server))
    );
  }

  /** The table every new request is matched against. Replace it whole; never mutate it. */
  get table(): RouteTable {
    return this.#table;
  }

  set table(next: RouteTable) {
    this.#table = next;
    this.#closeUnusedPools(next);
    this.holds?.onTable(next);
  }

  /** The keep-alive pool to an endpoint with a connect timeout, cached on the endpoint for the next request. */
  poolFor(endpoint: Endpoint, connectMs: number): UpstreamPool {
    const pooled = endpoint as PooledEndpoint;
    const cached = pooled.pool;
    // A pool is closed when a new table no longer routes to its address; a request that picked its
    // endpoint from the old table (a body held for a retry arrives later) gets a fresh pool.
    if (cached !== undefined && pooled.poolConnectMs === connectMs && !cached.closed) return cached;
    const key = `${endpoint.address}:${endpoint.port} ${connectMs}`;
    let pool = this.#pools.get(key);
    if (pool === undefined || pool.closed) {
      pool = new UpstreamPool(endpoint.address, endpoint.port, {
        connections: this.maxSocketsPerUpstream,
        // Idle connections close before a typical upstream's keep-alive timeout (Node: 5 s); a server's
        // `Keep-Alive: timeout=` hint shortens this further.
        keepAliveMs: 4_000,
        connectTimeoutMs: connectMs,
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
      void pool.close();
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
        SNICallback: (servername, done) => (this.#certificates as CertificateStore).select(servername, done),
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
    this.holds?.close();
    this.admission?.close();
    for (const socket of this.tunnels) socket.destroy();
    this.tunnels.clear();
    this.partsAgent.destroy();
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((pool) => pool.destroy()));
  }

  #onRequest(req: http.IncomingMessage, res: GatewayResponse, proto: "http" | "https"): void {
    const x = new Exchange(this, req, res, null, null, performance.now());
    // One pass over the raw headers; `req.headers` (an object built on first use) is never read.
    forwardedRequest(x, req, proto, this.spans);
    if (x.hop !== null) {
      res.hop = x.hop;
      res.spans = this.spans ?? undefined;
    }
    admit(x);
  }

  /**
   * A WebSocket (any Upgrade) request: the same route and chain as any
   * request (CORS, auth, rate limit, split, breaker, shedding), then its own
   * upstream connection (tunnel.ts). Upgrades record no spans.
   */
  #onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer, proto: "http" | "https"): void {
    socket.on("error", destroyQuietly);
    const x = new Exchange(this, req, null, socket, head, performance.now());
    forwardedRequest(x, req, proto, null);
    admit(x);
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
