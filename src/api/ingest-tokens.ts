/**
 * One ingest token per tenant: the write-only credential the agent gives a
 * tenant's instances (OTEL_* defaults), so spans and points they send are
 * stamped with their own tenant and nobody else's.
 *
 *   heartbeat ─► tenants of the node's instances ─► forTenant(t)
 *      ─► memory (rechecked every 10 s) ─► <data>/ingest-tokens/<t> (0600, dir 0700)
 *      ─► else createToken({kind: "ingest", tenant: t}) and write the file
 *
 * Only a token's hash is in the store, so the secret is kept in the file to
 * hand it out again. A revoked or expired token is replaced by a new one on
 * the next heartbeat.
 */

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Token } from "../model/identity.ts";
import { NAME_PATTERN } from "../model/manifest.ts";
import type { Store } from "../store/store.ts";
import { createToken, hashToken } from "./auth.ts";

const RECHECK_MS = 10_000;
const TENANT_NAME = new RegExp(NAME_PATTERN);

export class IngestTokens {
  readonly dir: string;
  readonly #store: Store;
  readonly #known = new Map<string, { secret: string; checkedAt: number }>();
  /** One look-up or creation per tenant at a time. */
  readonly #pending = new Map<string, Promise<string>>();

  constructor(dataDir: string, store: Store) {
    // TODO(secrets): these files move to the encrypted secret store (src/secrets/) once it is on main.
    this.dir = join(dataDir, "ingest-tokens");
    this.#store = store;
  }

  /** The tenant's ingest token's secret, created on first use. */
  forTenant(tenant: string): Promise<string> {
    const hit = this.#known.get(tenant);
    if (hit && Date.now() - hit.checkedAt < RECHECK_MS) return Promise.resolve(hit.secret);
    let p = this.#pending.get(tenant);
    if (!p) {
      p = this.#load(tenant).finally(() => this.#pending.delete(tenant));
      this.#pending.set(tenant, p);
    }
    return p;
  }

  /** Secrets of several tenants, as `{tenant: secret}` (a name that is not a tenant name is left out). */
  async forTenants(tenants: Iterable<string>): Promise<Record<string, string>> {
    const names = [...new Set(tenants)].filter((t) => TENANT_NAME.test(t)).sort();
    const secrets = await Promise.all(names.map((t) => this.forTenant(t)));
    return Object.fromEntries(names.map((t, i) => [t, secrets[i] as string]));
  }

  async #load(tenant: string): Promise<string> {
    // The name becomes a file name: only tenant names.
    if (!TENANT_NAME.test(tenant))
      throw new Error(`ingest token: ${JSON.stringify(tenant)} is not a tenant name`);
    const file = join(this.dir, tenant);
    const kept =
      this.#known.get(tenant)?.secret ?? (existsSync(file) ? readFileSync(file, "utf8").trim() : "");
    if (kept && (await this.#usable(kept, tenant))) {
      this.#known.set(tenant, { secret: kept, checkedAt: Date.now() });
      return kept;
    }
    const { secret } = await createToken(this.#store, {
      name: `ingest for tenant ${tenant} (given to its instances by the agents)`,
      kind: "ingest",
      tenant,
      createdBy: "herd",
    });
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    this.#known.set(tenant, { secret, checkedAt: Date.now() });
    return secret;
  }

  /** Whether the store still holds the token, not revoked nor expired, for this tenant. */
  async #usable(secret: string, tenant: string): Promise<boolean> {
    const token = (await this.#store.get<Token>("token", hashToken(secret)))?.value;
    if (token?.kind !== "ingest" || token.tenant !== tenant || token.revokedAt) return false;
    return !token.expiresAt || Date.parse(token.expiresAt) > Date.now();
  }
}
