/**
 * CORS for a route, compiled once when the table is built: answers
 * preflights itself and adds the Access-Control-* headers to responses for
 * allowed origins. A response to a request from an origin not allowed gets no
 * CORS headers (the browser then blocks it); a preflight from one gets 403.
 */

import type { CorsSpec } from "../model/manifest.ts";

export class Cors {
  readonly #anyOrigin: boolean;
  readonly #origins: ReadonlySet<string>;
  readonly #credentials: boolean;
  readonly #methods: string;
  readonly #headers: string | null;
  readonly #expose: string | null;
  readonly #maxAge: string;

  constructor(spec: CorsSpec) {
    this.#anyOrigin = spec.origins.includes("*");
    this.#origins = new Set(spec.origins);
    this.#credentials = spec.credentials;
    this.#methods = spec.methods.join(", ");
    this.#headers = spec.headers.length > 0 ? spec.headers.join(", ") : null;
    this.#expose = spec.exposeHeaders.length > 0 ? spec.exposeHeaders.join(", ") : null;
    this.#maxAge = String(spec.maxAge);
  }

  allows(origin: string): boolean {
    return this.#anyOrigin || this.#origins.has(origin);
  }

  /** `Access-Control-Allow-Origin`: the origin itself when credentials are allowed (a `*` would be refused). */
  #allowOrigin(origin: string): string {
    return this.#anyOrigin && !this.#credentials ? "*" : origin;
  }

  /** Headers for the answer to a preflight from an allowed origin (raw [name, value, …]). */
  preflightHeaders(origin: string, requestedHeaders: string | undefined): string[] {
    const out = [
      "Access-Control-Allow-Origin",
      this.#allowOrigin(origin),
      "Access-Control-Allow-Methods",
      this.#methods,
    ];
    const headers = this.#headers ?? requestedHeaders;
    if (headers) out.push("Access-Control-Allow-Headers", headers);
    if (this.#credentials) out.push("Access-Control-Allow-Credentials", "true");
    out.push("Access-Control-Max-Age", this.#maxAge, "Vary", "Origin");
    return out;
  }

  /** Headers added to a response for a request from an allowed origin. */
  responseHeaders(origin: string): string[] {
    const out = ["Access-Control-Allow-Origin", this.#allowOrigin(origin), "Vary", "Origin"];
    if (this.#credentials) out.push("Access-Control-Allow-Credentials", "true");
    if (this.#expose !== null) out.push("Access-Control-Expose-Headers", this.#expose);
    return out;
  }
}
