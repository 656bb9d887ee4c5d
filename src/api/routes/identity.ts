/**
 * Who is calling and the credentials they hold: whoami, tokens (create, list,
 * revoke) and users. Permissions are in permissions.ts; here only the finer
 * rule of "whose token": your own, a service account's of a tenant you own,
 * or anyone's for a platform admin.
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { conflict, HerdError, notFound } from "../../common/errors.ts";
import { revokeTokens } from "../../controllers/revoke-tokens.ts";
import { type Member, TOKEN_PREFIX, type Token, type TokenKind, type User } from "../../model/identity.ts";
import type { Tenant } from "../../model/objects.ts";
import { parseDuration } from "../../observe/promql/parser.ts";
import { createToken } from "../auth.ts";
import type { ApiDeps } from "../deps.ts";
import type { Principal } from "../permissions.ts";
import { Name, OneOf } from "../schemas.ts";

const TokenKinds = Object.keys(TOKEN_PREFIX) as TokenKind[];

const CreateTokenBody = T.Object(
  {
    name: T.String({ minLength: 1, maxLength: 100, description: "what the token is for" }),
    kind: T.Optional(
      OneOf(TokenKinds, "user (default), or a machine identity: agent, gateway, ingest, join"),
    ),
    user: T.Optional(Name),
    node: T.Optional(Name),
    tenant: T.Optional(Name),
    expiresIn: T.Optional(
      T.String({
        pattern: "^[0-9]+(ms|s|m|h|d|w|y)$",
        description: "lifetime, e.g. 30d or 12h; default: no expiry",
      }),
    ),
    uses: T.Optional(T.Integer({ minimum: 1, description: "join tokens: how many nodes it may join" })),
  },
  { additionalProperties: false },
);
type CreateToken = {
  name: string;
  kind?: TokenKind;
  user?: string;
  node?: string;
  tenant?: string;
  expiresIn?: string;
  uses?: number;
};
const TokenParams = T.Object({ id: T.String({ pattern: "^[0-9a-f]{8}$" }) });
const TokensQuery = T.Object({
  user: T.Optional(Name),
  all: T.Optional(T.Boolean({ description: "platform admins: every token, machines' too" })),
});
const CreateUserBody = T.Object(
  { name: Name, admin: T.Optional(T.Boolean({ description: "a platform admin" })) },
  { additionalProperties: false },
);
const UserParams = T.Object({ name: Name });

export function identityRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store } = deps;
  const who = (req: FastifyRequest): Principal => req.herd.principal;

  /** Tenants where `p` is an owner. */
  const owns = (p: Principal, tenant: string | undefined) =>
    p.admin || (tenant !== undefined && p.roles.get(tenant) === "owner");

  /** May `p` hold, create or revoke tokens of `user`? */
  const mayManage = async (p: Principal, user: string): Promise<boolean> => {
    if (p.admin) return true;
    if (p.token.kind === "user" && p.token.user === user) return true;
    const u = (await store.get<User>("user", user))?.value;
    return u?.tenant !== undefined && owns(p, u.tenant);
  };

  api.get(
    "/whoami",
    { schema: { summary: "Who this token stands for, and its roles", tags: ["identity"] } },
    async (req) => {
      const p = who(req);
      const tenants = p.admin
        ? (await store.list<Tenant>("tenant")).items.map((o) => ({ tenant: o.value.name, role: "admin" }))
        : [...p.roles].map(([tenant, role]) => ({ tenant, role }));
      return {
        name: p.label,
        kind: p.token.kind,
        ...(p.token.user ? { user: p.token.user } : {}),
        ...(p.token.node ? { node: p.token.node } : {}),
        admin: p.admin,
        tenants,
        token: {
          id: p.token.id,
          name: p.token.name,
          ...(p.token.expiresAt ? { expiresAt: p.token.expiresAt } : {}),
        },
      };
    },
  );

  api.get(
    "/tokens",
    {
      schema: {
        summary: "Tokens: your own; a service account's (tenant owners); anyone's (platform admins)",
        tags: ["identity"],
        querystring: TokensQuery,
      },
    },
    async (req) => {
      const p = who(req);
      const q = req.query as { user?: string; all?: boolean };
      if (q.all && !p.admin) throw new HerdError("forbidden", "only platform admins list every token");
      const user = q.user ?? p.token.user;
      if (!q.all) {
        if (user === undefined) throw new HerdError("invalid", "a machine token has no tokens of its own");
        if (!(await mayManage(p, user)))
          throw new HerdError("forbidden", `${p.label} may not see the tokens of ${user}`);
      }
      const items = (await store.list<Token>("token")).items
        .map((o) => o.value)
        .filter((t) => q.all || (t.kind === "user" && t.user === user))
        .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
      return { items };
    },
  );

  api.post(
    "/tokens",
    {
      schema: {
        summary: "Create a token; the reply is the only time its secret is shown",
        tags: ["identity"],
        body: CreateTokenBody,
      },
    },
    async (req, reply) => {
      const p = who(req);
      const body = req.body as CreateToken;
      const kind = body.kind ?? "user";
      const fields: Omit<Token, "id" | "createdAt"> = { name: body.name, kind, createdBy: p.label };
      if (body.expiresIn) {
        const ms = parseDuration(body.expiresIn);
        if (!ms)
          throw new HerdError("invalid", "expiresIn must be a duration like 30d", [
            { field: "body.expiresIn", message: "must be a duration like 30d" },
          ]);
        fields.expiresAt = new Date(Date.now() + ms).toISOString();
      }
      const field = (name: string, message: string) =>
        new HerdError("invalid", `body.${name} ${message}`, [{ field: `body.${name}`, message }]);
      if (body.uses !== undefined) {
        if (kind !== "join") throw field("uses", "is only for join tokens");
        fields.usesLeft = body.uses;
      }
      if (kind === "user") {
        if (body.node !== undefined) throw field("node", "is only for agent tokens");
        if (body.tenant !== undefined) throw field("tenant", "is only for ingest tokens");
        const user = body.user ?? p.token.user;
        if (user === undefined) throw field("user", "is required: a machine token has no user");
        if (!(await store.get<User>("user", user))) throw notFound(`no user ${user}`);
        if (!(await mayManage(p, user)))
          throw new HerdError("forbidden", `${p.label} may not create tokens for ${user}`);
        fields.user = user;
      } else if (kind === "ingest") {
        if (body.tenant === undefined) throw field("tenant", "is required for an ingest token");
        if (!(await store.get<Tenant>("tenant", body.tenant))) throw notFound(`no tenant ${body.tenant}`);
        const role = p.roles.get(body.tenant);
        if (!p.admin && role !== "owner" && role !== "deployer") {
          throw new HerdError(
            "forbidden",
            `${p.label} may not create ingest tokens for tenant ${body.tenant}`,
          );
        }
        fields.tenant = body.tenant;
      } else {
        if (!p.admin) throw new HerdError("forbidden", `only platform admins create ${kind} tokens`);
        if (kind === "agent") {
          if (body.node === undefined) throw field("node", "is required for an agent token");
          fields.node = body.node;
        }
      }
      const { secret, token } = await createToken(store, fields);
      reply.code(201);
      return { token: secret, ...token };
    },
  );

  api.delete(
    "/tokens/:id",
    {
      schema: {
        summary: "Revoke a token: it stops working at once",
        tags: ["identity"],
        params: TokenParams,
      },
    },
    async (req) => {
      const p = who(req);
      const { id } = req.params as { id: string };
      for (;;) {
        const o = (await store.list<Token>("token")).items.find((t) => t.value.id === id);
        if (!o) throw notFound(`no token ${id}`);
        const t = o.value;
        const allowed =
          p.admin || (t.kind === "user" && t.user !== undefined && (await mayManage(p, t.user)));
        if (!allowed) throw notFound(`no token ${id}`);
        if (t.revokedAt) return t;
        const next: Token = { ...t, revokedAt: new Date().toISOString(), revokedBy: p.label };
        try {
          await store.put("token", o.key, next, { expectRevision: o.revision });
          return next;
        } catch (err) {
          if ((err as { code?: string }).code !== "conflict") throw err;
        }
      }
    },
  );

  api.get(
    "/users",
    { schema: { summary: "Users and service accounts, with their roles", tags: ["identity"] } },
    async () => {
      const members = (await store.list<Member>("member")).items.map((o) => o.value);
      const items = (await store.list<User>("user")).items.map((o) => ({
        ...o.value,
        roles: members
          .filter((m) => m.user === o.value.name)
          .map((m) => ({ tenant: m.tenant, role: m.role })),
      }));
      return { items };
    },
  );

  api.post(
    "/users",
    {
      schema: {
        summary: "Create a user (a person); give it roles with members",
        tags: ["identity"],
        body: CreateUserBody,
      },
    },
    async (req, reply) => {
      const body = req.body as { name: string; admin?: boolean };
      const user: User = {
        name: body.name,
        createdAt: new Date().toISOString(),
        createdBy: who(req).label,
        ...(body.admin ? { admin: true } : {}),
      };
      try {
        await store.put("user", body.name, user, { expectRevision: 0 });
      } catch (err) {
        if ((err as { code?: string }).code === "conflict")
          throw conflict(`user ${body.name} already exists`);
        throw err;
      }
      reply.code(201);
      return user;
    },
  );

  api.delete(
    "/users/:name",
    {
      schema: {
        summary: "Delete a user: its roles go and its tokens are revoked",
        tags: ["identity"],
        params: UserParams,
      },
    },
    async (req) => {
      const p = who(req);
      const { name } = req.params as { name: string };
      if (p.token.user === name) throw new HerdError("invalid", "you cannot delete yourself");
      const o = await store.get<User>("user", name);
      if (!o) throw notFound(`no user ${name}`);
      await revokeAll(deps, name, p.label);
      for (const m of (await store.list<Member>("member")).items) {
        if (m.value.user === name) await store.delete("member", m.key);
      }
      await store.delete("user", name);
      return o.value;
    },
  );
}

/** Revokes every token of a user (when it is deleted or leaves its only tenant). */
export async function revokeAll(deps: ApiDeps, user: string, by: string): Promise<void> {
  await revokeTokens(deps.store, (t) => t.kind === "user" && t.user === user, by);
}
