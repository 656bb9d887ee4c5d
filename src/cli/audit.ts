/**
 * `herd audit`: the trail of writes made through the API — who, what, where
 * from and with what result, refusals included. A tenant's owners see their
 * tenant's; a platform admin every tenant's (or one's, with --tenant).
 *
 *   flags ─► GET /audit?actor=&app=&verb=&since=&limit= (tenant from --tenant) ─► table, oldest first
 */

import { parseCount, UsageError } from "./args.ts";
import { type CommandSpec, printJson, println, stringFlag } from "./context.ts";
import { formatTime, renderTable } from "./format.ts";
import { sinceTime } from "./logs.ts";
import type { AuditEntry, Items } from "./types.ts";

const VERBS = ["create", "update", "delete"];

/** `herd audit [--actor A] [--app A] [--verb V] [--since T] [--limit N] [--tenant T]`. */
export const auditCommand: CommandSpec = {
  name: "audit",
  usage:
    "herd audit [--tenant T] [--actor A] [--app A] [--verb create|update|delete] [--since 1h|TIME] [--limit N]",
  summary:
    "Show the audit trail of writes, refused ones too. Each says who made it, the request,\n" +
    "tenant and app, status, client address and the error. Oldest first, the newest\n" +
    "--limit (default 100). For tenant owners (their tenant) and platform admins (every tenant).",
  flags: [
    ["--actor A", "only this actor: a user's name (alice), or `service account ci`, `agent n1`"],
    ["--app A", "only writes to this app"],
    ["--verb V", "create (POST), update (PUT, PATCH) or delete (DELETE)"],
    ["--since T", "from a time ago (30m, 2h, 7d) or an ISO time"],
    ["--limit N", "at most N entries, the newest (default 100)"],
  ],
  options: {
    actor: { type: "string" },
    app: { type: "string" },
    verb: { type: "string" },
    since: { type: "string" },
    limit: { type: "string" },
  },
  async run(ctx, values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "audit");
    const verb = stringFlag(values, "verb");
    if (verb !== undefined && !VERBS.includes(verb))
      throw new UsageError(`--verb must be one of ${VERBS.join(", ")}, not ${verb}`, "audit");
    const since = stringFlag(values, "since");
    const limit = stringFlag(values, "limit");
    const reply = await (await ctx.client()).get<Items<AuditEntry>>("/audit", {
      actor: stringFlag(values, "actor"),
      app: stringFlag(values, "app"),
      verb,
      since: since === undefined ? undefined : sinceTime(since, ctx.now(), "audit"),
      limit: limit === undefined ? undefined : parseCount(limit, "limit", "audit", 1),
    });
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else if (reply.items.length === 0) println(ctx.stdout, "No audit entries match.");
    else println(ctx.stdout, auditTable(reply.items));
    return 0;
  },
};

/** `herd audit`: TIME (UTC), ACTOR, VERB, REQUEST, TENANT/APP, STATUS, ADDRESS, MESSAGE. */
export function auditTable(entries: readonly AuditEntry[]): string {
  const rows = entries.map((e) => [
    formatTime(e.at),
    e.actor,
    e.verb,
    `${e.route.split(" ")[0]} ${e.path.replace(/^\/api\/v1(?=\/)/, "")}`,
    [e.tenant ?? "-", e.app].filter(Boolean).join("/"),
    String(e.status),
    e.address.replace(/^::ffff:/, ""),
    e.message ?? "-",
  ]);
  return renderTable(
    ["time (utc)", "actor", "verb", "request", "tenant/app", "status", "address", "message"],
    rows,
  );
}
