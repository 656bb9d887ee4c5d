/**
 * Revoking tokens in bulk: a deleted user's, a removed node's credential, a
 * machine request's join token. A revoked token stays (revokedAt, revokedBy)
 * for the audit trail; auth refuses it at once (api/auth.ts).
 */

import type { Token } from "../model/identity.ts";
import type { Store, StoredObject } from "../store/store.ts";

/** Revokes every live token `match` picks, recording `by` and `at`; how many it revoked. */
export async function revokeTokens(
  store: Store,
  match: (t: Token) => boolean,
  by: string,
  at = new Date().toISOString(),
): Promise<number> {
  let revoked = 0;
  for (const listed of (await store.list<Token>("token")).items) {
    // Read again after a conflict (a last use written meanwhile): a revocation is never skipped.
    for (let o: StoredObject<Token> | undefined = listed; o && match(o.value) && !o.value.revokedAt; ) {
      try {
        await store.put(
          "token",
          o.key,
          { ...o.value, revokedAt: at, revokedBy: by },
          { expectRevision: o.revision },
        );
        revoked++;
        break;
      } catch (err) {
        if ((err as { code?: string }).code !== "conflict") throw err;
        o = await store.get<Token>("token", o.key);
      }
    }
  }
  return revoked;
}
