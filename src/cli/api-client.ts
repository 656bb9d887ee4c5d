/**
 * A small client for the control-plane API (`/api/v1`): JSON calls, NDJSON
 * streams and a streamed file upload. Every failure becomes an ApiError whose
 * message a person can act on.
 *
 *   get/post/put/patch/delete ─► fetch ─► JSON reply │ {code, message, details} ─► ApiError
 *   stream          ─► fetch ─► readNdjson(body) ─► one object per line
 *   upload          ─► fetch(body = file chunks, onProgress) ─► JSON reply
 */

import { createReadStream } from "node:fs";
import { caDispatcher, trusting } from "../common/api-ca.ts";
import type { FieldProblem } from "../common/errors.ts";
import { HEDGE, hedge } from "../common/hedge.ts";

/** Query parameters; undefined values are left out. */
export type Query = Record<string, string | number | boolean | undefined>;

/** Where the client connects and as whom. */
export interface ApiClientOptions {
  /** Base URL without /api/v1. */
  url: string;
  token: string;
  /** Sent as ?tenant= on every call when set. */
  tenant?: string;
  /** The CA certificate (PEM) an https server's certificate must be signed by. */
  ca?: string;
  /** Added to the message of a 401 (where the token came from, how to get another). */
  authHint?: string;
  /** Where the URL came from, said when the server cannot be reached (`context local in …`). */
  source?: string;
}

/** An API error reply, or a failure to reach the server. */
export class ApiError extends Error {
  /** HTTP status; 0 when the server was not reached. */
  readonly status: number;
  /** The API's error code (`invalid`, `not_found`, …), or `unreachable`. */
  readonly code: string;
  readonly details: FieldProblem[];

  constructor(status: number, code: string, message: string, details: FieldProblem[] = []) {
    super(withDetails(message, details));
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** A message followed by one indented line per field problem: `  field (line 7): message`. */
export function withDetails(message: string, details: readonly FieldProblem[] | undefined): string {
  // A problem the message already states (`herd.yaml:9: alerts.x.expr: …`, or a YAML syntax error
  // `herd.yaml:5: bad indentation: …`) is not repeated under it.
  const stated = (d: FieldProblem) =>
    message.includes(`${d.field}: ${d.message}`) || (d.field === "(yaml)" && message.includes(d.message));
  const more = details?.filter((d) => !stated(d));
  if (!more?.length) return message;
  const lines = more.map((d) => `  ${d.field}${d.line ? ` (line ${d.line})` : ""}: ${d.message}`);
  return [message, ...lines].join("\n");
}

/** A file to upload as a request body. */
export interface UploadFile {
  path: string;
  size: number;
  contentType: string;
}

/** Methods a server may receive twice with the same effect: with several servers they are hedged. */
const IDEMPOTENT = new Set(["GET", "HEAD", "PUT", "DELETE"]);

/**
 * Client for one herd control plane, one token, one tenant. The URL may list
 * several servers of one control plane, comma-separated
 * (docs/high-availability.md): a request that cannot reach one goes to the next,
 * and a GET, PUT or DELETE not answered within 1 s is sent to the next as well
 * (the first answer wins; a frozen server does not hold the command).
 */
export class ApiClient {
  /** The servers, and the one in use. */
  readonly #urls: string[];
  #current = 0;
  readonly #token: string;
  readonly #tenant: string | undefined;
  readonly #trust: RequestInit;
  readonly #authHint: string | undefined;
  readonly #source: string | undefined;

  constructor(options: ApiClientOptions) {
    this.#urls = options.url
      .split(",")
      .map((u) => u.trim().replace(/\/+$/, ""))
      .filter((u) => u !== "");
    if (this.#urls.length === 0) this.#urls.push(options.url);
    this.#token = options.token;
    this.#tenant = options.tenant;
    this.#trust = trusting(options.ca === undefined ? undefined : caDispatcher(options.ca));
    this.#authHint = options.authHint;
    this.#source = options.source;
  }

  /** The server in use (base URL). */
  get url(): string {
    return this.#urls[this.#current];
  }

  /** GET a JSON reply. */
  get<T>(path: string, query?: Query): Promise<T> {
    return this.#json<T>("GET", path, query);
  }

  /** POST a JSON body (or none) and read the JSON reply. */
  post<T>(path: string, body?: unknown, query?: Query): Promise<T> {
    return this.#json<T>("POST", path, query, body);
  }

  /** PUT a JSON body and read the JSON reply. */
  put<T>(path: string, body: unknown, query?: Query): Promise<T> {
    return this.#json<T>("PUT", path, query, body);
  }

  /** PATCH with a JSON body and read the JSON reply. */
  patch<T>(path: string, body: unknown, query?: Query): Promise<T> {
    return this.#json<T>("PATCH", path, query, body);
  }

  /** DELETE and read the JSON reply. */
  delete<T>(path: string, query?: Query): Promise<T> {
    return this.#json<T>("DELETE", path, query);
  }

  /**
   * GET an NDJSON stream: yields each parsed line until the server ends it.
   * A dropped connection surfaces as an error from the iterator.
   */
  async *stream<T>(path: string, query?: Query, signal?: AbortSignal): AsyncGenerator<T> {
    const res = await this.#fetch("GET", path, query, {
      signal,
      headers: { accept: "application/x-ndjson" },
    });
    if (!res.ok) throw await errorFromResponse(res);
    if (!res.body) return;
    yield* readNdjson<T>(res.body);
  }

  /**
   * POST a file as the request body, streamed from disk. `onProgress` is
   * called with the bytes sent so far as chunks leave.
   */
  async upload<T>(
    path: string,
    file: UploadFile,
    onProgress?: (sent: number, total: number) => void,
  ): Promise<T> {
    async function* chunks(): AsyncGenerator<Uint8Array> {
      let sent = 0;
      for await (const chunk of createReadStream(file.path, { highWaterMark: 256 * 1024 })) {
        sent += (chunk as Buffer).length;
        yield chunk as Buffer;
        onProgress?.(sent, file.size);
      }
    }
    const res = await this.#fetch("POST", path, undefined, {
      body: chunks(),
      headers: { "content-type": file.contentType, "content-length": String(file.size) },
    });
    return readJson<T>(res);
  }

  /** The full URL of an API path with the query (and tenant) added. */
  urlFor(path: string, query?: Query): string {
    return this.#urlOn(this.url, path, query);
  }

  #urlOn(base: string, path: string, query?: Query): string {
    const u = new URL(`${base}/api/v1${path}`);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
    if (this.#tenant) u.searchParams.set("tenant", this.#tenant);
    return u.toString();
  }

  async #json<T>(method: string, path: string, query?: Query, body?: unknown): Promise<T> {
    const res = await this.#fetch(method, path, query, {
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: body === undefined ? {} : { "content-type": "application/json" },
    });
    return readJson<T>(res);
  }

  async #fetch(
    method: string,
    path: string,
    query: Query | undefined,
    init: {
      body?: string | AsyncIterable<Uint8Array>;
      headers: Record<string, string>;
      signal?: AbortSignal;
    },
  ): Promise<Response> {
    const send = (url: string, signal?: AbortSignal) =>
      fetch(this.#urlOn(url, path, query), {
        ...this.#trust,
        method,
        body: init.body,
        signal,
        headers: { authorization: `Bearer ${this.#token}`, accept: "application/json", ...init.headers },
        // A streamed body needs half-duplex; harmless for strings.
        ...(typeof init.body === "object" ? { duplex: "half" } : {}),
      } as RequestInit);
    let res: Response | undefined;
    if (IDEMPOTENT.has(method) && typeof init.body !== "object" && this.#urls.length > 1) {
      // Sent twice harmlessly: a server that holds it (frozen) does not hold the command (hedge.ts).
      const order = this.#urls.map((_, i) => this.#urls[(this.#current + i) % this.#urls.length]);
      try {
        const won = await hedge(order, send, {
          ...HEDGE,
          ...(init.signal ? { signal: init.signal } : {}),
          discard: (late) => void late.body?.cancel().catch(() => {}),
        });
        this.#current = this.#urls.indexOf(won.server);
        res = won.answer;
      } catch (err) {
        throw unreachable(this.url, err, this.#source);
      }
    }
    // A streamed body (an upload) can be sent once: it goes to the server in use only.
    let tries = typeof init.body === "object" ? 1 : this.#urls.length;
    while (res === undefined) {
      try {
        res = await send(this.url, init.signal);
      } catch (err) {
        if (--tries <= 0 || init.signal?.aborted) throw unreachable(this.url, err, this.#source);
        this.#current = (this.#current + 1) % this.#urls.length;
      }
    }
    if (res.status === 401 && this.#authHint) {
      const err = await errorFromResponse(res);
      throw new ApiError(401, err.code, `${err.message} (${this.#authHint})`, err.details);
    }
    return res;
  }
}

/** Turns a fetch failure into a message that says what to do. */
export function unreachable(url: string, err: unknown, source?: string): Error {
  if ((err as Error)?.name === "AbortError") return err as Error;
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  // A saved context can outlive its server: say where the URL came from and how to choose another.
  const from = source?.startsWith("context ") ? ` (from ${source}; herd context lists the others)` : "";
  if (cause?.code === "ECONNREFUSED") {
    return new ApiError(
      0,
      "unreachable",
      `cannot reach the herd server at ${url}${from}: is \`herd up\` running?`,
    );
  }
  const why = cause?.message ?? (err as Error)?.message ?? String(err);
  return new ApiError(0, "unreachable", `cannot reach the herd server at ${url}${from}: ${why}`);
}

async function readJson<T>(res: Response): Promise<T> {
  if (!res.ok) throw await errorFromResponse(res);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  if (!text) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiError(
      res.status,
      "internal",
      `the server sent a reply that is not JSON: ${text.slice(0, 200)}`,
    );
  }
}

/** Builds the ApiError for a non-2xx reply, from `{code, message, details?}` when the body has it. */
export async function errorFromResponse(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { code?: unknown; message?: unknown; details?: unknown };
    if (typeof body.message === "string") {
      const details = Array.isArray(body.details) ? (body.details as FieldProblem[]) : [];
      return new ApiError(
        res.status,
        typeof body.code === "string" ? body.code : "error",
        body.message,
        details,
      );
    }
  } catch {
    // Not JSON: fall through to the status line.
  }
  const snippet = text.trim().slice(0, 200);
  return new ApiError(
    res.status,
    "error",
    `HTTP ${res.status} ${res.statusText}${snippet ? `: ${snippet}` : ""}`,
  );
}

/**
 * Reads a body of newline-delimited JSON: yields one parsed value per
 * non-blank line, including a last line without a newline.
 */
export async function* readNdjson<T>(body: AsyncIterable<Uint8Array>): AsyncGenerator<T> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true });
    let newline = buffered.indexOf("\n");
    while (newline >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line) yield parseLine<T>(line);
      newline = buffered.indexOf("\n");
    }
  }
  buffered += decoder.decode();
  if (buffered.trim()) yield parseLine<T>(buffered.trim());
}

function parseLine<T>(line: string): T {
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`the server sent a stream line that is not JSON: ${line.slice(0, 200)}`);
  }
}
