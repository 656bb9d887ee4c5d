/**
 * `herd addons …`: managed PostgreSQL servers (add-ons) and their bindings
 * to apps. A binding gives the app a database and role of its own and its
 * URL as the secret DATABASE_URL (a new release rolls out).
 */

import { UsageError } from "./args.ts";
import {
  type CliContext,
  type CommandSpec,
  confirmDestroy,
  printJson,
  println,
  stringFlag,
} from "./context.ts";
import { renderTable } from "./format.ts";
import type { Items } from "./types.ts";

interface AddonView {
  name: string;
  kind: string;
  plan: string;
  endpoint?: string;
  state?: string;
  node?: string | null;
  bindings: { app: string; var: string; database: string; user: string }[];
}

interface BackupView {
  id: string;
  createdAt: string;
  size: number;
  databases: string[];
}

const USAGE = [
  "herd addons [list]",
  "herd addons create postgres|redis [--app APP] [--plan small|medium|large] [--name NAME] [--as VAR]",
  "herd addons info NAME",
  "herd addons attach NAME --app APP [--as VAR]",
  "herd addons detach NAME --app APP",
  "herd addons destroy NAME [--confirm NAME]",
  "herd addons backup NAME | backups NAME | restore NAME BACKUP_ID   (postgres)",
].join("\n");

const path = (name: string) => `/addons/${encodeURIComponent(name)}`;

export const addonsCommand: CommandSpec = {
  name: "addons",
  usage: USAGE,
  summary:
    "Managed databases: a PostgreSQL or Redis server herd runs as a pet app of your tenant (its logs: herd logs --app NAME).\n" +
    "attach gives an app a database of its own and its URL as the secret DATABASE_URL or REDIS_URL (or --as VAR); a new release rolls out.\n" +
    "destroy deletes the server and its data: it asks for the name (or --confirm NAME).",
  flags: [
    ["--app APP", "the app to bind"],
    ["--plan PLAN", "create: small (default), medium or large"],
    ["--name NAME", "create: the add-on's name (default APP-postgres)"],
    ["--as VAR", "the env variable that carries the URL (default DATABASE_URL)"],
    ["--confirm NAME", "destroy: the add-on's name, to confirm"],
  ],
  options: {
    app: { type: "string" },
    plan: { type: "string" },
    name: { type: "string" },
    as: { type: "string" },
    confirm: { type: "string" },
  },
  async run(ctx, values, positionals) {
    const [action = "list", arg, extraId, ...extra] = positionals;
    if (extra.length > 0 || (extraId !== undefined && action !== "restore"))
      throw new UsageError(`unexpected argument: ${extra[0] ?? extraId}`, "addons");
    const client = await ctx.client();
    const app = stringFlag(values, "app");
    const as = stringFlag(values, "as");
    const out = (reply: unknown, text: string) => {
      if (ctx.flags.json) printJson(ctx.stdout, reply);
      else println(ctx.stdout, text);
      return 0;
    };
    switch (action) {
      case "list": {
        const reply = await client.get<Items<AddonView>>("/addons");
        if (reply.items.length === 0 && !ctx.flags.json)
          return out(reply, "No add-ons. Create one with `herd addons create postgres --app APP`.");
        return out(reply, table(reply.items));
      }
      case "create": {
        if (!arg) throw new UsageError("addons create needs a kind: postgres", "addons");
        const body = {
          kind: arg,
          ...(app ? { app } : {}),
          ...(stringFlag(values, "plan") ? { plan: stringFlag(values, "plan") } : {}),
          ...(stringFlag(values, "name") ? { name: stringFlag(values, "name") } : {}),
          ...(as ? { var: as } : {}),
        };
        const reply = await client.post<{ addon: AddonView; binding?: { app: string; var: string } }>(
          "/addons",
          body,
        );
        return out(
          reply,
          `Created ${reply.addon.kind} add-on ${reply.addon.name} (plan ${reply.addon.plan}).` +
            (reply.binding
              ? ` ${reply.binding.app} gets ${reply.binding.var}; its new release rolls out.`
              : ""),
        );
      }
      case "info": {
        const a = await client.get<AddonView>(path(need(arg, "info")));
        return out(
          a,
          [
            `${a.name}: ${a.kind}, plan ${a.plan}, ${a.state ?? "?"}${a.node ? ` on ${a.node}` : ""}${a.endpoint ? ` at ${a.endpoint}` : ""}`,
            a.bindings.length === 0
              ? "No apps bound."
              : renderTable(
                  ["APP", "VAR", "DATABASE", "USER"],
                  a.bindings.map((b) => [b.app, b.var, b.database, b.user]),
                ),
          ].join("\n"),
        );
      }
      case "attach": {
        if (!app) throw new UsageError("addons attach needs --app APP", "addons");
        const name = need(arg, "attach");
        const reply = await client.post<{ binding: { var: string } }>(`${path(name)}/attach`, {
          app,
          ...(as ? { var: as } : {}),
        });
        return out(reply, `Bound ${name} to ${app} as ${reply.binding.var}; its new release rolls out.`);
      }
      case "detach": {
        if (!app) throw new UsageError("addons detach needs --app APP", "addons");
        const name = need(arg, "detach");
        const reply = await client.post(`${path(name)}/detach`, { app });
        return out(
          reply,
          `Detached ${name} from ${app}: its database is dropped, its URL gone with a new release.`,
        );
      }
      case "destroy": {
        const name = need(arg, "destroy");
        await confirmDestroy(
          ctx as CliContext,
          {
            kind: "add-on",
            name,
            verb: "destroy",
            command: "addons",
            warning: `This destroys the add-on ${name}, detaches every app and deletes its data.`,
          },
          stringFlag(values, "confirm"),
        );
        const reply = await client.delete(path(name), { confirm: name });
        return out(reply, `Destroyed add-on ${name}.`);
      }
      case "backup": {
        const name = need(arg, "backup");
        const b = await client.post<BackupView>(`${path(name)}/backups`);
        return out(
          b,
          `Backup ${b.id} of ${name}: ${b.databases.join(", ") || "no databases"}, ${b.size} bytes.`,
        );
      }
      case "backups": {
        const name = need(arg, "backups");
        const reply = await client.get<Items<BackupView>>(`${path(name)}/backups`);
        return out(
          reply,
          reply.items.length === 0
            ? `${name} has no backups (herd addons backup ${name}).`
            : renderTable(
                ["ID", "CREATED", "SIZE", "DATABASES"],
                reply.items.map((b) => [b.id, b.createdAt, String(b.size), b.databases.join(", ")]),
              ),
        );
      }
      case "restore": {
        const name = need(arg, "restore");
        const id = extraId;
        if (!id)
          throw new UsageError("addons restore needs the backup's id (herd addons backups NAME)", "addons");
        const b = await client.post<BackupView>(`${path(name)}/backups/${encodeURIComponent(id)}/restore`);
        return out(b, `Restored ${name} from backup ${b.id} (${b.databases.join(", ")}).`);
      }
      default:
        throw new UsageError(`unknown addons action: ${action}`, "addons");
    }
  },
};

function need(arg: string | undefined, action: string): string {
  if (!arg) throw new UsageError(`addons ${action} needs the add-on's name`, "addons");
  return arg;
}

function table(items: AddonView[]): string {
  return renderTable(
    ["NAME", "KIND", "PLAN", "APPS"],
    items.map((a) => [a.name, a.kind, a.plan, a.bindings.map((b) => b.app).join(", ") || "-"]),
  );
}
