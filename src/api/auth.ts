/**
 * Bearer tokens. The first start creates an admin token, writes it to
 * `<data>/admin-token` (mode 0600) for the CLI on this machine, and stores
 * only its sha256 in the database.
 */

import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HerdError } from "../common/errors.ts";
import type { Token } from "../model/objects.ts";
import type { Store } from "../store/store.ts";

export const hashToken = (secret: string): string => createHash("sha256").update(secret).digest("hex");

/** Makes sure an admin token exists; returns its secret and the file that holds it. */
export async function ensureAdminToken(
  store: Store,
  dataDir: string,
): Promise<{ token: string; file: string }> {
  const file = join(dataDir, "admin-token");
  if (existsSync(file)) {
    const token = readFileSync(file, "utf8").trim();
    if (await store.get("token", hashToken(token))) return { token, file };
  }
  const token = `herd_${randomBytes(24).toString("base64url")}`;
  const value: Token = { name: "admin", role: "admin", createdAt: new Date().toISOString() };
  await store.put("token", hashToken(token), value);
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return { token, file };
}

/** Checks an Authorization header; returns the token's record. Cached: tokens are few and rarely change. */
export class Authenticator {
  readonly #store: Store;
  readonly #cache = new Map<string, { token: Token | undefined; at: number }>();

  constructor(store: Store) {
    this.#store = store;
  }

  async check(header: string | undefined): Promise<Token> {
    // Basic auth with the token as password, for data-source clients that only send that (promtool).
    if (header?.startsWith("Basic ")) {
      const decoded = Buffer.from(header.slice(6).trim(), "base64").toString("utf8");
      header = `Bearer ${decoded.slice(decoded.indexOf(":") + 1)}`;
    }
    if (!header?.startsWith("Bearer ")) {
      throw new HerdError(
        "unauthorized",
        "missing bearer token: pass `Authorization: Bearer <token>` (the admin token is in the data dir's admin-token file)",
      );
    }
    const hash = hashToken(header.slice(7).trim());
    const hit = this.#cache.get(hash);
    let token = hit && Date.now() - hit.at < 10_000 ? hit.token : undefined;
    if (!hit || Date.now() - hit.at >= 10_000) {
      token = (await this.#store.get<Token>("token", hash))?.value;
      this.#cache.set(hash, { token, at: Date.now() });
    }
    if (!token) throw new HerdError("unauthorized", "unknown token");
    return token;
  }
}
