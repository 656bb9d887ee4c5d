/**
 * JSON Web Key Sets: an identity provider's public keys, by `kid`. From a
 * file they are read when a table is built (again only when the file
 * changed); from a URL they are fetched by the gateway and cached:
 *
 *   build ──► RemoteJwks (kept across tables by URL) ──► first fetch starts at once
 *   request: kid known ──► key (if the keys are older than 5 min, a refresh starts in the background)
 *            kid unknown ─► a refetch, at most every 30 s; the request waits for it
 *                           (a key rotation is picked up on the first token signed with the new key)
 */

import { createPublicKey, type JsonWebKeyInput, type KeyObject } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import type { Logger } from "../common/log.ts";

/** Keys older than this are refreshed (in the background; the old ones serve meanwhile). */
export const JWKS_MAX_AGE_MS = 5 * 60_000;
/** An unknown `kid` refetches the set at most this often. */
export const JWKS_COOLDOWN_MS = 30_000;
const FETCH_TIMEOUT_MS = 5_000;

/** How long fetched keys stay fresh, and how often an unknown kid may refetch (defaults above). */
export interface JwksTiming {
  maxAgeMs?: number;
  cooldownMs?: number;
}

/** RS256 public keys by kid; `only` is the key to use for tokens without a kid when the set has one key. */
export interface KeySet {
  byKid: ReadonlyMap<string, KeyObject>;
  only: KeyObject | null;
}

export const EMPTY_KEY_SET: KeySet = { byKid: new Map(), only: null };

/** Parses a JWKS document; keys that are not RSA signing keys are skipped. Throws when it is not a JWKS. */
export function parseJwks(document: unknown): KeySet {
  const keys = (document as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new Error("not a JWKS: no keys array");
  const byKid = new Map<string, KeyObject>();
  const all: KeyObject[] = [];
  for (const jwk of keys) {
    if (typeof jwk !== "object" || jwk === null) continue;
    const { kty, use, alg, kid } = jwk as Record<string, unknown>;
    if (kty !== "RSA" || (use !== undefined && use !== "sig") || (alg !== undefined && alg !== "RS256"))
      continue;
    let key: KeyObject;
    try {
      key = createPublicKey({ key: jwk, format: "jwk" } as JsonWebKeyInput);
    } catch {
      continue;
    }
    all.push(key);
    if (typeof kid === "string") byKid.set(kid, key);
  }
  return { byKid, only: all.length === 1 ? all[0] : null };
}

/** A JWKS source: where a route's identity-provider keys come from. */
export interface Jwks {
  /** What it reads, for messages. */
  readonly source: string;
  /**
   * The key for `kid` (undefined: the token has none): the key; undefined when
   * there is none; or a promise to wait on before asking again (a fetch).
   */
  key(kid: string | undefined, now: number): KeyObject | undefined | Promise<void>;
}

function pick(keys: KeySet, kid: string | undefined): KeyObject | undefined {
  return kid === undefined ? (keys.only ?? undefined) : keys.byKid.get(kid);
}

/** Keys read from a file when the table is built. */
export class FileJwks implements Jwks {
  readonly source: string;
  /** The file's mtime when read, so an unchanged file is not read again on the next build. */
  readonly mtimeMs: number;
  readonly keys: KeySet;

  constructor(path: string, mtimeMs: number, keys: KeySet) {
    this.source = path;
    this.mtimeMs = mtimeMs;
    this.keys = keys;
  }

  /** Reads `path`, or reuses `previous` when the file has not changed. Throws with what is wrong. */
  static load(path: string, previous: FileJwks | undefined): FileJwks {
    const mtimeMs = statSync(path).mtimeMs;
    if (previous !== undefined && previous.mtimeMs === mtimeMs) return previous;
    const keys = parseJwks(JSON.parse(readFileSync(path, "utf8")));
    return new FileJwks(path, mtimeMs, keys);
  }

  key(kid: string | undefined): KeyObject | undefined {
    return pick(this.keys, kid);
  }
}

/** Keys fetched from a URL and cached; one per URL per process, kept across tables. */
export class RemoteJwks implements Jwks {
  readonly source: string;
  readonly #logger: Logger | undefined;
  readonly #maxAgeMs: number;
  readonly #cooldownMs: number;
  #keys: KeySet = EMPTY_KEY_SET;
  /** When the keys were last fetched successfully (ms). */
  #fetchedAt = Number.NEGATIVE_INFINITY;
  /** When a fetch last started (ms), successful or not. */
  #attemptAt = Number.NEGATIVE_INFINITY;
  #inflight: Promise<void> | null = null;

  constructor(url: string, logger?: Logger, timing: JwksTiming = {}) {
    this.source = url;
    this.#logger = logger;
    this.#maxAgeMs = timing.maxAgeMs ?? JWKS_MAX_AGE_MS;
    this.#cooldownMs = timing.cooldownMs ?? JWKS_COOLDOWN_MS;
  }

  /** Starts the first fetch, so the first request seldom waits. */
  prefetch(now: number): void {
    if (this.#attemptAt === Number.NEGATIVE_INFINITY) void this.#fetch(now);
  }

  key(kid: string | undefined, now: number): KeyObject | undefined | Promise<void> {
    if (this.#inflight === null && now - this.#fetchedAt >= this.#maxAgeMs && now - this.#attemptAt >= 1000) {
      // Stale: refresh in the background (at most once a second while it keeps failing).
      void this.#fetch(now);
    }
    const key = pick(this.#keys, kid);
    if (key !== undefined) return key;
    if (this.#inflight !== null) return this.#inflight;
    if (now - this.#attemptAt < this.#cooldownMs) return undefined;
    return this.#fetch(now);
  }

  #fetch(now: number): Promise<void> {
    this.#attemptAt = now;
    this.#inflight = (async () => {
      try {
        const res = await fetch(this.source, {
          headers: { accept: "application/json" },
          signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
        });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        this.#keys = parseJwks(await res.json());
        this.#fetchedAt = Date.now();
      } catch (err) {
        this.#logger?.warn("cannot fetch the JWKS; tokens signed with keys not seen yet are refused", {
          url: this.source,
          error: err instanceof Error ? err.message : String(err),
        });
      } finally {
        // Counted from the end too: a request that waited for this fetch, asking again, finds it cooling down.
        this.#attemptAt = Date.now();
        this.#inflight = null;
      }
    })();
    return this.#inflight;
  }
}
