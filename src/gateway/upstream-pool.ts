/**
 * The gateway's HTTP/1.1 client to its instances: a keep-alive pool of raw
 * `net` connections per instance address, with a small response parser. It
 * replaces undici's Pool on the proxied path (exchange.ts) with the same
 * handler calls and less work per request: the request head is one string
 * written with its (held) body in one write, the response head is split
 * from the first chunk that holds it, a body with a Content-Length is handed
 * on as the slices of the chunks that carry it, and timeouts are deadlines
 * checked by one sweep per pool instead of timers re-armed per request.
 *
 *   dispatch(request, handler) ─► an idle connection (last used first), a new one, or the queue
 *       connection: onConnect(abort) ─► write head (+ body) ─► parse: status line, headers
 *         ─► onHeaders(status, [name, value, …], resume, text) ─► onData(chunk)… ─► onComplete
 *       (or onError once: refused, reset, closed early, timed out, a malformed answer)
 *       a connection goes back to the pool only when the request was sent whole, the
 *       answer read whole, and neither side said `Connection: close`
 *
 * One request per connection at a time (no pipelining): a slow answer never
 * holds up another request.
 */

import net from "node:net";
import type { Readable } from "node:stream";

/** What a request asks of an instance; made once per exchange and reused for a retry or a mirror copy. */
export interface UpstreamRequest {
  /** The request target (origin form, starting with "/"). */
  path: string;
  method: string;
  /** Raw [name, value, …]; the body's framing (Content-Length) as the client sent it, if any. */
  headers: string[];
  /** No body, a held one, or the client's request streamed as it arrives. */
  body: Buffer | Readable | null;
  /** Time for the answer's head to arrive once the request is sent (ms). */
  headersTimeout: number;
  /** Time allowed between two chunks of the answer's body (ms). */
  bodyTimeout: number;
}

/** Who hears how a request went: the calls come in this order, and onError at most once instead of the rest. */
export interface UpstreamHandler {
  /** The request is on a connection and about to be written; `abort` ends it and closes that connection. */
  onConnect(abort: (err: Error) => void): void;
  /** The answer's status and headers (raw [name, value, …]); false pauses reading until `resume`. */
  onHeaders(status: number, headers: string[], resume: () => void, statusText: string): boolean;
  /** A chunk of the (decoded) body; false pauses reading until `resume`. */
  onData(chunk: Buffer): boolean;
  onComplete(): void;
  onError(err: Error): void;
}

/** Error codes of the pool's own failures (others are the socket's: ECONNREFUSED, ECONNRESET, …). */
export const CONNECT_TIMEOUT = "UPSTREAM_CONNECT_TIMEOUT";
export const HEADERS_TIMEOUT = "UPSTREAM_HEADERS_TIMEOUT";
export const BODY_TIMEOUT = "UPSTREAM_BODY_TIMEOUT";
/** The instance closed the connection before its answer was whole. */
export const CLOSED = "UPSTREAM_CLOSED";
/** The instance's answer is not HTTP/1.x as this parser reads it. */
export const BAD_RESPONSE = "UPSTREAM_BAD_RESPONSE";
/** The request cannot be written as HTTP/1.1 (a target that is not a path, a CONNECT). */
export const INVALID_REQUEST = "UPSTREAM_INVALID_REQUEST";
/** The pool was closed or destroyed before the request got a connection. */
export const POOL_CLOSED = "UPSTREAM_POOL_CLOSED";

function upstreamError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/** How a pool is set up. */
export interface UpstreamPoolOptions {
  /** Connections open at once at most; more requests wait in order. */
  connections: number;
  /** Time to open a connection (ms). */
  connectTimeoutMs: number;
  /** An idle connection closes after this long (ms); a shorter `Keep-Alive: timeout=` of the instance wins. */
  keepAliveMs: number;
}

/** How often a pool looks at its connections' deadlines (ms): the resolution of every timeout. */
const SWEEP_MS = 50;
/** What every connection reads into (see Connection's constructor). */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
/** A response head larger than this is refused (Node's server allows 16 KiB of request headers). */
const MAX_HEAD_BYTES = 64 * 1024;

/** A connection's phase. */
const CONNECTING = 0;
const IDLE = 1;
const SENDING = 2;
const CLOSING = 3;

/** What the parser expects next. */
const HEAD = 0;
const LENGTH_BODY = 1;
const CHUNK_SIZE = 2;
const CHUNK_DATA = 3;
const CHUNK_DATA_END = 4;
const TRAILERS = 5;
const UNTIL_CLOSE = 6;
const FINISHED = 7;

/** Which deadline a busy connection has. */
const NO_DEADLINE = 0;
const CONNECT_DEADLINE = 1;
const HEADERS_DEADLINE = 2;
const BODY_DEADLINE = 3;

const CRLF_CRLF = Buffer.from("\r\n\r\n");
const CHUNKED_END = Buffer.from("0\r\n\r\n");
/** A request target as undici accepted it: a path of visible ASCII (and latin1) characters. */
const VALID_PATH = /^\/[!-~\u0080-\u00ff]*$/;

interface Pending {
  request: UpstreamRequest;
  handler: UpstreamHandler;
}

/** A keep-alive pool of connections to one instance address. */
export class UpstreamPool {
  readonly host: string;
  readonly port: number;
  readonly options: UpstreamPoolOptions;
  /** No request is taken once closed (or destroyed); proxy.ts makes a new pool then. */
  closed = false;
  /** Every open (or opening) connection. */
  readonly #connections = new Set<Connection>();
  /** Idle connections, the last one used at the end (taken first: it is warm, and the others may time out). */
  readonly #idle: Connection[] = [];
  readonly #queue: Pending[] = [];
  #queueHead = 0;
  #sweep: NodeJS.Timeout | null = null;
  #drained: (() => void) | null = null;
  /** The host header written when a request has none (`address:port`). */
  readonly hostHeader: string;

  constructor(host: string, port: number, options: UpstreamPoolOptions) {
    this.host = host;
    this.port = port;
    this.options = options;
    this.hostHeader = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  }

  /** Sends `request`; `handler` hears how it goes (also when the pool is closed: onError). */
  dispatch(request: UpstreamRequest, handler: UpstreamHandler): void {
    if (this.closed) {
      handler.onError(upstreamError(POOL_CLOSED, "the upstream pool is closed"));
      return;
    }
    // A connection closed while idle leaves the list when its socket's `close` comes: skip those.
    for (let idle = this.#idle.pop(); idle !== undefined; idle = this.#idle.pop()) {
      if (idle.phase === IDLE) {
        idle.start(request, handler);
        return;
      }
    }
    if (this.#connections.size < this.options.connections) {
      this.#open(request, handler);
      return;
    }
    this.#queue.push({ request, handler });
  }

  #open(request: UpstreamRequest, handler: UpstreamHandler): void {
    const connection = new Connection(this, request, handler);
    this.#connections.add(connection);
    if (this.#sweep === null) {
      this.#sweep = setInterval(sweep, SWEEP_MS, this);
      this.#sweep.unref();
    }
  }

  /** A connection finished its request and may take another: the next waiting one, or it idles. */
  released(connection: Connection): void {
    const next = this.#takeQueued();
    if (next !== undefined) {
      connection.start(next.request, next.handler);
      return;
    }
    if (this.closed) {
      connection.close();
      return;
    }
    connection.idleSince = Date.now();
    this.#idle.push(connection);
  }

  /** A connection closed (for whatever reason): forget it, and give a waiting request a new one. */
  gone(connection: Connection): void {
    this.#connections.delete(connection);
    const at = this.#idle.indexOf(connection);
    if (at >= 0) this.#idle.splice(at, 1);
    const next = this.#takeQueued();
    if (next !== undefined) this.#open(next.request, next.handler);
    if (this.#connections.size === 0) {
      if (this.#sweep !== null) clearInterval(this.#sweep);
      this.#sweep = null;
      this.#drained?.();
    }
  }

  #takeQueued(): Pending | undefined {
    if (this.#queueHead === this.#queue.length) return undefined;
    const next = this.#queue[this.#queueHead];
    this.#queue[this.#queueHead++] = undefined as unknown as Pending;
    if (this.#queueHead === this.#queue.length) {
      this.#queue.length = 0;
      this.#queueHead = 0;
    }
    return next;
  }

  /** Checks every connection's deadline; closes connections idle past the keep-alive time. */
  checkDeadlines(): void {
    const now = Date.now();
    for (const connection of this.#connections) connection.checkDeadline(now);
  }

  /** Takes no new request; requests in flight and waiting finish, then every connection closes. */
  close(): Promise<void> {
    this.closed = true;
    for (const idle of this.#idle.splice(0)) idle.close();
    if (this.#connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#drained = resolve;
    });
  }

  /** Closes every connection now: requests in flight or waiting get onError. */
  destroy(): Promise<void> {
    this.closed = true;
    const err = upstreamError(POOL_CLOSED, "the upstream pool was destroyed");
    for (let next = this.#takeQueued(); next !== undefined; next = this.#takeQueued())
      next.handler.onError(err);
    for (const connection of [...this.#connections]) connection.fail(err);
    return Promise.resolve();
  }
}

function sweep(pool: UpstreamPool): void {
  pool.checkDeadlines();
}

/**
 * One connection and the request on it. Its handlers are bound once per
 * connection, not per request; `abort` ends only the request it was given
 * for (a request already finished is never on the connection any more).
 */
class Connection {
  readonly pool: UpstreamPool;
  readonly socket: net.Socket;
  phase = CONNECTING;
  request: UpstreamRequest | null;
  handler: UpstreamHandler | null;
  /** Which deadline runs and when it passes (Date.now() ms). */
  deadlineKind = CONNECT_DEADLINE;
  deadline: number;
  idleSince = 0;
  /** How long this connection may idle (the pool's, or the instance's shorter Keep-Alive hint). */
  keepAliveMs: number;
  /** The instance's last `Keep-Alive` header on this connection. */
  hint = "";
  // The answer being parsed.
  state = HEAD;
  /** Bytes of a head (or chunk-size line, or trailers) split over reads. */
  pending: Buffer | null = null;
  /** Bytes left of a Content-Length body or of the current chunk. */
  left = 0;
  /** The answer allows this connection to be reused (HTTP/1.1 without `Connection: close`). */
  reusable = true;
  /** The request's body has been written whole. */
  sent = false;
  paused = false;
  /** The request's streamed body, while it is being written. */
  body: Readable | null = null;
  readonly abortBound: (err: Error) => void;
  readonly resumeBound: () => void;
  readonly onBodyData: (chunk: Buffer) => void;
  readonly onBodyEnd: () => void;
  readonly onBodyGone: () => void;
  readonly onSocketDrain: () => void;
  /** The streamed body is sent chunked (its length unknown). */
  chunked = false;

  constructor(pool: UpstreamPool, request: UpstreamRequest, handler: UpstreamHandler) {
    this.pool = pool;
    this.request = request;
    this.handler = handler;
    this.keepAliveMs = pool.options.keepAliveMs;
    this.deadline = Date.now() + pool.options.connectTimeoutMs;
    this.abortBound = (err) => this.#abort(err);
    this.resumeBound = () => this.#resume();
    this.onBodyData = (chunk) => this.#bodyData(chunk);
    this.onBodyEnd = () => this.#bodyEnd();
    this.onBodyGone = () => this.#bodyGone();
    this.onSocketDrain = () => this.body?.resume();
    // Read into one buffer the whole process shares (no stream, no chunk allocated per read); what
    // outlives the call (a split head, a body piece handed on) is copied out of it.
    const socket = net.connect({
      host: pool.host,
      port: pool.port,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n: number, buffer: Uint8Array) => this.#onRead(n, buffer) },
    });
    this.socket = socket;
    socket.on("connect", () => {
      this.phase = IDLE;
      const { request: r, handler: h } = this;
      if (r !== null && h !== null) this.start(r, h);
    });
    socket.on("end", () => this.#onEnd());
    socket.on("error", (err) => this.fail(err));
    socket.on("close", () => this.#onClose());
  }

  /** Puts a request on this (connected, idle) connection and writes it. */
  start(request: UpstreamRequest, handler: UpstreamHandler): void {
    this.request = request;
    this.handler = handler;
    this.phase = SENDING;
    this.state = HEAD;
    this.pending = null;
    this.reusable = true;
    this.sent = false;
    // A timeout of 0 is none.
    this.deadlineKind = request.headersTimeout > 0 ? HEADERS_DEADLINE : NO_DEADLINE;
    this.deadline = Date.now() + request.headersTimeout;
    const method = request.method;
    const path = request.path;
    if (method === "CONNECT" || !VALID_PATH.test(path)) {
      this.handler = null;
      this.request = null;
      this.close();
      handler.onError(
        upstreamError(
          INVALID_REQUEST,
          method === "CONNECT" ? "CONNECT is not proxied" : `invalid path ${JSON.stringify(path)}`,
        ),
      );
      return;
    }
    handler.onConnect(this.abortBound);
    // The handler may have aborted at once (an exchange that ended while it waited).
    if (this.handler !== handler) return;
    let head = `${method} ${path} HTTP/1.1\r\n`;
    const headers = request.headers;
    let host = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i];
      if (name.length === 4 && !host && name.toLowerCase() === "host") host = true;
      head += `${name}: ${headers[i + 1]}\r\n`;
    }
    if (!host) head += `host: ${this.pool.hostHeader}\r\n`;
    const body = request.body;
    const socket = this.socket;
    if (body === null) {
      this.sent = true;
      socket.write(`${head}\r\n`, "latin1");
    } else if (Buffer.isBuffer(body)) {
      this.sent = true;
      socket.cork();
      socket.write(`${head}\r\n`, "latin1");
      socket.write(body);
      socket.uncork();
    } else {
      // The client's body, as it arrives: its own length if it gave one, else chunked.
      this.chunked = !hasContentLength(headers);
      socket.write(this.chunked ? `${head}transfer-encoding: chunked\r\n\r\n` : `${head}\r\n`, "latin1");
      this.body = body;
      body.on("data", this.onBodyData);
      body.on("end", this.onBodyEnd);
      body.on("aborted", this.onBodyGone);
      body.on("error", this.onBodyGone);
      socket.on("drain", this.onSocketDrain);
    }
  }

  #bodyData(chunk: Buffer): void {
    const socket = this.socket;
    // The answer is awaited from the body's last byte: an upload that moves is not cut by the headers timeout.
    if (this.deadlineKind === HEADERS_DEADLINE) {
      this.deadline = Date.now() + (this.request as UpstreamRequest).headersTimeout;
    }
    let flowing: boolean;
    if (this.chunked) {
      if (chunk.length === 0) return;
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`, "latin1");
      socket.write(chunk);
      flowing = socket.write("\r\n", "latin1");
      socket.uncork();
    } else flowing = socket.write(chunk);
    if (!flowing) this.body?.pause();
  }

  #bodyEnd(): void {
    if (this.chunked) this.socket.write(CHUNKED_END);
    this.#unhookBody();
    this.sent = true;
    // The answer may have come whole before the body was all sent.
    if (this.state === FINISHED) this.#release();
  }

  /** The client went away while its body was being sent: the instance would wait for the rest, so cut. */
  #bodyGone(): void {
    if (this.body === null) return;
    this.#unhookBody();
    this.fail(upstreamError(CLOSED, "the request body was cut by the client"));
  }

  #unhookBody(): void {
    const body = this.body;
    if (body === null) return;
    this.body = null;
    body.off("data", this.onBodyData);
    body.off("end", this.onBodyEnd);
    body.off("aborted", this.onBodyGone);
    body.off("error", this.onBodyGone);
    this.socket.off("drain", this.onSocketDrain);
  }

  #abort(err: Error): void {
    if (this.handler === null) return;
    this.fail(err);
  }

  #resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
  }

  checkDeadline(now: number): void {
    if (this.phase === IDLE) {
      if (now - this.idleSince >= this.keepAliveMs) this.close();
      return;
    }
    if (this.deadlineKind === NO_DEADLINE || now < this.deadline || this.paused) return;
    const request = this.request;
    const kind = this.deadlineKind;
    if (kind === CONNECT_DEADLINE) {
      this.fail(
        upstreamError(
          CONNECT_TIMEOUT,
          `connect to ${this.pool.hostHeader} timed out after ${this.pool.options.connectTimeoutMs} ms`,
        ),
      );
    } else if (kind === HEADERS_DEADLINE) {
      this.fail(upstreamError(HEADERS_TIMEOUT, `no answer within ${request?.headersTimeout} ms`));
    } else {
      this.fail(upstreamError(BODY_TIMEOUT, `the answer's body stalled for ${request?.bodyTimeout} ms`));
    }
  }

  // ---------------------------------------------------------------- the answer

  /** Bytes read into the shared READ_BUFFER; false stops reading (a paused answer). */
  #onRead(n: number, buffer: Uint8Array): boolean {
    this.#onData((buffer as Buffer).subarray(0, n));
    return !this.paused;
  }

  #onData(chunk: Buffer): void {
    if (this.handler === null) {
      // Bytes nobody asked for (on an idle connection): the connection cannot be trusted any more.
      if (this.phase === IDLE) this.close();
      return;
    }
    let data = chunk;
    if (this.pending !== null) {
      data = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let at = 0;
    while (at < data.length && this.handler !== null) {
      switch (this.state) {
        case HEAD:
          at = this.#head(data, at);
          break;
        case LENGTH_BODY: {
          const n = Math.min(this.left, data.length - at);
          this.left -= n;
          const piece = at === 0 && n === data.length ? data : data.subarray(at, at + n);
          at += n;
          if (this.left === 0) this.state = FINISHED;
          this.#deliver(piece);
          break;
        }
        case UNTIL_CLOSE: {
          const piece = at === 0 ? data : data.subarray(at);
          at = data.length;
          this.#deliver(piece);
          break;
        }
        case CHUNK_SIZE:
          at = this.#chunkSize(data, at);
          break;
        case CHUNK_DATA: {
          const n = Math.min(this.left, data.length - at);
          this.left -= n;
          const piece = data.subarray(at, at + n);
          at += n;
          if (this.left === 0) this.state = CHUNK_DATA_END;
          this.#deliver(piece);
          break;
        }
        case CHUNK_DATA_END:
          at = this.#chunkDataEnd(data, at);
          break;
        case TRAILERS:
          at = this.#trailers(data, at);
          break;
        default:
          // Bytes after a whole answer: the instance is not speaking HTTP/1.1 as it should.
          this.reusable = false;
          at = data.length;
      }
      if (this.state === FINISHED && this.handler !== null) {
        // Bytes after a whole answer (a body on a HEAD, more than its length): not for the next request.
        if (at < data.length) this.reusable = false;
        this.#complete();
      }
    }
  }

  /** Parses the head if it is all here; returns where the body starts (or the end, waiting for more). */
  #head(data: Buffer, at: number): number {
    const end = data.indexOf(CRLF_CRLF, at);
    if (end < 0) {
      if (data.length - at > MAX_HEAD_BYTES) this.#bad("the answer's head is too large");
      else this.pending = Buffer.from(data.subarray(at));
      return data.length;
    }
    const text = data.toString("latin1", at, end);
    let eol = text.indexOf("\r\n");
    if (eol < 0) eol = text.length;
    const first = text.slice(0, eol);
    const code = statusCode(first);
    if (code < 0) {
      this.#bad(`not an HTTP/1.x status line: ${JSON.stringify(first.slice(0, 80))}`);
      return data.length;
    }
    const http10 = first.charCodeAt(7) === 48;
    const headers: string[] = [];
    let length = -1;
    let chunked = false;
    let connection = "";
    // One line at a time, [pos, eol) of the head's text: no array of lines, no trimmed copies.
    for (let pos = eol + 2; pos < text.length; pos = eol + 2) {
      eol = text.indexOf("\r\n", pos);
      if (eol < 0) eol = text.length;
      const colon = text.indexOf(":", pos);
      if (colon <= pos || colon >= eol) {
        this.#bad(`malformed header line ${JSON.stringify(text.slice(pos, Math.min(eol, pos + 80)))}`);
        return data.length;
      }
      const name = text.slice(pos, colon);
      // The value without the optional whitespace around it (spaces and tabs, RFC 9110 §5.5).
      let from = colon + 1;
      let to = eol;
      while (from < to && isBlank(text.charCodeAt(from))) from++;
      while (to > from && isBlank(text.charCodeAt(to - 1))) to--;
      const value = text.slice(from, to);
      headers.push(name, value);
      switch (name.length) {
        case 10:
          if (name.toLowerCase() === "connection") connection = value.toLowerCase();
          else if (name.toLowerCase() === "keep-alive") this.#keepAliveHint(value);
          break;
        case 14:
          if (name.toLowerCase() === "content-length") {
            const n = /^\d{1,15}$/.test(value) ? Number(value) : -2;
            if (n === -2 || (length >= 0 && n !== length)) {
              this.#bad(`invalid Content-Length ${JSON.stringify(value)}`);
              return data.length;
            }
            length = n;
          }
          break;
        case 17:
          if (name.toLowerCase() === "transfer-encoding") chunked = value.toLowerCase().endsWith("chunked");
          break;
      }
    }
    const bodyAt = end + 4;
    if (code < 200) {
      // Interim answers (100 Continue, 103 Early Hints) come before the real one; 101 without Upgrade asked is wrong.
      if (code === 101) {
        this.#bad("101 Switching Protocols to a request that asked for none");
        return data.length;
      }
      return bodyAt;
    }
    if (http10 ? !connection.includes("keep-alive") : connection.includes("close")) this.reusable = false;
    const request = this.request as UpstreamRequest;
    if (request.method === "HEAD" || code === 204 || code === 304) this.state = FINISHED;
    else if (chunked) this.state = CHUNK_SIZE;
    else if (length >= 0) {
      this.left = length;
      this.state = length === 0 ? FINISHED : LENGTH_BODY;
    } else {
      this.state = UNTIL_CLOSE;
      this.reusable = false;
    }
    this.deadlineKind = request.bodyTimeout > 0 ? BODY_DEADLINE : NO_DEADLINE;
    this.deadline = Date.now() + request.bodyTimeout;
    const handler = this.handler as UpstreamHandler;
    const statusText = first.length > 13 ? first.slice(13) : "";
    if (!handler.onHeaders(code, headers, this.resumeBound, statusText)) this.#pause();
    return bodyAt;
  }

  #keepAliveHint(value: string): void {
    // An instance sends the same hint with every answer: read it once per connection.
    if (value === this.hint) return;
    this.hint = value;
    const timeout = /timeout=(\d+)/i.exec(value);
    // A second short of the instance's own timeout, so this side closes first.
    if (timeout !== null)
      this.keepAliveMs = Math.min(this.pool.options.keepAliveMs, Number(timeout[1]) * 1000 - 1000);
  }

  #chunkSize(data: Buffer, at: number): number {
    const end = data.indexOf(13, at);
    if (end < 0 || end + 1 >= data.length) {
      if (data.length - at > 1024) this.#bad("a chunk size line is too long");
      else this.pending = Buffer.from(data.subarray(at));
      return data.length;
    }
    if (data[end + 1] !== 10) {
      this.#bad("a chunk size line does not end with CRLF");
      return data.length;
    }
    const line = data.toString("latin1", at, end);
    const semicolon = line.indexOf(";");
    const hex = (semicolon < 0 ? line : line.slice(0, semicolon)).trim();
    if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) {
      this.#bad(`invalid chunk size ${JSON.stringify(hex.slice(0, 20))}`);
      return data.length;
    }
    const size = Number.parseInt(hex, 16);
    if (size === 0) this.state = TRAILERS;
    else {
      this.left = size;
      this.state = CHUNK_DATA;
    }
    return end + 2;
  }

  #chunkDataEnd(data: Buffer, at: number): number {
    if (data.length - at < 2) {
      this.pending = Buffer.from(data.subarray(at));
      return data.length;
    }
    if (data[at] !== 13 || data[at + 1] !== 10) {
      this.#bad("a chunk does not end with CRLF");
      return data.length;
    }
    this.state = CHUNK_SIZE;
    return at + 2;
  }

  /** Trailer lines after the last chunk, up to an empty line; they are dropped. */
  #trailers(data: Buffer, at: number): number {
    let from = at;
    for (;;) {
      const end = data.indexOf(13, from);
      if (end < 0 || end + 1 >= data.length) {
        if (data.length - at > MAX_HEAD_BYTES) this.#bad("the answer's trailers are too large");
        else this.pending = Buffer.from(data.subarray(at));
        return data.length;
      }
      if (end === from) {
        this.state = FINISHED;
        return end + 2;
      }
      from = end + 2;
    }
  }

  #deliver(piece: Buffer): void {
    if (this.state !== FINISHED && this.deadlineKind === BODY_DEADLINE) {
      this.deadline = Date.now() + (this.request as UpstreamRequest).bodyTimeout;
    }
    if (piece.length === 0) return;
    // A copy: the piece lies in the shared read buffer, and the handler may keep it (a write still queued).
    if (!(this.handler as UpstreamHandler).onData(Buffer.from(piece))) this.#pause();
  }

  #pause(): void {
    if (this.paused || this.state === FINISHED) return;
    this.paused = true;
    this.socket.pause();
  }

  #complete(): void {
    const handler = this.handler as UpstreamHandler;
    // The request is over for the handler; the connection goes back once the body is also sent.
    this.handler = null;
    this.deadlineKind = NO_DEADLINE;
    handler.onComplete();
    if (this.sent) this.#release();
    else {
      // The answer came whole before the client's body did: the instance did not wait for it, nor does this side.
      this.#unhookBody();
      this.close();
    }
  }

  #release(): void {
    this.request = null;
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    if (!this.reusable || this.phase === CLOSING) {
      this.close();
      return;
    }
    this.phase = IDLE;
    this.pool.released(this);
  }

  #bad(message: string): void {
    this.fail(upstreamError(BAD_RESPONSE, `instance answered badly: ${message}`));
  }

  /** The instance ended its side: an answer read until close is whole; anything else was cut. */
  #onEnd(): void {
    if (this.handler !== null && this.state === UNTIL_CLOSE) {
      this.state = FINISHED;
      this.#complete();
    }
    this.fail(upstreamError(CLOSED, "the instance closed the connection before its answer was whole"));
  }

  /** Ends the request on this connection (if any) with `err`, and closes the connection. */
  fail(err: Error): void {
    const handler = this.handler;
    this.handler = null;
    this.request = null;
    this.#unhookBody();
    this.close();
    if (handler !== null) handler.onError(err);
  }

  /** Closes the connection (its request, if any, is over or failed). */
  close(): void {
    if (this.phase === CLOSING) return;
    this.phase = CLOSING;
    this.deadlineKind = NO_DEADLINE;
    this.socket.destroy();
  }

  #onClose(): void {
    this.phase = CLOSING;
    if (this.handler !== null) this.fail(upstreamError(CLOSED, "the connection to the instance closed"));
    this.pool.gone(this);
  }
}

/** The status code of an `HTTP/1.x NNN text` line, or -1 when it is not one. */
function statusCode(line: string): number {
  if (line.length < 12 || !line.startsWith("HTTP/1.") || line.charCodeAt(8) !== 32) return -1;
  const minor = line.charCodeAt(7);
  if (minor !== 48 && minor !== 49) return -1;
  if (line.length > 12 && line.charCodeAt(12) !== 32) return -1;
  let code = 0;
  for (let i = 9; i < 12; i++) {
    const digit = line.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    code = code * 10 + digit;
  }
  return code;
}

/** A space or a tab. */
function isBlank(c: number): boolean {
  return c === 32 || c === 9;
}

function hasContentLength(headers: string[]): boolean {
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i];
    if (name.length === 14 && name.toLowerCase() === "content-length") return true;
  }
  return false;
}
