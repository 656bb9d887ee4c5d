/**
 * Answers that stream: an NDJSON stream taken over from Fastify (deploy
 * logs, watches, drains), and the wait for a slow client to take what was
 * written. Shared by the route files (apps, logs, platform).
 */

import type { FastifyReply } from "fastify";

/** Takes over the reply for an NDJSON stream; the signal aborts when the client goes. */
export function streamNdjson(reply: FastifyReply, shutdown?: AbortSignal): AbortController {
  reply.hijack();
  reply.raw.writeHead(200, {
    "content-type": "application/x-ndjson",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
    // Begun while the server closes: the connection must not stay open as an idle keep-alive.
    ...(shutdown?.aborted ? { connection: "close" } : {}),
  });
  reply.raw.flushHeaders();
  const abort = new AbortController();
  reply.raw.on("close", () => abort.abort());
  // The server is closing: end the stream (the client reconnects to whoever serves next).
  // A stream that starts while it closes ends at once: its abort event has already fired.
  if (shutdown?.aborted) abort.abort();
  else shutdown?.addEventListener("abort", () => abort.abort(), { once: true });
  return abort;
}

/** Waits until the client has taken what was written (or went away). */
export function drained(reply: FastifyReply): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      reply.raw.off("drain", done);
      reply.raw.off("close", done);
      resolve();
    };
    reply.raw.on("drain", done);
    reply.raw.on("close", done);
  });
}
