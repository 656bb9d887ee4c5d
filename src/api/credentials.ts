/**
 * Credentials of the platform's own components: a node credential (an agent
 * token bound to one node name) that a join token buys once, and the agent and
 * gateway credentials `herd up` keeps for its own components, so no component
 * holds the admin token.
 *
 *   herd nodes join-token ─► join token (expiry, uses)
 *   POST /nodes/:name/join (join token) ─► no live credential for :name? ─► one use taken ─► agent token {node: name}
 *   herd up ─► <data>/credentials/{agent,gateway} (0600) ─► reused while the token is live, else a new one
 */

import { readFileSync } from "node:fs";
import { conflict, HerdError } from "../common/errors.ts";
import { writePrivateFile } from "../common/private-file.ts";
import type { Token } from "../model/identity.ts";
import type { Store } from "../store/store.ts";
import { createToken, hashToken } from "./auth.ts";
import type { Principal } from "./permissions.ts";

/** Whether a stored token still works: not revoked, not expired, not used up. */
export const isLive = (t: Token, now = Date.now()): boolean =>
  !t.revokedAt && !(t.expiresAt && Date.parse(t.expiresAt) <= now) && t.usesLeft !== 0;

/** The live agent tokens of a node (at most one after a join; an admin may make more). */
export async function nodeCredentials(store: Store, node: string): Promise<Token[]> {
  return (await store.list<Token>("token")).items
    .map((o) => o.value)
    .filter((t) => t.kind === "agent" && t.node === node && isLive(t));
}

/**
 * Trades `who`'s join token for a credential of node `node`: 409 when the node
 * already has a live credential (so a join token cannot stand in for a node
 * that exists), 401 when the join token was used up meanwhile. A platform
 * admin may join too (no use is counted). Callers run one join at a time
 * (the check and the write are not one transaction).
 */
export async function joinNode(
  store: Store,
  node: string,
  who: Principal,
): Promise<{ secret: string; token: Token }> {
  const live = await nodeCredentials(store, node);
  if (live.length > 0) {
    throw conflict(
      `node ${node} already has a credential (token ${live[0].id}): an agent with its data dir keeps using it; to join this name again, a platform admin revokes it first (herd tokens revoke ${live[0].id})`,
    );
  }
  if (who.token.kind === "join") await takeUse(store, who.token.id);
  return createToken(store, {
    name: `node ${node}`,
    kind: "agent",
    node,
    createdBy: `${who.label} ${who.token.id}`,
  });
}

/** Takes one use of a join token (by id), re-reading it so a cached principal cannot join twice. */
async function takeUse(store: Store, id: string): Promise<void> {
  for (;;) {
    const o = (await store.list<Token>("token")).items.find((t) => t.value.id === id);
    if (!o || !isLive(o.value)) {
      throw new HerdError("unauthorized", `join token ${id} is revoked, expired or used up`);
    }
    if (o.value.usesLeft === undefined) return;
    try {
      const next: Token = { ...o.value, usesLeft: o.value.usesLeft - 1 };
      await store.put("token", o.key, next, { expectRevision: o.revision });
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== "conflict") throw err;
    }
  }
}

/**
 * The credential `herd up` gives one of its own components, kept in `file`
 * (mode 0600): the token there while it is live and still of this kind (and
 * node), else a new one written there. Returns the token's secret.
 */
export async function ensureComponentCredential(
  store: Store,
  file: string,
  identity: { kind: "agent"; node: string } | { kind: "gateway" },
): Promise<string> {
  const node = identity.kind === "agent" ? identity.node : undefined;
  const kept = readSecret(file);
  if (kept !== undefined) {
    const t = (await store.get<Token>("token", hashToken(kept)))?.value;
    if (t && isLive(t) && t.kind === identity.kind && t.node === node) return kept;
  }
  const { secret } = await createToken(store, {
    name: node === undefined ? "herd up gateway" : `herd up agent ${node}`,
    kind: identity.kind,
    ...(node === undefined ? {} : { node }),
    createdBy: "herd up",
  });
  writePrivateFile(file, `${secret}\n`);
  return secret;
}

function readSecret(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
