/**
 * Route authentication (Kong-style consumers): built when a table is built,
 * used per request only on routes with `auth`.
 *
 *   build: consumers of a tenant ──► ConsumerIndex { sha256(key) → name, jwt key (iss) → verification key }
 *          route.auth            ──► RouteAuth { header names, the tenant's index, a JWKS source }
 *   request: API key header (or ?query) ─► sha256 ─► one map lookup ─► consumer
 *            Authorization: Bearer JWT ─► iss is a consumer's credential? its key : the JWKS key by kid
 *                                      ─► signature, exp/nbf/aud ─► consumer (credential's, or the claim)
 *
 * A request passes with any one configured credential; the consumer's name
 * goes upstream as X-Consumer-Name and keys `rateLimit.per: consumer`.
 */

import { createPublicKey, hash, type KeyObject } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Logger } from "../common/log.ts";
import type { UrlGuard } from "../common/url-guard.ts";
import type { AuthSpec } from "../model/manifest.ts";
import type { Consumer } from "../model/objects.ts";
import { FileJwks, type Jwks, type JwksTiming, RemoteJwks } from "./jwks.ts";
import { claimsProblem, decodeJwt, type JwtKey, signatureValid } from "./jwt.ts";

/** A refused request: the 401's message and its WWW-Authenticate challenge. */
export class AuthFailure {
  readonly message: string;
  readonly challenge: string;

  constructor(message: string, challenge: string) {
    this.message = message;
    this.challenge = challenge;
  }
}

/** What `RouteAuth.check` found: the consumer's name, a refusal, or a key fetch to wait for. */
export type AuthVerdict = string | AuthFailure | Promise<void>;

/** One tenant's consumers, indexed for lookups by credential. */
export class ConsumerIndex {
  /** sha256 hex of an API key → consumer name. */
  readonly byKeyHash = new Map<string, string>();
  /**
   * API keys already found → consumer name, so a known key costs a map
   * lookup instead of a sha256 per request (about 4 µs). Only keys that
   * matched are kept, at most KNOWN_KEYS (then it starts over); the index is
   * made anew with every table, so a revoked key leaves with the table that had it.
   */
  readonly knownKeys = new Map<string, string>();
  /** A JWT credential's key (the tokens' `iss`) → its consumer and verification key. */
  readonly byIssuer = new Map<string, { consumer: string; key: JwtKey }>();
}

const EMPTY_INDEX = new ConsumerIndex();
/** Most API keys a consumer index remembers in plain (knownKeys). */
const KNOWN_KEYS = 4096;

/** What auth carries from one table to the next: parsed keys and JWKS caches, so a rebuild redoes no work. */
export interface AuthState {
  /** Parsed PEM public keys by their text. */
  readonly pems: Map<string, KeyObject>;
  /** JWKS by `file:PATH` or `url:URL`. */
  readonly jwks: Map<string, Jwks>;
}

export const emptyAuthState = (): AuthState => ({ pems: new Map(), jwks: new Map() });

/**
 * Indexes consumers by tenant. A JWT credential key used twice in a tenant is
 * a problem: the first consumer by name keeps it. `previous` lends parsed keys.
 */
export function indexConsumers(
  consumers: readonly Consumer[],
  state: AuthState,
  previous: AuthState | undefined,
  problems: string[],
): Map<string, ConsumerIndex> {
  const byTenant = new Map<string, ConsumerIndex>();
  const sorted = [...consumers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const consumer of sorted) {
    let index = byTenant.get(consumer.tenant);
    if (index === undefined) {
      index = new ConsumerIndex();
      byTenant.set(consumer.tenant, index);
    }
    for (const key of consumer.keys ?? []) index.byKeyHash.set(key.hash, consumer.name);
    for (const credential of consumer.jwt ?? []) {
      const owner = index.byIssuer.get(credential.key);
      if (owner !== undefined) {
        problems.push(
          `JWT credential key ${credential.key} of tenant ${consumer.tenant} belongs to ${owner.consumer} and ${consumer.name}; ${owner.consumer} keeps it`,
        );
        continue;
      }
      try {
        index.byIssuer.set(credential.key, {
          consumer: consumer.name,
          key: jwtKey(credential, state, previous),
        });
      } catch (err) {
        problems.push(
          `JWT credential ${credential.id} of consumer ${consumer.tenant}/${consumer.name} is unusable: ${(err as Error).message}`,
        );
      }
    }
  }
  return byTenant;
}

function jwtKey(
  credential: Consumer["jwt"][number],
  state: AuthState,
  previous: AuthState | undefined,
): JwtKey {
  if (credential.algorithm === "HS256") {
    if (!credential.secret) throw new Error("HS256 without a secret");
    return { alg: "HS256", secret: Buffer.from(credential.secret, "utf8") };
  }
  const pem = credential.publicKey ?? "";
  let key = state.pems.get(pem) ?? previous?.pems.get(pem);
  if (key === undefined) {
    key = createPublicKey(pem);
    if (key.asymmetricKeyType !== "rsa")
      throw new Error(`RS256 needs an RSA key, not ${key.asymmetricKeyType}`);
  }
  state.pems.set(pem, key);
  return { alg: "RS256", publicKey: key };
}

/** The JWKS for a route: from the previous table when the source is the same (a file only if unchanged). */
function jwksFor(spec: { file: string } | { url: string }, ctx: RouteAuthContext): Jwks | null {
  const { state, previous, problems } = ctx;
  const id = "file" in spec ? `file:${spec.file}` : `url:${spec.url}`;
  const built = state.jwks.get(id);
  if (built !== undefined) return built;
  const kept = previous?.jwks.get(id);
  let jwks: Jwks;
  if ("file" in spec) {
    try {
      jwks = FileJwks.load(spec.file, ctx.jwksDir, kept as FileJwks | undefined);
    } catch (err) {
      problems.push(`JWKS file ${spec.file} cannot be used: ${(err as Error).message}`);
      return null;
    }
  } else {
    const remote =
      (kept as RemoteJwks | undefined) ?? new RemoteJwks(spec.url, ctx.logger, ctx.jwksTiming, ctx.guard);
    remote.prefetch(Date.now());
    jwks = remote;
  }
  state.jwks.set(id, jwks);
  return jwks;
}

/** What RouteAuth needs from the build. */
export interface RouteAuthContext {
  consumers: ReadonlyMap<string, ConsumerIndex>;
  state: AuthState;
  previous: AuthState | undefined;
  logger: Logger | undefined;
  jwksTiming: JwksTiming | undefined;
  /** The only directory JWKS files are read from (null: none are). */
  jwksDir: string | null;
  /** Checks JWKS URLs (internal addresses, redirects, size). */
  guard: UrlGuard | undefined;
  problems: string[];
}

/** A route's authentication, compiled: which credentials it takes and how they are checked. */
export class RouteAuth {
  /** Lowercase header with the API key, or null when API keys are not accepted. */
  readonly apiKeyHeader: string | null;
  /** Query parameter that may carry the key instead, or null. */
  readonly apiKeyQuery: string | null;
  readonly jwt: boolean;
  /** Remove the credentials before forwarding. */
  readonly hideApiKey: boolean;
  readonly hideAuthorization: boolean;
  readonly #consumers: ConsumerIndex;
  readonly #jwks: Jwks | null;
  readonly #issuer: string | undefined;
  readonly #audience: string | undefined;
  readonly #claim: string;
  /** WWW-Authenticate when no credential came. */
  readonly #challenge: string;
  readonly #apiKeyChallenge: string;
  readonly #missing: AuthFailure;
  readonly #unknownKey: AuthFailure;

  constructor(spec: AuthSpec, tenant: string, ctx: RouteAuthContext) {
    this.apiKeyHeader = spec.apiKey?.header ?? null;
    this.apiKeyQuery = spec.apiKey?.query ?? null;
    this.jwt = spec.jwt !== undefined;
    this.hideApiKey = spec.apiKey?.hideCredentials ?? false;
    this.hideAuthorization = spec.jwt?.hideCredentials ?? false;
    this.#consumers = ctx.consumers.get(tenant) ?? EMPTY_INDEX;
    this.#jwks = spec.jwt?.jwks ? jwksFor(spec.jwt.jwks, ctx) : null;
    this.#issuer = spec.jwt?.issuer;
    this.#audience = spec.jwt?.audience;
    this.#claim = spec.jwt?.claim ?? "sub";
    const challenges: string[] = [];
    const wanted: string[] = [];
    this.#apiKeyChallenge =
      this.apiKeyHeader === null ? "" : `ApiKey realm="herd", header="${this.apiKeyHeader}"`;
    if (this.apiKeyHeader !== null) {
      challenges.push(this.#apiKeyChallenge);
      wanted.push(
        `an API key in the ${this.apiKeyHeader} header${this.apiKeyQuery ? ` or the ${this.apiKeyQuery} query parameter` : ""}`,
      );
    }
    if (this.jwt) {
      challenges.push('Bearer realm="herd"');
      wanted.push("a JWT in Authorization: Bearer");
    }
    this.#challenge = challenges.join(", ");
    this.#missing = new AuthFailure(`this route needs ${wanted.join(" or ")}`, this.#challenge);
    this.#unknownKey = new AuthFailure("unknown API key", this.#challenge);
  }

  /**
   * Finds the request's consumer. `url` is the request target (for the query
   * parameter). Only API keys are looked at when one is sent; else the bearer token.
   */
  check(req: IncomingMessage, url: string, now: number): AuthVerdict {
    const raw = req.rawHeaders;
    if (this.apiKeyHeader !== null) {
      let key = rawHeader(raw, this.apiKeyHeader);
      if (key === undefined && this.apiKeyQuery !== null) key = queryParam(url, this.apiKeyQuery);
      if (key !== undefined) {
        const index = this.#consumers;
        const known = index.knownKeys.get(key);
        if (known !== undefined) return known;
        const consumer = index.byKeyHash.get(hash("sha256", key, "hex"));
        if (consumer === undefined) return this.#unknownKey;
        if (index.knownKeys.size >= KNOWN_KEYS) index.knownKeys.clear();
        index.knownKeys.set(key, consumer);
        return consumer;
      }
    }
    if (this.jwt) {
      const authorization = rawHeader(raw, "authorization");
      if (authorization !== undefined && authorization.length > 7 && /^bearer /i.test(authorization)) {
        return this.#checkToken(authorization.slice(7).trim(), now);
      }
    }
    return this.#missing;
  }

  #checkToken(token: string, now: number): AuthVerdict {
    const jwt = decodeJwt(token);
    if (typeof jwt === "string") return this.#invalid(jwt);
    if (jwt.header.crit !== undefined) return this.#invalid("the token has critical header parameters");
    const iss = jwt.payload.iss;
    // A consumer's own credential, found by the token's issuer.
    const credential = typeof iss === "string" ? this.#consumers.byIssuer.get(iss) : undefined;
    let consumer: string;
    if (credential !== undefined) {
      if (!signatureValid(jwt, credential.key)) {
        return this.#invalid(
          jwt.header.alg === credential.key.alg
            ? "the token's signature does not verify"
            : `the token is signed with ${String(jwt.header.alg)}, the credential ${iss} takes ${credential.key.alg}`,
        );
      }
      consumer = credential.consumer;
    } else if (this.#jwks !== null) {
      if (jwt.header.alg !== "RS256")
        return this.#invalid(`the token's algorithm must be RS256, not ${String(jwt.header.alg)}`);
      const kid = typeof jwt.header.kid === "string" ? jwt.header.kid : undefined;
      const key = this.#jwks.key(kid, now);
      if (key === undefined) {
        return this.#invalid(
          kid === undefined ? "the token has no kid" : `no key with kid ${kid} in the JWKS`,
        );
      }
      if (key instanceof Promise) return key;
      if (!signatureValid(jwt, { alg: "RS256", publicKey: key })) {
        return this.#invalid("the token's signature does not verify");
      }
      if (this.#issuer !== undefined && iss !== this.#issuer) {
        return this.#invalid(`the token's issuer is not ${this.#issuer}`);
      }
      const claimed = jwt.payload[this.#claim];
      // It goes upstream in a header: a short, printable string only.
      if (typeof claimed !== "string" || !CONSUMER_NAME.test(claimed)) {
        return this.#invalid(`the token's ${this.#claim} claim does not name a consumer`);
      }
      consumer = claimed;
    } else {
      return this.#invalid(
        typeof iss === "string"
          ? `no JWT credential with key ${iss}`
          : "the token has no iss naming a JWT credential",
      );
    }
    const problem = claimsProblem(jwt.payload, now, this.#audience);
    if (problem !== null) return this.#invalid(problem.message);
    return consumer;
  }

  /** A refused token: RFC 6750's invalid_token challenge (after the API-key one, when the route takes keys too). */
  #invalid(message: string): AuthFailure {
    const bearer = `Bearer realm="herd", error="invalid_token", error_description="${message.replaceAll('"', "'")}"`;
    return new AuthFailure(
      message,
      this.apiKeyHeader === null ? bearer : `${this.#apiKeyChallenge}, ${bearer}`,
    );
  }

  /**
   * Removes the route's credentials from what goes upstream (raw header list,
   * request target), when it is told to hide them. Returns the target to forward.
   */
  hide(headers: string[], url: string): string {
    let kept = 0;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i].toLowerCase();
      if (this.hideApiKey && name === this.apiKeyHeader) continue;
      if (this.hideAuthorization && name === "authorization") continue;
      headers[kept++] = headers[i];
      headers[kept++] = headers[i + 1];
    }
    headers.length = kept;
    return this.hideApiKey && this.apiKeyQuery !== null ? withoutQueryParam(url, this.apiKeyQuery) : url;
  }
}

/** What a JWKS token's claim may be to name a consumer: visible ASCII, at most 200 characters. */
const CONSUMER_NAME = /^[\x21-\x7e]{1,200}$/;

/** A request header's first value by lowercase name, from the raw list (no `req.headers` object built). */
export function rawHeader(raw: readonly string[], lowerName: string): string | undefined {
  const length = lowerName.length;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name.length === length && (name === lowerName || name.toLowerCase() === lowerName)) return raw[i + 1];
  }
  return undefined;
}

/** A query parameter's decoded value, or undefined. */
export function queryParam(url: string, name: string): string | undefined {
  const q = url.indexOf("?");
  if (q === -1) return undefined;
  for (const part of url.slice(q + 1).split("&")) {
    const eq = part.indexOf("=");
    if ((eq === -1 ? part : part.slice(0, eq)) !== name) continue;
    try {
      return eq === -1 ? "" : decodeURIComponent(part.slice(eq + 1).replaceAll("+", " "));
    } catch {
      return part.slice(eq + 1);
    }
  }
  return undefined;
}

function withoutQueryParam(url: string, name: string): string {
  const q = url.indexOf("?");
  if (q === -1) return url;
  const rest = url
    .slice(q + 1)
    .split("&")
    .filter((part) => {
      const eq = part.indexOf("=");
      return (eq === -1 ? part : part.slice(0, eq)) !== name;
    });
  return rest.length === 0 ? url.slice(0, q) : `${url.slice(0, q)}?${rest.join("&")}`;
}
