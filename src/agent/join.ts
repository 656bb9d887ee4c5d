/**
 * An agent's credential: the token it heartbeats, ships logs and fetches
 * slugs with. A new node trades a join token for a node credential once; the
 * agent keeps that in its data dir and uses it from then on, so a restart
 * needs no join token.
 *
 *   --token ─► used as given (an agent token made by an admin, or the admin token)
 *   <dataDir>/credential.json {node, token} (0600) ─► reused when it is this node's
 *   --join-token ─► POST /api/v1/nodes/:name/join ─► {token} ─► credential.json
 *   HERD_TOKEN ─► used as given (last: a shell's HERD_TOKEN must not override a join)
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { HerdError } from "../common/errors.ts";
import { writePrivateFile } from "../common/private-file.ts";
import { ServerList } from "../common/server-list.ts";

/** Where the agent finds its credential. */
export interface CredentialSources {
  /** The control plane's base URL. */
  server: string;
  /** This node's name. */
  name: string;
  dataDir: string;
  /** A token to use as is (`--token`). */
  token?: string;
  /** A join token (`--join-token`, HERD_JOIN_TOKEN), used when the data dir holds no credential. */
  joinToken?: string;
  /** A token to use as is when there is neither a credential nor a join token (HERD_TOKEN). */
  envToken?: string;
  /** The CA that signed the control plane's certificate (common/api-ca.ts). */
  ca?: string;
}

/** The file a node credential is kept in. */
export const credentialFile = (dataDir: string): string => join(dataDir, "credential.json");

/**
 * What a heartbeat refused with 401 says: the credential was revoked (the
 * node removed: herd nodes remove) or is unknown, and retrying changes nothing.
 */
export function refusedCredential(dataDir: string, answer: string, revoked: boolean): string {
  const removed = revoked
    ? "its instances are stopped (pet volumes stay); "
    : "if the node was removed (herd nodes remove), stop this agent; ";
  return `answered 401: the control plane refuses this node's credential (${answer.slice(0, 200)}); ${removed}to join again, remove ${credentialFile(dataDir)} (the credential it keeps) and start it with a new --join-token`;
}

/**
 * Whether a 401's body says the credential was revoked (code `revoked`): the
 * node was removed or its credential taken back, for good. Any other 401 (an
 * unknown token: another control plane, a database restored from before the
 * join) proves nothing about the instances here.
 */
export function revokedAnswer(answer: string): boolean {
  try {
    return (JSON.parse(answer) as { code?: unknown }).code === "revoked";
  } catch {
    return false;
  }
}

/**
 * The token this agent uses: --token, else the node credential in its data
 * dir, else a new one bought with the join token (and kept), else HERD_TOKEN.
 */
export async function agentToken(s: CredentialSources): Promise<string> {
  if (s.token) return s.token;
  const file = credentialFile(s.dataDir);
  const kept = readCredential(file);
  if (kept) {
    if (kept.node !== s.name) {
      throw new HerdError(
        "invalid",
        `${file} holds the credential of node ${kept.node}, not ${s.name}: run this agent as --name ${kept.node}, or give it another --data dir`,
      );
    }
    return kept.token;
  }
  if (!s.joinToken && s.envToken) return s.envToken;
  if (!s.joinToken) {
    throw new HerdError(
      "invalid",
      `no credential in ${file}: pass --join-token (from \`herd nodes join-token\` on the control plane) to join, or --token`,
    );
  }
  const token = await joinNode(s.server, s.name, s.joinToken, s.ca);
  writePrivateFile(file, `${JSON.stringify({ node: s.name, token }, null, 2)}\n`);
  return token;
}

function readCredential(file: string): { node: string; token: string } | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  let parsed: { node?: unknown; token?: unknown } | undefined;
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    parsed = undefined;
  }
  if (typeof parsed?.node !== "string" || typeof parsed.token !== "string") {
    throw new HerdError(
      "invalid",
      `${file} is not a node credential ({"node", "token"}): remove it and join again`,
    );
  }
  return { node: parsed.node, token: parsed.token };
}

/** Trades a join token for the node's credential; a HerdError with the server's reason when it is refused. */
async function joinNode(server: string, name: string, joinToken: string, ca?: string): Promise<string> {
  // Any server of the list: the first live one (common/server-list.ts).
  const res = await new ServerList(server)
    .request(`/api/v1/nodes/${encodeURIComponent(name)}/join`, {
      ca,
      method: "POST",
      headers: { authorization: `Bearer ${joinToken}` },
      signal: AbortSignal.timeout(10_000),
    })
    .catch((err: Error) => {
      throw new HerdError("unavailable", `cannot join ${server}: ${err.message}`);
    });
  const body = (await res.json().catch(() => ({}))) as { token?: string; message?: string };
  if (!res.ok || typeof body.token !== "string") {
    throw new HerdError(
      res.status === 409 ? "conflict" : res.status === 401 ? "unauthorized" : "unavailable",
      `joining ${server} as node ${name} was refused (${res.status}): ${body.message ?? "no reason given"}`,
    );
  }
  return body.token;
}
