/**
 * One ingest token per tenant: the write-only credential the agent gives a
 * tenant's instances (OTEL_* defaults), so spans and points they send are
 * stamped with their own tenant and nobody else's.
 *
 *   heartbeat ─► tenants of the node's instances ─► forTenant(t)
 *      ─► memory (rechecked every 10 s) ─► secret store: `<t>/_ingest/token` (encrypted)
 *      ─► else createToken({kind: "ingest", tenant: t}) and keep its secret there
 *
 * Only a token's hash is in the store's `token` objects, so the secret itself
 * is kept in the secret store to hand it out again. A revoked or expired
 * token is replaced by a new one on the next look-up.
 */

import { isCode } from "../common/errors.ts";
import type { Token } from "../model/identity.ts";
import { NAME_PATTERN } from "../model/manifest.ts";
import type { SecretStore } from "../secrets/secret-store.ts";
import type { Store } from "../store/store.ts";
import { createToken, hashToken } from "./auth.ts";

const RECHECK_MS = 10_000;
const TENANT_NAME = new RegExp(NAME_PATTERN);
/** Where a tenant's ingest secret is in the secret store (a leading `_` is never an app's scope). */
export const INGEST_SCOPE = "_ingest";
const NAME = "token";

export class IngestTokens {
  readonly #store: Store;
  readonly #secrets: SecretStore;
  readonly #known = new Map<string, { secret: string; checkedAt: number }>();
  /** One look-up or creation per tenant at a time. */
  readonly #pending = new Map<string, Promise<string>>();

  constructor(store: Store, secrets: SecretStore) {
    this.#store = store;
    this.#secrets = secrets;
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
    if (!TENANT_NAME.test(tenant))
      throw new Error(`ingest token: ${JSON.stringify(tenant)} is not a tenant name`);
    const kept = this.#known.get(tenant)?.secret ?? (await this.#kept(tenant));
    if (kept && (await this.#usable(kept, tenant))) {
      this.#known.set(tenant, { secret: kept, checkedAt: Date.now() });
      return kept;
    }
    // Token first, then its secret: a crash between leaves an unused token (listed, revocable), never a secret without one.
    const { secret } = await createToken(this.#store, {
      name: `ingest for tenant ${tenant} (given to its instances by the agents)`,
      kind: "ingest",
      tenant,
      createdBy: "herd",
    });
    await this.#secrets.set(tenant, INGEST_SCOPE, NAME, secret, "herd");
    this.#known.set(tenant, { secret, checkedAt: Date.now() });
    return secret;
  }

  async #kept(tenant: string): Promise<string | undefined> {
    try {
      return await this.#secrets.value(tenant, INGEST_SCOPE, NAME);
    } catch (err) {
      if (isCode(err, "not_found")) return undefined;
      throw err;
    }
  }

  /** Whether the store still holds the token, not revoked nor expired, for this tenant. */
  async #usable(secret: string, tenant: string): Promise<boolean> {
    const token = (await this.#store.get<Token>("token", hashToken(secret)))?.value;
    if (token?.kind !== "ingest" || token.tenant !== tenant || token.revokedAt) return false;
    return !token.expiresAt || Date.parse(token.expiresAt) > Date.now();
  }
}
