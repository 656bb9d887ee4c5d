/**
 * Tokens and who they stand for. The first start creates the platform admin
 * user `admin` and a token for it in `<data>/admin-token` (mode 0600) for the
 * CLI on this machine. Only a token's sha256 is stored.
 *
 *   Authorization: Bearer herd_pat_<id>_<secret> ─► sha256 ─► Token ─► User + memberships ─► Principal
 *
 * Principals are cached per token hash and dropped at once when a token,
 * user, membership or tenant changes (a store watch): for 5 minutes while that
 * watch follows the store, for 10 s without it (1,000 agents' tokens were
 * read from the store again every 10 s each). Unknown tokens are
 * never cached; failed attempts are limited per client address: past the
 * limit, a token that is not in the cache gets a 429 before the store is read.
 */

import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HerdError } from "../common/errors.ts";
import type { Logger } from "../common/log.ts";
import {
  type Member,
  type Role,
  TOKEN_PREFIX,
  type Token,
  type TokenKind,
  type User,
} from "../model/identity.ts";
import type { Tenant } from "../model/objects.ts";
import type { Store } from "../store/store.ts";
import type { Principal } from "./permissions.ts";

export const hashToken = (secret: string): string => createHash("sha256").update(secret).digest("hex");

/** A new token's secret text, its public id and the hash it is stored under. */
export function mintToken(kind: TokenKind): { secret: string; id: string; hash: string } {
  const id = randomBytes(4).toString("hex");
  const secret = `${TOKEN_PREFIX[kind]}${id}_${randomBytes(24).toString("base64url")}`;
  return { secret, id, hash: hashToken(secret) };
}

/** Stores a new token; returns its secret, shown once. */
export async function createToken(
  store: Store,
  fields: Omit<Token, "id" | "createdAt">,
): Promise<{ secret: string; token: Token }> {
  const { secret, id, hash } = mintToken(fields.kind);
  const token: Token = { id, createdAt: new Date().toISOString(), ...fields };
  await store.put("token", hash, token, { expectRevision: 0 });
  return { secret, token };
}

/**
 * Makes sure the platform admin user and its token exist; returns the token's
 * secret and the file that holds it. Tokens stored before users existed (no
 * `kind`) become the admin user's.
 */
export async function ensureAdminToken(
  store: Store,
  dataDir: string,
): Promise<{ token: string; file: string }> {
  if (!(await store.get<User>("user", "admin"))) {
    await store
      .put<User>(
        "user",
        "admin",
        { name: "admin", admin: true, createdAt: new Date().toISOString() },
        { expectRevision: 0 },
      )
      .catch(() => {});
  }
  for (const o of (await store.list<Token>("token")).items) {
    if ((o.value as Partial<Token>).kind) continue;
    const legacy = o.value as unknown as { name: string; createdAt: string };
    await store.put<Token>("token", o.key, {
      id: o.key.slice(0, 8),
      name: legacy.name,
      kind: "user",
      user: "admin",
      createdAt: legacy.createdAt,
    });
  }
  const file = join(dataDir, "admin-token");
  if (existsSync(file)) {
    const token = readFileSync(file, "utf8").trim();
    if (await store.get("token", hashToken(token))) return { token, file };
  }
  // Named after its file: each server of a shared store makes its own, and `herd tokens` says whose is whose.
  const { secret } = await createToken(store, { name: `admin (${file})`, kind: "user", user: "admin" });
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return { token: secret, file };
}

/** How long a cached principal or tenant is trusted: without the store watch, and while it follows. */
const CACHE_MS = 10_000;
const CACHE_WATCHED_MS = 300_000;
const CACHE_MAX = 10_000;
/** Failed sign-ins a client address may make: a burst, then this many a second. */
const FAILURES_BURST = 20;
const FAILURES_PER_S = 5;

export interface AuthenticatorOptions {
  logger?: Logger;
}

/** Checks an Authorization header and says who it is. */
export class Authenticator {
  readonly #store: Store;
  readonly #options: AuthenticatorOptions;
  readonly #cache = new Map<string, { principal: Principal; at: number }>();
  readonly #tenants = new Map<string, { exists: boolean; at: number }>();
  readonly #failures = new Map<string, { tokens: number; at: number }>();
  /** When each token's last use was written (ms). */
  readonly #lastUse = new Map<string, number>();
  readonly #stop = new AbortController();
  /** Whether the watch that drops changed entries follows the store (then entries live longer). */
  #watching = false;

  constructor(store: Store, options: AuthenticatorOptions = {}) {
    this.#store = store;
    this.#options = options;
  }

  /** Follows the store so that a revoked token or a removed member stops working at once. */
  async start(): Promise<void> {
    const from = await this.#store.revision();
    const follow = async () => {
      try {
        this.#watching = true;
        for await (const e of this.#store.watch({
          kinds: ["token", "user", "member", "tenant"],
          fromRevision: from,
          signal: this.#stop.signal,
        })) {
          // A token's change (revoked, last use) touches that token only.
          if (e.kind === "token") this.#cache.delete(e.key);
          else if (e.kind === "tenant") this.#tenants.delete(e.key);
          else this.#cache.clear();
        }
      } catch (err) {
        // Changes it may have missed: nothing cached before stays trusted.
        this.#watching = false;
        this.#cache.clear();
        this.#tenants.clear();
        if (this.#stop.signal.aborted) return;
        this.#options.logger?.warn("auth cache watch ended; caching for 10 s at most", { err });
      }
      this.#watching = false;
    };
    void follow();
  }

  stop(): void {
    this.#stop.abort();
  }

  /** The principal behind an Authorization header; 401 when there is none, 429 after too many failures. */
  async check(header: string | undefined, address = "unknown"): Promise<Principal> {
    // Basic auth with the token as password, for data-source clients that only send that (promtool).
    if (header?.startsWith("Basic ")) {
      const decoded = Buffer.from(header.slice(6).trim(), "base64").toString("utf8");
      header = `Bearer ${decoded.slice(decoded.indexOf(":") + 1)}`;
    }
    if (!header?.startsWith("Bearer ")) {
      throw new HerdError(
        "unauthorized",
        "missing bearer token: pass `Authorization: Bearer <token>` (herd login, or the admin token in the data dir's admin-token file)",
      );
    }
    const secret = header.slice(7).trim();
    const hash = hashToken(secret);
    const hit = this.#cache.get(hash);
    if (hit && Date.now() - hit.at < this.#cacheMs()) return this.#touch(hash, hit.principal);
    // Only what reaches the store is limited: a known, cached token always gets in.
    this.#limitFailures(address, false);
    const principal = await this.#load(hash);
    if (!principal) {
      this.#cache.delete(hash);
      this.#limitFailures(address, true);
      throw new HerdError("unauthorized", "unknown token");
    }
    if (this.#cache.size >= CACHE_MAX) this.#cache.delete(this.#cache.keys().next().value as string);
    this.#cache.set(hash, { principal, at: Date.now() });
    return this.#touch(hash, principal);
  }

  /** Whether a tenant exists (cached like principals). */
  async tenantExists(name: string): Promise<boolean> {
    const hit = this.#tenants.get(name);
    if (hit && Date.now() - hit.at < this.#cacheMs()) return hit.exists;
    const exists = (await this.#store.get<Tenant>("tenant", name)) !== undefined;
    if (this.#tenants.size >= CACHE_MAX) this.#tenants.clear();
    this.#tenants.set(name, { exists, at: Date.now() });
    return exists;
  }

  #cacheMs(): number {
    return this.#watching ? CACHE_WATCHED_MS : CACHE_MS;
  }

  /** The principal of a stored token, or undefined when it is unknown. Throws 401 for expired or revoked. */
  async #load(hash: string): Promise<Principal | undefined> {
    const token = (await this.#store.get<Token>("token", hash))?.value;
    if (!token) return undefined;
    if (token.revokedAt) throw new HerdError("revoked", `token ${token.id} was revoked`);
    if (token.expiresAt && Date.parse(token.expiresAt) <= Date.now()) {
      throw new HerdError("unauthorized", `token ${token.id} expired at ${token.expiresAt}`);
    }
    if (token.usesLeft === 0) throw new HerdError("unauthorized", `join token ${token.id} is used up`);
    if (token.kind !== "user") {
      const label =
        token.kind === "agent"
          ? `agent ${token.node}`
          : token.kind === "ingest"
            ? `ingest ${token.tenant}`
            : token.kind;
      return { token, label, admin: false, roles: new Map() };
    }
    const user = (await this.#store.get<User>("user", token.user ?? ""))?.value;
    if (!user)
      throw new HerdError("unauthorized", `token ${token.id}: its user ${token.user} no longer exists`);
    const roles = new Map<string, Role>();
    for (const o of (await this.#store.list<Member>("member")).items) {
      if (o.value.user === user.name) roles.set(o.value.tenant, o.value.role);
    }
    return {
      token,
      label: `${user.tenant ? "service account" : "user"} ${user.name}`,
      admin: user.admin === true,
      roles,
    };
  }

  /** The expiry still applies to a cached principal; last use is written at most once a minute. */
  #touch(hash: string, principal: Principal): Principal {
    const { token } = principal;
    if (token.expiresAt && Date.parse(token.expiresAt) <= Date.now()) {
      this.#cache.delete(hash);
      throw new HerdError("unauthorized", `token ${token.id} expired at ${token.expiresAt}`);
    }
    const now = Date.now();
    const last = this.#lastUse.get(hash) ?? (token.lastUsedAt ? Date.parse(token.lastUsedAt) : 0);
    if (now - last > 60_000) {
      if (this.#lastUse.size >= CACHE_MAX) this.#lastUse.clear();
      this.#lastUse.set(hash, now);
      void this.#recordUse(hash, new Date(now).toISOString());
    }
    return principal;
  }

  async #recordUse(hash: string, at: string): Promise<void> {
    try {
      const o = await this.#store.get<Token>("token", hash);
      if (!o || o.value.revokedAt) return;
      await this.#store.put("token", hash, { ...o.value, lastUsedAt: at }, { expectRevision: o.revision });
    } catch {
      // A concurrent change (a revoke) wins; the next use records the time again.
    }
  }

  /** A token bucket of failed attempts per address: `failed` takes one; an empty bucket is a 429. */
  #limitFailures(address: string, failed: boolean): void {
    const now = Date.now();
    const b = this.#failures.get(address) ?? { tokens: FAILURES_BURST, at: now };
    b.tokens = Math.min(FAILURES_BURST, b.tokens + ((now - b.at) / 1000) * FAILURES_PER_S);
    b.at = now;
    if (b.tokens < 1) {
      throw new HerdError(
        "too_many",
        "too many failed sign-ins from this address: wait a second and try again",
      );
    }
    if (!failed) {
      if (b.tokens >= FAILURES_BURST) this.#failures.delete(address);
      return;
    }
    b.tokens -= 1;
    if (this.#failures.size >= CACHE_MAX) this.#failures.clear();
    this.#failures.set(address, b);
  }
}
