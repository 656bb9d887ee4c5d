/**
 * DockerApi: the Docker engine's HTTP API on its unix socket, through
 * node:http (a dozen calls; a client library would bring more than it saves).
 * Every answer outside 2xx (and 304, "already so") becomes a HerdError carrying the engine's message.
 */

import type { Readable } from "node:stream";
import { HerdError } from "../common/errors.ts";
import { nodeHttp } from "../common/node-http.ts";

// node:http through require (common/node-http.ts): its ES import would load Node's bundled undici.
const { request } = nodeHttp;

/** The API version herd speaks: Docker 20.10 (Debian 12's docker.io) and later accept it. */
export const DOCKER_API_VERSION = "v1.41";

export interface DockerCall {
  method?: string;
  /** Path after the version, e.g. `/containers/json`. */
  path: string;
  query?: Record<string, string>;
  /** A JSON body, or a stream sent as it is (an image tarball). */
  body?: unknown;
  /** Extra request headers (X-Registry-Auth for a push). */
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** One engine, reached on `socket` (e.g. /run/docker.sock). */
export class DockerApi {
  readonly socket: string;

  constructor(socket: string) {
    this.socket = socket;
  }

  /** Calls the engine and returns its JSON answer (undefined when it has no body). */
  async call<T = unknown>(c: DockerCall): Promise<T> {
    const text = await this.#send(c);
    return (text.trim() === "" ? undefined : JSON.parse(text)) as T;
  }

  /** Calls the engine and returns its answer as text (a progress stream, a tar listing). */
  text(c: DockerCall): Promise<string> {
    return this.#send(c);
  }

  #send(c: DockerCall): Promise<string> {
    const query = c.query ? `?${new URLSearchParams(c.query)}` : "";
    const stream = isStream(c.body) ? c.body : undefined;
    const json = c.body !== undefined && !stream ? JSON.stringify(c.body) : undefined;
    const headers: Record<string, string> = { ...c.headers };
    if (json !== undefined) headers["content-type"] = "application/json";
    if (stream) headers["content-type"] = "application/x-tar";
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socket,
          method: c.method ?? "GET",
          path: `/${DOCKER_API_VERSION}${c.path}${query}`,
          headers,
          signal: c.signal,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            const status = res.statusCode ?? 0;
            // 304: already so (a start of a started container, a stop of a stopped one): nothing to do.
            if ((status >= 200 && status < 300) || status === 304) return resolve(text);
            reject(engineError(status, c, text));
          });
        },
      );
      req.on("error", (err) =>
        reject(
          (err as NodeJS.ErrnoException).name === "AbortError"
            ? err
            : new HerdError(
                "unavailable",
                `the Docker engine on ${this.socket} cannot be reached: ${err.message}`,
              ),
        ),
      );
      if (stream) stream.pipe(req);
      else req.end(json);
    });
  }
}

function isStream(body: unknown): body is Readable {
  return typeof body === "object" && body !== null && typeof (body as Readable).pipe === "function";
}

function engineError(status: number, c: DockerCall, text: string): HerdError {
  let message = text.trim();
  try {
    message = (JSON.parse(text) as { message?: string }).message ?? message;
  } catch {
    // not JSON: the text as it is
  }
  const what = `docker ${c.method ?? "GET"} ${c.path}: ${message}`;
  if (status === 404) return new HerdError("not_found", what);
  if (status === 409) return new HerdError("conflict", what);
  if (status === 400) return new HerdError("invalid", what);
  return new HerdError("unavailable", what);
}
