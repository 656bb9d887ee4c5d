/**
 * `herd tokens`: create, list and revoke API tokens — your own, a service
 * account's (tenant owners), or anyone's and machines' (platform admins). A
 * new token's secret is printed once; herd keeps only its hash.
 *
 *   create ─► POST /tokens {name, kind, user, node, tenant, expiresIn} ─► the secret, once
 *   list   ─► GET /tokens?user=&all=        revoke ─► DELETE /tokens/:id
 */

import type { Token, TokenKind } from "../model/identity.ts";
import { UsageError } from "./args.ts";
import {
  type CliContext,
  type CommandSpec,
  type FlagValues,
  printJson,
  println,
  stringFlag,
} from "./context.ts";
import { formatAge, formatExpiry, renderTable } from "./format.ts";
import { tokenId } from "./login.ts";
import type { Items } from "./types.ts";

const KINDS: readonly TokenKind[] = ["user", "agent", "gateway", "ingest", "join"];

/** `herd tokens`, `tokens create NAME …`, `tokens revoke ID`. */
export const tokensCommand: CommandSpec = {
  name: "tokens",
  usage:
    "herd tokens [--user U | --all]\n" +
    "herd tokens create NAME [--expires 30d] [--user U] [--kind user|agent|gateway|ingest|join] [--node N] [--tenant T]\n" +
    "herd tokens revoke ID",
  summary:
    "List, create or revoke API tokens. Yours by default; a tenant owner manages its service\n" +
    "accounts' (--user), a platform admin anyone's and machines' (agent --node N, gateway,\n" +
    "ingest --tenant T, join). create prints the token once: herd keeps only its hash.\n" +
    "revoke: the token stops working at once.",
  flags: [
    ["--user U", "whose tokens (default: yours)"],
    ["--all", "list every token, machines' too (platform admins)"],
    ["--expires D", "create: lifetime such as 12h, 30d, 1y (default: no expiry)"],
    ["--kind K", "create: user (default), agent, gateway, ingest or join"],
    ["--node N", "create: the node an agent token may act as"],
    ["--tenant T", "create: the tenant an ingest token writes telemetry for"],
  ],
  options: {
    user: { type: "string" },
    all: { type: "boolean" },
    expires: { type: "string" },
    kind: { type: "string" },
    node: { type: "string" },
  },
  async run(ctx, values, positionals) {
    const [action, arg, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "tokens");
    if (action === undefined || action === "list") {
      if (arg !== undefined) throw new UsageError(`unexpected argument: ${arg}`, "tokens");
      return listTokens(ctx, values);
    }
    if (action === "create") {
      if (!arg) throw new UsageError("tokens create needs a name saying what the token is for", "tokens");
      return createToken(ctx, arg, values);
    }
    if (action === "revoke") {
      if (!arg) throw new UsageError("tokens revoke needs the token's id (see herd tokens)", "tokens");
      return revokeToken(ctx, arg);
    }
    throw new UsageError(`unknown tokens action: ${action}`, "tokens");
  },
};

async function listTokens(ctx: CliContext, values: FlagValues): Promise<number> {
  const user = stringFlag(values, "user");
  const all = values.all === true;
  if (user && all) throw new UsageError("pass --user U or --all, not both", "tokens");
  const reply = await (await ctx.client()).get<Items<Token>>("/tokens", {
    user,
    all: all ? true : undefined,
  });
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else if (reply.items.length === 0) println(ctx.stdout, "No tokens.");
  else println(ctx.stdout, tokensTable(reply.items, ctx.now()));
  return 0;
}

/** `herd tokens`: one row per token, the revoked ones too (kept for the audit trail). */
export function tokensTable(tokens: readonly Token[], now: number): string {
  const rows = tokens.map((t) => [
    t.id,
    t.name,
    t.kind,
    tokenHolder(t),
    formatAge(t.createdAt, now),
    t.revokedAt ? "-" : formatExpiry(t.expiresAt, now),
    formatAge(t.lastUsedAt, now),
    t.revokedAt ? `${formatAge(t.revokedAt, now)}${t.revokedBy ? ` by ${t.revokedBy}` : ""}` : "-",
  ]);
  return renderTable(["id", "name", "kind", "for", "created", "expires", "last used", "revoked"], rows);
}

/** Whom or what a token stands for: `user alice`, `node n1`, `tenant shop`. */
function tokenHolder(t: Token): string {
  if (t.user) return `user ${t.user}`;
  if (t.node) return `node ${t.node}`;
  if (t.tenant) return `tenant ${t.tenant}`;
  return "-";
}

async function createToken(ctx: CliContext, name: string, values: FlagValues): Promise<number> {
  const kind = (stringFlag(values, "kind") ?? "user") as TokenKind;
  if (!KINDS.includes(kind))
    throw new UsageError(`--kind must be one of ${KINDS.join(", ")}, not ${kind}`, "tokens");
  const expires = stringFlag(values, "expires");
  if (expires !== undefined && !/^[0-9]+(ms|s|m|h|d|w|y)$/.test(expires)) {
    throw new UsageError(`--expires must be a duration such as 12h, 30d or 1y, not ${expires}`, "tokens");
  }
  const node = stringFlag(values, "node");
  if (node !== undefined && kind !== "agent")
    throw new UsageError("--node is only for --kind agent", "tokens");
  if (kind === "agent" && node === undefined)
    throw new UsageError("an agent token needs --node N: the node it may act as", "tokens");
  const user = stringFlag(values, "user");
  if (user !== undefined && kind !== "user") throw new UsageError("--user is only for --kind user", "tokens");
  // --tenant is the global flag: for an ingest token it names the tenant the token writes for.
  const tenant = kind === "ingest" ? (await ctx.serverConfig()).tenant : undefined;
  if (kind === "ingest" && tenant === undefined)
    throw new UsageError("an ingest token needs --tenant T: the tenant it writes telemetry for", "tokens");

  const client = await ctx.client();
  const reply = await client.post<Token & { token: string }>("/tokens", {
    name,
    ...(kind !== "user" ? { kind } : {}),
    ...(user ? { user } : {}),
    ...(node ? { node } : {}),
    ...(tenant ? { tenant } : {}),
    ...(expires ? { expiresIn: expires } : {}),
  });
  if (ctx.flags.json) {
    printJson(ctx.stdout, reply);
    return 0;
  }
  const holder = tokenHolder(reply);
  println(
    ctx.stdout,
    `Created ${reply.kind} token ${reply.id} (${reply.name})${holder === "-" ? "" : ` for ${holder}`}, expires: ${formatExpiry(reply.expiresAt, ctx.now())}.`,
  );
  println(ctx.stdout, "This is the only time it is shown (herd keeps only its hash); store it now:");
  println(ctx.stdout);
  println(ctx.stdout, `  ${reply.token}`);
  println(ctx.stdout);
  const use: Record<TokenKind, string> = {
    user: `Sign in with it: herd login --server ${client.url} (paste it when asked), or set HERD_TOKEN.`,
    agent: `Start the agent with it: HERD_TOKEN=… herd agent --server ${client.url} --name ${reply.node}`,
    gateway: `Start a gateway with it: HERD_TOKEN=… herd gateway --server ${client.url}`,
    ingest: `Push metrics and spans for tenant ${reply.tenant} with it (Authorization: Bearer …).`,
    join: `A new machine joins with it: herd agent --server ${client.url} --join-token … --name NAME (also: herd nodes join-token)`,
  };
  println(ctx.stdout, use[reply.kind]);
  return 0;
}

async function revokeToken(ctx: CliContext, arg: string): Promise<number> {
  // A whole token's text works too: its id is inside it.
  const id = tokenId(arg) ?? arg;
  if (!/^[0-9a-f]{8}$/.test(id)) {
    throw new UsageError(
      `${arg.slice(0, 20)}: expected a token id, 8 hex digits (see herd tokens)`,
      "tokens",
    );
  }
  const token = await (await ctx.client()).delete<Token>(`/tokens/${id}`);
  if (ctx.flags.json) printJson(ctx.stdout, token);
  else
    println(
      ctx.stdout,
      `Revoked token ${token.id} (${token.name}${token.user ? `, user ${token.user}` : ""}): it no longer works.`,
    );
  return 0;
}
