/**
 * Tenants and who works in them: `herd tenants` (list, create, show, domains),
 * `herd members` (list, add, remove) and `herd service-accounts` (create, list,
 * delete). Creating tenants and giving them domains is for platform admins;
 * members and service accounts are for the tenant's owners.
 *
 *   tenants            ─► GET/POST /tenants, GET /tenants/:name, PUT /tenants/:name/domains|limits|image-user
 *   members            ─► GET /tenants/:name/members, PUT/DELETE /tenants/:name/members/:user
 *   service-accounts   ─► POST /tenants/:name/service-accounts (then POST /tokens {user})
 */

import type { Member, Role } from "../model/identity.ts";
import { parseBytes } from "../model/manifest.ts";
import type { Tenant, TenantLimits } from "../model/objects.ts";
import { parseCount, UsageError } from "./args.ts";
import {
  type CliContext,
  type CommandSpec,
  type FlagValues,
  printJson,
  println,
  stringFlag,
} from "./context.ts";
import { formatAge, formatBytes, renderTable } from "./format.ts";
import { currentTenant } from "./login.ts";
import type { Items } from "./types.ts";

const ROLES: readonly Role[] = ["owner", "deployer", "viewer"];
const ROLE_FLAG: [string, string] = [
  "--role R",
  "owner (members, tokens, everything in the tenant), deployer (deploy, scale, routes, config), viewer (read)",
];
const tenantPath = (name: string) => `/tenants/${encodeURIComponent(name)}`;

/** A tenant as the API shows one: with the units in use (GET /tenants/:name) or the caller's role (lists). */
export type TenantView = Tenant & { role?: string; usage?: { units: number }; unit?: unknown };

/** `herd tenants`, `tenants create NAME …`, `tenants show [NAME]`, `tenants domains NAME D… | --none`. */
export const tenantsCommand: CommandSpec = {
  name: "tenants",
  usage:
    "herd tenants\n" +
    "herd tenants create NAME [--quota UNITS] [--domain D]…\n" +
    "herd tenants show [NAME]\n" +
    "herd tenants domains NAME D… | --none\n" +
    "herd tenants limits NAME [--upload SIZE] [--unpacked SIZE] [--files N]\n" +
    "herd tenants image-user NAME allow|deny",
  summary:
    "List, create or show tenants, or give one its domains. The list holds the tenants you are\n" +
    "in (a platform admin: all); show prints quota, usage and domains. Only a tenant's routes may\n" +
    "use its domains and their subdomains. limits bounds its deploys (upload size, unpacked size,\n" +
    "file count); a limit not given is the server's again. image-user allow lets its container\n" +
    "services run as their image's own user (user: image in herd.yaml; root when the image names\n" +
    "none); otherwise every container runs as the tenant's unprivileged uid. Creating tenants,\n" +
    "setting domains, limits and image-user is for platform admins.",
  flags: [
    ["--quota UNITS", "create: the most resource units its services may hold"],
    ["--domain D", "create: a domain it owns (repeat for more)"],
    ["--none", "domains: take every domain away"],
    ["--upload SIZE", "limits: largest source upload, e.g. 200Mi"],
    ["--unpacked SIZE", "limits: most bytes a source unpacks to, e.g. 1Gi"],
    ["--files N", "limits: most files and directories in a source"],
  ],
  options: {
    quota: { type: "string" },
    domain: { type: "string", multiple: true },
    none: { type: "boolean" },
    upload: { type: "string" },
    unpacked: { type: "string" },
    files: { type: "string" },
  },
  async run(ctx, values, positionals) {
    const [action, name, ...rest] = positionals;
    if (action === undefined || action === "list") {
      if (name !== undefined) throw new UsageError(`unexpected argument: ${name}`, "tenants");
      return listTenants(ctx);
    }
    if (action === "show") {
      if (rest.length > 0) throw new UsageError(`unexpected argument: ${rest[0]}`, "tenants");
      return showTenant(ctx, name ?? (await currentTenant(ctx, "tenants")));
    }
    if (action !== "create" && action !== "domains" && action !== "limits" && action !== "image-user")
      throw new UsageError(`unknown tenants action: ${action}`, "tenants");
    if (!name) throw new UsageError(`tenants ${action} needs the tenant's name`, "tenants");
    if (action === "image-user") return setImageUser(ctx, name, rest);
    if (action !== "domains" && rest.length > 0)
      throw new UsageError(`unexpected argument: ${rest[0]}`, "tenants");
    if (action === "create") return createTenant(ctx, name, values);
    if (action === "limits") return setLimits(ctx, name, values);
    if (rest.length === 0 && values.none !== true)
      throw new UsageError(
        "name the domains (herd tenants domains NAME shop.example.com), or --none",
        "tenants",
      );
    if (rest.length > 0 && values.none === true)
      throw new UsageError("pass domains or --none, not both", "tenants");
    const reply = await (await ctx.client()).put<TenantView>(`${tenantPath(name)}/domains`, {
      domains: rest,
    });
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else
      println(
        ctx.stdout,
        reply.domains?.length
          ? `Tenant ${name} owns ${reply.domains.join(", ")} and their subdomains.`
          : `Tenant ${name} owns no domains now.`,
      );
    return 0;
  },
};

async function setLimits(ctx: CliContext, name: string, values: FlagValues): Promise<number> {
  const size = (flag: string) => {
    const v = stringFlag(values, flag);
    if (v === undefined) return undefined;
    try {
      return parseBytes(v);
    } catch {
      throw new UsageError(`--${flag} ${v}: expected a size such as 200Mi or 1Gi`, "tenants");
    }
  };
  const files = stringFlag(values, "files");
  const limits: TenantLimits = {
    uploadBytes: size("upload"),
    unpackBytes: size("unpacked"),
    unpackEntries: files === undefined ? undefined : parseCount(files, "files", "tenants", 1),
  };
  const reply = await (await ctx.client()).put<TenantView>(`${tenantPath(name)}/limits`, limits);
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else
    println(
      ctx.stdout,
      reply.limits
        ? `Tenant ${name}'s deploys: ${limitsText(reply.limits)}.`
        : `Tenant ${name} has the server's deploy limits.`,
    );
  return 0;
}

async function setImageUser(ctx: CliContext, name: string, rest: string[]): Promise<number> {
  const [choice, extra] = rest;
  if (choice !== "allow" && choice !== "deny")
    throw new UsageError(
      choice === undefined
        ? "tenants image-user NAME needs allow or deny"
        : `${choice}: expected allow or deny`,
      "tenants",
    );
  if (extra !== undefined) throw new UsageError(`unexpected argument: ${extra}`, "tenants");
  const reply = await (await ctx.client()).put<TenantView>(`${tenantPath(name)}/image-user`, {
    allowed: choice === "allow",
  });
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else println(ctx.stdout, `Tenant ${name}'s containers run as ${imageUserText(reply)}.`);
  return 0;
}

function imageUserText(t: Tenant): string {
  return t.allowImageUser
    ? "their image's own user where the service says user: image (root when the image names none), the tenant's uid otherwise"
    : "the tenant's uid (user: image is refused)";
}

/** `upload 10 MiB, unpacked 1 GiB, 500 files`, naming only the limits set. */
function limitsText(l: TenantLimits): string {
  return [
    l.uploadBytes === undefined ? "" : `upload ${formatBytes(l.uploadBytes)}`,
    l.unpackBytes === undefined ? "" : `unpacked ${formatBytes(l.unpackBytes)}`,
    l.unpackEntries === undefined ? "" : `${l.unpackEntries} files`,
  ]
    .filter(Boolean)
    .join(", ");
}

async function listTenants(ctx: CliContext): Promise<number> {
  const reply = await (await ctx.client()).get<Items<TenantView>>("/tenants");
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else if (reply.items.length === 0) println(ctx.stdout, "You hold no role in any tenant.");
  else println(ctx.stdout, tenantsTable(reply.items, ctx.now()));
  return 0;
}

/** `herd tenants`: NAME, ROLE (yours; not for a platform admin), QUOTA, DOMAINS, CREATED. */
export function tenantsTable(tenants: readonly TenantView[], now: number): string {
  const withRole = tenants.some((t) => t.role !== undefined);
  const rows = tenants.map((t) => [
    t.name,
    ...(withRole ? [t.role ?? "-"] : []),
    t.quota ? `${t.quota.units} units` : "none",
    t.domains?.join(" ") || "-",
    formatAge(t.createdAt, now),
  ]);
  return renderTable(["name", ...(withRole ? ["role"] : []), "quota", "domains", "created"], rows);
}

async function createTenant(ctx: CliContext, name: string, values: FlagValues): Promise<number> {
  const quota = stringFlag(values, "quota");
  const domains = (values.domain as string[] | undefined) ?? [];
  const tenant = await (await ctx.client()).post<Tenant>("/tenants", {
    name,
    ...(quota !== undefined ? { quota: { units: parseCount(quota, "quota", "tenants") } } : {}),
    ...(domains.length ? { domains } : {}),
  });
  if (ctx.flags.json) printJson(ctx.stdout, tenant);
  else {
    println(ctx.stdout, `Created tenant ${tenant.name}.`);
    println(ctx.stdout, `Give it an owner: herd members add USER --tenant ${tenant.name} --role owner`);
  }
  return 0;
}

async function showTenant(ctx: CliContext, name: string): Promise<number> {
  const t = await (await ctx.client()).get<TenantView>(tenantPath(name));
  if (ctx.flags.json) {
    printJson(ctx.stdout, t);
    return 0;
  }
  const used = t.usage?.units ?? 0;
  println(ctx.stdout, `tenant:  ${t.name}`);
  println(ctx.stdout, `quota:   ${used} units in use, ${t.quota ? `limit ${t.quota.units}` : "no limit"}`);
  println(ctx.stdout, `domains: ${t.domains?.join(", ") || "none (its apps are served on APP.localhost)"}`);
  if (t.limits) println(ctx.stdout, `limits:  ${limitsText(t.limits)} (for its deploys)`);
  if (t.allowImageUser)
    println(ctx.stdout, "images:  may run as their own user (user: image; root when the image names none)");
  println(ctx.stdout, `created: ${t.createdAt}`);
  return 0;
}

/** A member as `GET /tenants/:name/members` lists it. */
type MemberView = Member & { serviceAccount?: boolean };

/** `herd members [--tenant T]`, `members add USER --role R`, `members remove USER`. */
export const membersCommand: CommandSpec = {
  name: "members",
  usage:
    "herd members [--tenant T]\n" +
    "herd members add USER --role owner|deployer|viewer [--tenant T]\n" +
    "herd members remove USER [--tenant T]",
  summary:
    "List a tenant's members and roles, give a user a role, or take it away. Adding it again\n" +
    "changes the role. For the tenant's owners and platform admins; a tenant keeps at least one owner.",
  flags: [ROLE_FLAG],
  options: { role: { type: "string" } },
  async run(ctx, values, positionals) {
    const [action, user, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "members");
    if (action === undefined || action === "list") {
      if (user !== undefined) throw new UsageError(`unexpected argument: ${user}`, "members");
      const tenant = await currentTenant(ctx, "members");
      const reply = await (await ctx.client()).get<Items<MemberView>>(`${tenantPath(tenant)}/members`);
      if (ctx.flags.json) printJson(ctx.stdout, reply);
      else if (reply.items.length === 0) println(ctx.stdout, `Tenant ${tenant} has no members.`);
      else println(ctx.stdout, membersTable(reply.items, ctx.now()));
      return 0;
    }
    if (action !== "add" && action !== "remove")
      throw new UsageError(`unknown members action: ${action}`, "members");
    if (!user) throw new UsageError(`members ${action} needs the user's name`, "members");
    if (action === "add") {
      const role = roleFlag(values, "members");
      const tenant = await currentTenant(ctx, "members");
      const member = await (await ctx.client()).put<Member>(
        `${tenantPath(tenant)}/members/${encodeURIComponent(user)}`,
        { role },
      );
      if (ctx.flags.json) printJson(ctx.stdout, member);
      else println(ctx.stdout, `${user} is now ${article(role)} ${role} in tenant ${tenant}.`);
      return 0;
    }
    const tenant = await currentTenant(ctx, "members");
    const removed = await (await ctx.client()).delete<Member>(
      `${tenantPath(tenant)}/members/${encodeURIComponent(user)}`,
    );
    if (ctx.flags.json) printJson(ctx.stdout, removed);
    else println(ctx.stdout, `${user} is no longer a member of tenant ${tenant}.`);
    return 0;
  },
};

/** `herd members`: USER, ROLE, KIND (user or service account), ADDED, BY. */
export function membersTable(members: readonly MemberView[], now: number): string {
  const rows = members.map((m) => [
    m.user,
    m.role,
    m.serviceAccount ? "service account" : "user",
    formatAge(m.addedAt, now),
    m.addedBy ?? "-",
  ]);
  return renderTable(["user", "role", "kind", "added", "by"], rows);
}

/** `herd service-accounts [--tenant T]`, `create NAME --role R`, `delete NAME`. */
export const serviceAccountsCommand: CommandSpec = {
  name: "service-accounts",
  usage:
    "herd service-accounts [--tenant T]\n" +
    "herd service-accounts create NAME --role owner|deployer|viewer [--tenant T]\n" +
    "herd service-accounts delete NAME [--tenant T]",
  summary:
    "Manage a tenant's accounts for programs (CI, bots), each with a role in it. Its owners\n" +
    "create them, then a token: `herd tokens create ci --user NAME --expires 90d`.\n" +
    "delete removes the account and revokes its tokens.",
  flags: [ROLE_FLAG],
  options: { role: { type: "string" } },
  async run(ctx, values, positionals) {
    const [action, name, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "service-accounts");
    const tenant = await currentTenant(ctx, "service-accounts");
    const client = await ctx.client();
    if (action === undefined || action === "list") {
      if (name !== undefined) throw new UsageError(`unexpected argument: ${name}`, "service-accounts");
      const reply = await client.get<Items<MemberView>>(`${tenantPath(tenant)}/members`);
      const items = reply.items.filter((m) => m.serviceAccount);
      if (ctx.flags.json) printJson(ctx.stdout, { items });
      else if (items.length === 0) println(ctx.stdout, `Tenant ${tenant} has no service accounts.`);
      else println(ctx.stdout, membersTable(items, ctx.now()));
      return 0;
    }
    if (action !== "create" && action !== "delete")
      throw new UsageError(`unknown service-accounts action: ${action}`, "service-accounts");
    if (!name)
      throw new UsageError(`service-accounts ${action} needs the account's name`, "service-accounts");
    if (action === "create") {
      const role = roleFlag(values, "service-accounts");
      const account = await client.post<{ name: string; tenant: string; role: Role }>(
        `${tenantPath(tenant)}/service-accounts`,
        { name, role },
      );
      if (ctx.flags.json) printJson(ctx.stdout, account);
      else {
        println(ctx.stdout, `Created service account ${name} in tenant ${tenant} (${role}).`);
        println(
          ctx.stdout,
          `Make its token (shown once): herd tokens create ${name}-token --user ${name} --expires 90d`,
        );
      }
      return 0;
    }
    const members = await client.get<Items<MemberView>>(`${tenantPath(tenant)}/members`);
    if (!members.items.some((m) => m.user === name && m.serviceAccount)) {
      throw new Error(`tenant ${tenant} has no service account ${name} (herd service-accounts lists them)`);
    }
    const removed = await client.delete<Member>(`${tenantPath(tenant)}/members/${encodeURIComponent(name)}`);
    if (ctx.flags.json) printJson(ctx.stdout, removed);
    else println(ctx.stdout, `Deleted service account ${name} of tenant ${tenant}; its tokens are revoked.`);
    return 0;
  },
};

function roleFlag(values: FlagValues, command: string): Role {
  const role = stringFlag(values, "role");
  if (role === undefined) throw new UsageError(`pass --role ${ROLES.join("|")}`, command);
  if (!(ROLES as readonly string[]).includes(role))
    throw new UsageError(`--role must be one of ${ROLES.join(", ")}, not ${role}`, command);
  return role as Role;
}

const article = (role: string) => (role === "owner" ? "an" : "a");
