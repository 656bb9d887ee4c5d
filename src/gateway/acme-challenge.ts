/**
 * ACME HTTP-01 answers: the ACME server fetches
 * `http://<host>/.well-known/acme-challenge/<token>` while the control plane
 * orders a certificate for the host (api/acme.ts); the gateway asks the
 * control plane for the token's key authorization and answers it as text.
 * Checked before routing (chain.ts), so the app behind the host never sees
 * these requests; a token the control plane does not know is a 404.
 */

import type http from "node:http";
import type { Logger } from "../common/log.ts";
import { serversOf } from "../common/server-list.ts";

/** The path prefix of HTTP-01 challenges (RFC 8555 8.3). */
export const ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/";

/** Whether a request path is an HTTP-01 challenge (cheap: the second character first). */
export function isAcmeChallenge(url: string): boolean {
  return url.charCodeAt(1) === 46 /* . */ && url.startsWith(ACME_CHALLENGE_PREFIX);
}

/** Answers challenges with what the control plane holds. */
export class AcmeChallenges {
  readonly #server: string;
  readonly #token: string;
  readonly #logger: Logger;

  constructor(options: { server: string; token: string; logger: Logger }) {
    this.#server = options.server;
    this.#token = options.token;
    this.#logger = options.logger;
  }

  /** Answers `res` for the challenge path `url`. */
  answer(url: string, res: http.ServerResponse): void {
    const token = url.slice(ACME_CHALLENGE_PREFIX.length);
    if (!/^[A-Za-z0-9_-]{1,256}$/.test(token)) {
      reply(res, 404, "no such challenge\n");
      return;
    }
    serversOf(this.#server)
      .request(`/api/v1/gateways/acme-challenges/${token}`, {
        headers: { authorization: `Bearer ${this.#token}`, accept: "application/json" },
        signal: AbortSignal.timeout(5_000),
      })
      .then(async (r) => {
        if (!r.ok) r.cancel();
        if (r.status === 404) return reply(res, 404, "no such challenge\n");
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const body = (await r.json()) as { keyAuthorization?: unknown };
        if (typeof body.keyAuthorization !== "string") throw new Error("no keyAuthorization in the answer");
        reply(res, 200, body.keyAuthorization);
      })
      .catch((err) => {
        this.#logger.warn("could not answer an ACME challenge", { token, error: err });
        reply(res, 503, "the control plane did not answer\n");
      });
  }
}

function reply(res: http.ServerResponse, status: number, text: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { "content-type": "text/plain", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
