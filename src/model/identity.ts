/**
 * Who calls the API: users and service accounts, their roles in tenants, and
 * the tokens they hold. Part of the wire contract; depends on nothing.
 *
 * Keys:
 *   user    `<name>`              (service accounts too: names are global)
 *   member  `<tenant>/<user>`     (one role per user and tenant)
 *   token   `<sha256 of the token>`
 */

/** A tenant role: what a member may do inside one tenant. */
export type Role = "owner" | "deployer" | "viewer";
export const ROLES: readonly Role[] = ["owner", "deployer", "viewer"];

/**
 * A person or a program. A platform admin (`admin: true`) may do anything in
 * every tenant; everyone else acts through memberships. A service account
 * (`tenant` set) belongs to one tenant and is managed by its owners.
 */
export interface User {
  name: string;
  createdAt: string;
  createdBy?: string;
  admin?: boolean;
  /** Set for a service account: the tenant that owns it. */
  tenant?: string;
}

/** A user as `GET /users` lists it: with its role in each tenant (the CLI's and the console's). */
export type UserView = User & { roles: { tenant: string; role: Role }[] };

/** A user's role in a tenant. */
export interface Member {
  tenant: string;
  user: string;
  role: Role;
  addedAt: string;
  addedBy?: string;
}

/**
 * What a token stands for: a user (person or service account), or a machine
 * identity — an agent bound to its node, a gateway, a telemetry ingest
 * credential for one tenant, or a join token that turns into an agent token.
 */
export type TokenKind = "user" | "agent" | "gateway" | "ingest" | "join";

/** The prefix each kind's tokens carry, so a leaked token says what it is (`herd_pat_…`). */
export const TOKEN_PREFIX: Record<TokenKind, string> = {
  user: "herd_pat_",
  agent: "herd_agt_",
  gateway: "herd_gwt_",
  ingest: "herd_ing_",
  join: "herd_jnt_",
};

/** A stored token: only its sha256 is the key; the secret itself is never stored. */
export interface Token {
  /** Public id (shown in lists, used to revoke); also part of the token's text. */
  id: string;
  /** What it is for. */
  name: string;
  kind: TokenKind;
  /** kind user: whose token it is. */
  user?: string;
  /** kind agent: the only node it may act as. */
  node?: string;
  /** kind ingest: the tenant it writes telemetry for. */
  tenant?: string;
  createdAt: string;
  createdBy?: string;
  /** After this time the token is refused. */
  expiresAt?: string;
  /** kind join: how many more nodes it may join; absent: any number until it expires. */
  usesLeft?: number;
  /** Set when revoked; the record stays for the audit trail. */
  revokedAt?: string;
  revokedBy?: string;
  /** Updated at most once a minute. */
  lastUsedAt?: string;
}
