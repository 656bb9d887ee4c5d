/**
 * JSON Web Key Sets: an identity provider's public keys, by `kid`. From a
 * file they are read when a table is built (again only when the file
 * changed); from a URL they are fetched by the gateway and cached:
 *
 *   build ──► RemoteJwks (kept across tables by URL) ──► first fetch starts at once
 *   request: kid known ──► key (if the keys are older than 5 min, a refresh starts in the background)
 *            kid unknown ─► a refetch, at most every 30 s; the request waits for it
 *                           (a key rotation is picked up on the first token signed with the new key)
 *
 * A file must be inside the gateway's JWKS directory (`--jwks-dir`, default
 * `<data>/jwks/`; symbolic links are resolved first), and a URL is fetched
 * through the URL guard (common/url-guard.ts: no internal address unless
 * `--allow-fetch` allows it, no redirects, at most 1 MiB). No error quotes
 * what a file or an answer contains: a route's problems are shown to whoever
 * may read routes, and a file's text may be anything.
 */

import { createPublicKey, type JsonWebKeyInput, type KeyObject } from "node:crypto";
import { readFileSync, realpathSync, statSync } from "node:fs";
import { isAbsolute, relative, sep } from "node:path";
import type { Logger } from "../common/log.ts";
import { UrlGuard } from "../common/url-guard.ts";

/** Keys older than this are refreshed (in the background; the old ones serve meanwhile). */
export const JWKS_MAX_AGE_MS = 5 * 60_000;
/** An unknown `kid` refetches the set at most this often. */
export const JWKS_COOLDOWN_MS = 30_000;
const FETCH_TIMEOUT_MS = 5_000;
/** A JWKS (file or answer) larger than this is refused: real ones are a few KiB. */
export const JWKS_MAX_BYTES = 1024 * 1024;

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

/** Parses a JWKS document's text; a parse error says what is wrong, never what the text was. */
function parseJwksText(text: string): KeySet {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    throw new Error("is not JSON");
  }
  return parseJwks(document);
}

/** Whether `path` (real, absolute) is inside the directory `dir` (resolved to its real path). */
function inside(path: string, dir: string): boolean {
  let root: string;
  try {
    root = realpathSync(dir);
  } catch {
    throw new Error(`cannot be read: the gateway's JWKS directory ${dir} (--jwks-dir) does not exist`);
  }
  const rel = relative(root, path);
  return rel !== "" && !rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel);
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

  /**
   * Reads `path`, which must be inside `dir` (null: no directory is
   * configured, so no file is read), or reuses `previous` when the file has
   * not changed. Throws with what is wrong, never with the file's content.
   */
  static load(path: string, dir: string | null, previous: FileJwks | undefined): FileJwks {
    if (dir === null)
      throw new Error("JWKS files are read only from the gateway's --jwks-dir, and none is set");
    let real: string;
    try {
      real = realpathSync(path);
    } catch (err) {
      throw new Error(`cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
    }
    if (!inside(real, dir)) throw new Error(`is outside the gateway's JWKS directory ${dir} (--jwks-dir)`);
    const stat = statSync(real);
    if (!stat.isFile()) throw new Error("is not a file");
    if (stat.size > JWKS_MAX_BYTES) throw new Error(`is larger than ${JWKS_MAX_BYTES} bytes`);
    if (previous !== undefined && previous.mtimeMs === stat.mtimeMs) return previous;
    return new FileJwks(path, stat.mtimeMs, parseJwksText(readFileSync(real, "utf8")));
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

  readonly #guard: UrlGuard;

  constructor(url: string, logger?: Logger, timing: JwksTiming = {}, guard: UrlGuard = new UrlGuard()) {
    this.source = url;
    this.#guard = guard;
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
        const res = await this.#guard.fetch(this.source, {
          headers: { accept: "application/json" },
          timeoutMs: FETCH_TIMEOUT_MS,
          maxBytes: JWKS_MAX_BYTES,
        });
        if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
        this.#keys = parseJwksText(res.body.toString("utf8"));
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
