/**
 * The config feed an instance follows over HTTP: one channel per instance,
 * with a version cursor. The agent serves it on 127.0.0.1 and names it in the
 * instance's env (HERD_CONFIG_URL); the bench serves 10,000 subscribers with it.
 *
 *   GET /config/<id>?key=K[&since=V][&timeoutMs=T]
 *        version ≠ since (or no since) ─► 200 the EffectiveConfig JSON (ETag "V")
 *        else held until publish(id) ─► 200 the new one; after T (default 30 s) ─► 304
 *   GET /config/<id>?key=K&stream=sse   (or Accept: text/event-stream)
 *        ─► `id: V / event: config / data: <json>` now when it differs from since or
 *           Last-Event-ID, then on every publish; a comment line every 15 s
 *   bad key ─► 403; unknown id ─► 404
 *
 * The cursor is compared for difference, not order: rolling a gray version
 * back takes an instance from v8 back to v7, and its followers get v7.
 *
 * The document of a version is serialized once, whatever the number of
 * subscribers; a publish writes those bytes to every held request and stream.
 */

import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { nodeHttp } from "../common/node-http.ts";
import type { EffectiveConfig } from "../model/config.ts";

/** How long a long poll is held at most (and by default). */
export const MAX_HOLD_MS = 60_000;
const DEFAULT_HOLD_MS = 30_000;

/** Encoded versions kept (a node's instances run a few apps, each at one or two versions). */
const ENCODED_MAX = 64;

interface Encoded {
  body: Buffer;
  frame: Buffer;
  /** The long poll's response headers, Content-Length included (no chunked framing). */
  headers: string[];
}

interface Channel {
  version: number;
  doc: EffectiveConfig;
  /** The document as sent: JSON, encoded once for every subscriber. */
  body: Buffer;
  /** The SSE frame of this version, encoded once. */
  frame: Buffer;
  headers: string[];
  /** Held long polls, each with the time (ms, the feed's clock) it is answered 304 at. */
  waiters: Map<ServerResponse, number>;
  streams: Set<ServerResponse>;
}

export interface ConfigFeedOptions {
  /** Whether `key` opens instance `id`'s channel (the agent: an HMAC of the id under its own secret). */
  authorize(id: string, key: string): boolean;
  /** Comment lines on idle SSE streams, so proxies keep them open. */
  heartbeatMs?: number;
  /** How often held long polls are looked at for their hold's end (ms). */
  sweepMs?: number;
}

export class ConfigFeed {
  readonly #options: ConfigFeedOptions;
  readonly #channels = new Map<string, Channel>();
  readonly #timer: NodeJS.Timeout;
  readonly #sweeper: NodeJS.Timeout;
  #server: Server | undefined;
  /**
   * Encoded documents by `<tenant>/<app>@<version>`: a version's content never
   * changes, so the copies an agent gets for each of its instances (one per
   * instance in a heartbeat reply) are serialized once.
   */
  readonly #encoded = new Map<string, Encoded>();

  constructor(options: ConfigFeedOptions) {
    this.#options = options;
    this.#timer = setInterval(() => this.#beat(), options.heartbeatMs ?? 15_000);
    this.#timer.unref();
    // One sweep ends the holds that are over, rather than a timer per held request.
    this.#sweeper = setInterval(() => this.#sweep(), options.sweepMs ?? 250);
    this.#sweeper.unref();
  }

  /** The document a channel serves, when it has one. */
  current(id: string): EffectiveConfig | undefined {
    return this.#channels.get(id)?.doc;
  }

  /** How many long polls are held and streams open, over every channel. */
  following(): number {
    let n = 0;
    for (const ch of this.#channels.values()) {
      for (const res of ch.waiters.keys()) if (!res.destroyed) n++;
      n += ch.streams.size;
    }
    return n;
  }

  /** Makes `doc` the channel's current version and hands it to every waiting request and stream. */
  publish(id: string, doc: EffectiveConfig): void {
    let ch = this.#channels.get(id);
    if (ch && ch.version === doc.version) return;
    const { body, frame, headers } = this.#encode(doc);
    if (!ch) {
      ch = { version: doc.version, doc, body, frame, headers, waiters: new Map(), streams: new Set() };
      this.#channels.set(id, ch);
    } else {
      ch.version = doc.version;
      ch.doc = doc;
      ch.body = body;
      ch.frame = frame;
      ch.headers = headers;
    }
    // A held request whose client went away is skipped here (no close listener per request).
    for (const res of ch.waiters.keys()) if (!res.destroyed) sendDocument(res, ch);
    ch.waiters.clear();
    // SSE responses are not chunked (see handle): the frame is written as it is, one write per stream.
    for (const res of ch.streams) res.socket?.write(frame);
  }

  #encode(doc: EffectiveConfig): Encoded {
    const key = `${doc.tenant}/${doc.app}@${doc.version}`;
    let e = this.#encoded.get(key);
    if (e) return e;
    const body = JSON.stringify(doc);
    const bytes = Buffer.from(body);
    e = {
      body: bytes,
      frame: Buffer.from(`id: ${doc.version}\nevent: config\ndata: ${body}\n\n`),
      headers: [
        "content-type",
        "application/json",
        "content-length",
        String(bytes.length),
        "etag",
        `"${doc.version}"`,
        "cache-control",
        "no-store",
      ],
    };
    if (this.#encoded.size >= ENCODED_MAX) this.#encoded.delete(this.#encoded.keys().next().value as string);
    this.#encoded.set(key, e);
    return e;
  }

  /** Forgets a channel (the instance is gone): its followers are ended. */
  remove(id: string): void {
    const ch = this.#channels.get(id);
    if (!ch) return;
    this.#channels.delete(id);
    for (const res of [...ch.waiters.keys(), ...ch.streams]) res.destroy();
  }

  /** Answers one request (see the top of this file); true once it is answered or held. */
  handle(req: IncomingMessage, res: ServerResponse): true {
    // Split by hand: a WHATWG URL per request costs more than the rest of a held poll.
    const target = req.url ?? "/";
    const q = target.indexOf("?");
    const match = /^\/config\/([A-Za-z0-9][A-Za-z0-9_.-]{0,127})$/.exec(q < 0 ? target : target.slice(0, q));
    if (req.method !== "GET" || !match)
      return reply(res, 404, { code: "not_found", message: "GET /config/<instance id>" });
    const id = match[1] as string;
    const params = new URLSearchParams(q < 0 ? "" : target.slice(q + 1));
    if (!this.#options.authorize(id, params.get("key") ?? ""))
      return reply(res, 403, { code: "forbidden", message: "the key does not open this instance's config" });
    const ch = this.#channels.get(id);
    if (!ch) return reply(res, 404, { code: "not_found", message: `no config for instance ${id}` });
    const sinceText = params.get("since") ?? req.headers["last-event-id"];
    const since = sinceText === undefined ? -1 : Number(sinceText);
    if (!Number.isInteger(since))
      return reply(res, 400, { code: "invalid", message: "since: not an integer version" });
    const sse = params.get("stream") === "sse" || (req.headers.accept ?? "").includes("text/event-stream");
    if (sse) {
      // Not chunked: the stream's body runs to the connection's end, so a publish writes each
      // frame to the socket as it is (one write, no framing) and it leaves at once.
      res.useChunkedEncodingByDefault = false;
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
      res.flushHeaders();
      res.socket?.write(ch.version !== since ? ch.frame : ": waiting\n\n");
      ch.streams.add(res);
      res.once("close", () => ch.streams.delete(res));
      return true;
    }
    if (ch.version !== since) return sendDocument(res, ch);
    const holdText = params.get("timeoutMs");
    const hold = holdText === null ? DEFAULT_HOLD_MS : Number(holdText);
    if (!Number.isInteger(hold) || hold < 0 || hold > MAX_HOLD_MS)
      return reply(res, 400, { code: "invalid", message: `timeoutMs: an integer from 0 to ${MAX_HOLD_MS}` });
    if (hold === 0) return notModified(res, ch);
    ch.waiters.set(res, performance.now() + hold);
    return true;
  }

  /** Serves the feed on its own HTTP server (127.0.0.1 unless told otherwise). */
  async listen(port = 0, host = "127.0.0.1"): Promise<{ url: string; port: number }> {
    const server = nodeHttp.createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = MAX_HOLD_MS + 5_000;
    server.headersTimeout = MAX_HOLD_MS + 10_000;
    server.requestTimeout = 0;
    server.maxConnections = 100_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      // A deep accept queue: every instance of a node reconnects at once after an agent restart.
      server.listen({ port, host, backlog: 4096 }, () => resolve());
    });
    this.#server = server;
    const bound = (server.address() as AddressInfo).port;
    return { url: `http://${host}:${bound}`, port: bound };
  }

  /** Ends every follower and the server. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    clearInterval(this.#sweeper);
    for (const id of [...this.#channels.keys()]) this.remove(id);
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #beat(): void {
    for (const ch of this.#channels.values()) for (const res of ch.streams) res.socket?.write(": beat\n\n");
  }

  /** Answers 304 to the long polls whose hold is over, and forgets those whose client left. */
  #sweep(): void {
    const now = performance.now();
    for (const ch of this.#channels.values()) {
      for (const [res, until] of ch.waiters) {
        if (res.destroyed) ch.waiters.delete(res);
        else if (until <= now) {
          ch.waiters.delete(res);
          notModified(res, ch);
        }
      }
    }
  }
}

function sendDocument(res: ServerResponse, ch: Channel): true {
  res.writeHead(200, ch.headers);
  res.end(ch.body);
  return true;
}

function notModified(res: ServerResponse, ch: Channel): true {
  res.writeHead(304, ["etag", `"${ch.version}"`]);
  res.end();
  return true;
}

function reply(res: ServerResponse, status: number, body: unknown): true {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
  return true;
}
