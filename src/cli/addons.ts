/**
 * `herd addons …`: managed PostgreSQL servers (add-ons) and their bindings
 * to apps. A binding gives the app a database and role of its own and its
 * URL as the secret DATABASE_URL (a new release rolls out).
 */

import { readFile } from "node:fs/promises";
import { ADDON_FIGURES } from "../addons/metrics.ts";
import { parseJsonObject } from "../common/json-object.ts";
import type { ApiClient } from "./api-client.ts";
import { UsageError } from "./args.ts";
import {
  type CliContext,
  type CommandSpec,
  confirmDestroy,
  type FlagValues,
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
  bindings: { app: string; var: string; database: string; user: string; vars?: string[] }[];
  /** Detached apps whose database is dropped once their release without the URL has rolled out. */
  detached?: { app: string; database: string; user: string; afterDeploy?: string; withoutBackup?: boolean }[];
  broker?: { name: string; state: string; message?: string; dashboardUrl?: string };
}

/** What `herd addons detach` says (herd's own add-ons drop the app's database once the release has rolled out). */
function detachedLine(name: string, app: string, deploy: string | undefined, backup: boolean): string {
  return `Detached ${name} from ${app}: its URL goes with ${deploy ? `deploy ${deploy}` : "a new release"}; \`herd addons info ${name}\` shows a database still to be dropped once that has rolled out${backup ? ` (backed up first: \`herd addons backups ${name}\`)` : ""}.`;
}

interface BrokerView {
  name: string;
  tenant?: string;
  url: string;
  user?: string;
  catalogAt: string;
  services: { name: string; plans: { name: string }[] }[];
}

interface BackupView {
  id: string;
  createdAt: string;
  size: number;
  databases: string[];
  format?: string;
  reason?: string;
}

interface FinalBackupView extends BackupView {
  addon: string;
  kind: string;
  destroyedAt: string;
}

const whatOf = (b: BackupView) =>
  b.format === "rdb" ? "RDB snapshot" : b.databases.join(", ") || "no databases";

const USAGE = [
  "herd addons [list]",
  "herd addons create postgres|redis|SERVICE [--app APP] [--plan PLAN] [--name NAME] [--as VAR]\n" +
    "                    [--backup-schedule CRON [--keep N]] [--param K=V]... [--params FILE.json] [--from-backup ID]",
  "herd addons plan NAME PLAN [--param K=V]... [--params FILE.json]",
  "herd addons info NAME",
  "herd addons attach NAME --app APP [--as VAR] [--param K=V]... [--params FILE.json]",
  "herd addons metrics NAME",
  "herd addons detach NAME --app APP [--without-backup]",
  "herd addons destroy NAME [--confirm NAME] [--without-backup] [--purge]",
  "herd addons backup NAME | backups NAME [delete BACKUP_ID] | restore NAME BACKUP_ID",
  "herd addons final-backups [delete ID]     (destroyed add-ons' final backups; create --from-backup ID restores one)",
  'herd addons schedule NAME "CRON" [--keep N] | schedule NAME --off',
  "herd addons rotate NAME [--app APP]",
  "herd addons plans",
  "herd addons brokers [list] | brokers add NAME URL [--user U --password P] | brokers refresh NAME | brokers remove NAME\n" +
    "                    [--scope tenant]   (a tenant's own broker: its owner's; default: the platform's)",
].join("\n");

const path = (name: string) => `/addons/${encodeURIComponent(name)}`;

export const addonsCommand: CommandSpec = {
  name: "addons",
  usage: USAGE,
  summary:
    "Managed databases: a PostgreSQL or Redis server herd runs as a pet app of your tenant (its logs: herd logs --app NAME).\n" +
    "attach gives an app its URL as the secret DATABASE_URL (postgres: a database of its own) or REDIS_URL (redis: a user of its own), or --as VAR; a new release rolls out.\n" +
    "destroy deletes the server and its data: it asks for the name (or --confirm NAME) and keeps a final backup\n" +
    "(final-backups lists them; create --from-backup ID restores one into a new add-on).\n" +
    "metrics shows the server's figures (connections, size or memory, ops), pushed into herd's metrics every 15 s.\n" +
    "Backups: postgres dumps the bound databases (pg_dump), redis takes an RDB snapshot; schedule takes them on a cron (UTC).\n" +
    "rotate gives bound apps new credentials (a new release each) and revokes the old ones once it has rolled out.\n" +
    "plan moves an add-on to another plan (a broker's: when its catalog allows; --param gives it new parameters).\n" +
    "brokers: external Open Service Brokers (platform admin, or --scope tenant: the tenant owner's); their services are more kinds, listed by plans.",
  flags: [
    ["--app APP", "the app to bind"],
    [
      "--plan PLAN",
      "create: small (default), medium or large; a broker's service: its plans (herd addons plans)",
    ],
    ["--name NAME", "create: the add-on's name (default APP-KIND: notes-postgres, notes-redis)"],
    ["--as VAR", "the env variable that carries the URL (default DATABASE_URL; redis: REDIS_URL)"],
    ["--confirm NAME", "destroy: the add-on's name, to confirm"],
    [
      "--without-backup",
      "destroy: take no final backup (a server that does not run cannot be backed up); detach: drop the app's database without one",
    ],
    ["--purge", "destroy a broker's add-on without asking the broker (one gone for good)"],
    ["--backup-schedule CRON", 'create: back up on this cron, UTC (e.g. "0 3 * * *")'],
    ["--keep N", "create, schedule: backups kept (default 7)"],
    ["--off", "schedule: stop the scheduled backups"],
    [
      "--param K=V",
      "create, plan, attach: a broker's parameter (V read as JSON when it parses, else a string); repeatable",
    ],
    ["--params FILE", "create, plan, attach: a broker's parameters as a JSON object in FILE (--param wins)"],
    ["--from-backup ID", "create: restore a destroyed add-on's final backup (herd addons final-backups)"],
    ["--scope tenant", "brokers: the tenant's own brokers (only it sees them) instead of the platform's"],
    ["--user U", "brokers add: the broker's basic-auth user"],
    ["--password P", "brokers add: its password (kept in herd's secret store)"],
  ],
  options: {
    app: { type: "string" },
    plan: { type: "string" },
    name: { type: "string" },
    as: { type: "string" },
    confirm: { type: "string" },
    "without-backup": { type: "boolean" },
    purge: { type: "boolean" },
    "backup-schedule": { type: "string" },
    keep: { type: "string" },
    off: { type: "boolean" },
    user: { type: "string" },
    password: { type: "string" },
    param: { type: "string", multiple: true },
    params: { type: "string" },
    "from-backup": { type: "string" },
    scope: { type: "string" },
  },
  async run(ctx, values, positionals) {
    const [action = "list", arg, extraId, ...extra] = positionals;
    if (action === "brokers") return brokers(ctx, values, positionals.slice(1));
    if (
      // backups NAME delete ID is the one action with a fourth argument; it checks its own.
      (extra.length > 0 && action !== "backups") ||
      (extraId !== undefined && !["restore", "schedule", "plan", "final-backups", "backups"].includes(action))
    )
      throw new UsageError(`unexpected argument: ${extra[0] ?? extraId}`, "addons");
    const client = await ctx.client();
    const app = stringFlag(values, "app");
    const as = stringFlag(values, "as");
    const keepText = stringFlag(values, "keep");
    const keep = keepText === undefined ? undefined : Number(keepText);
    if (keep !== undefined && !Number.isInteger(keep))
      throw new UsageError("--keep needs a whole number of backups", "addons");
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
        if (!arg)
          throw new UsageError(
            "addons create needs a kind: postgres, redis or a broker's (herd addons plans)",
            "addons",
          );
        const parameters = await parametersOf(values);
        const body = {
          kind: arg,
          ...(parameters ? { parameters } : {}),
          ...(app ? { app } : {}),
          ...(stringFlag(values, "plan") ? { plan: stringFlag(values, "plan") } : {}),
          ...(stringFlag(values, "name") ? { name: stringFlag(values, "name") } : {}),
          ...(as ? { var: as } : {}),
          ...(stringFlag(values, "from-backup") ? { fromBackup: stringFlag(values, "from-backup") } : {}),
          ...(stringFlag(values, "backup-schedule")
            ? {
                backup: {
                  schedule: stringFlag(values, "backup-schedule"),
                  ...(keep !== undefined ? { keep } : {}),
                },
              }
            : {}),
        };
        const reply = await client.post<{
          addon: AddonView;
          binding?: { app: string; var: string; vars?: string[] };
        }>("/addons", body);
        const b = reply.addon.broker;
        return out(
          reply,
          `Created ${reply.addon.kind} add-on ${reply.addon.name} (plan ${reply.addon.plan}${b ? `, broker ${b.name}: ${b.state}` : ""}).` +
            (reply.binding
              ? ` ${reply.binding.app} gets ${(reply.binding.vars ?? [reply.binding.var]).join(", ")}; its new release rolls out.`
              : ""),
        );
      }
      case "info": {
        const a = await client.get<AddonView>(path(need(arg, "info")));
        return out(
          a,
          [
            `${a.name}: ${a.kind}, plan ${a.plan}, ${a.state ?? "?"}${a.node ? ` on ${a.node}` : ""}${a.endpoint ? ` at ${a.endpoint}` : ""}` +
              (a.broker
                ? ` (broker ${a.broker.name}${a.broker.message ? `: ${a.broker.message}` : ""}${a.broker.dashboardUrl ? `; dashboard ${a.broker.dashboardUrl}` : ""})`
                : ""),
            a.bindings.length === 0
              ? "No apps bound."
              : a.broker
                ? renderTable(
                    ["APP", "VARS"],
                    a.bindings.map((b) => [b.app, (b.vars ?? []).join(", ")]),
                  )
                : a.kind === "redis"
                  ? renderTable(
                      ["APP", "VAR", "USER"],
                      a.bindings.map((b) => [b.app, b.var, b.user]),
                    )
                  : renderTable(
                      ["APP", "VAR", "DATABASE", "USER"],
                      a.bindings.map((b) => [b.app, b.var, b.database, b.user]),
                    ),
            ...(a.detached ?? []).map(
              (d) =>
                `Detached from ${d.app}: ${a.kind === "redis" ? `its user ${d.user} is deleted (the keys stay)` : `its database ${d.database} is dropped${d.withoutBackup ? " without a backup" : ""}`} once ${d.afterDeploy ? `deploy ${d.afterDeploy}` : "its release"} has rolled out.`,
            ),
          ].join("\n"),
        );
      }
      case "attach": {
        if (!app) throw new UsageError("addons attach needs --app APP", "addons");
        const name = need(arg, "attach");
        const parameters = await parametersOf(values);
        const reply = await client.post<{ binding: { var: string; vars?: string[] } }>(
          `${path(name)}/attach`,
          { app, ...(as ? { var: as } : {}), ...(parameters ? { parameters } : {}) },
        );
        return out(
          reply,
          `Bound ${name} to ${app} as ${(reply.binding.vars ?? [reply.binding.var]).join(", ")}; its new release rolls out.`,
        );
      }
      case "detach": {
        if (!app) throw new UsageError("addons detach needs --app APP", "addons");
        const name = need(arg, "detach");
        const withoutBackup = values["without-backup"] === true;
        const reply = await client.post<{ deploy?: string; backupFirst?: boolean }>(`${path(name)}/detach`, {
          app,
          ...(withoutBackup ? { withoutBackup } : {}),
        });
        return out(reply, detachedLine(name, app, reply.deploy, reply.backupFirst === true));
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
        const reply = await client.delete<{
          finalBackup?: BackupView & { digest: string };
          pending?: boolean;
        }>(path(name), {
          confirm: name,
          ...(values["without-backup"] === true ? { withoutBackup: "true" } : {}),
          ...(values.purge === true ? { purge: "true" } : {}),
        });
        const f = reply.finalBackup;
        if (reply.pending)
          return out(
            reply,
            `Add-on ${name} is being deprovisioned by its broker; it goes once the broker is done.`,
          );
        return out(
          reply,
          `Destroyed add-on ${name}.` +
            (f
              ? ` Its final backup ${f.id} (${whatOf(f)}, ${f.size} bytes) is kept as artifact ${f.digest}.`
              : " No final backup was taken."),
        );
      }
      case "metrics": {
        const name = need(arg, "metrics");
        const a = await client.get<AddonView>(path(name));
        const figures = await addonFigures(client, a);
        return out(
          { addon: name, kind: a.kind, figures },
          figures.length === 0
            ? `herd has no figures of ${a.kind} add-on ${name}.`
            : renderTable(
                ["FIGURE", "VALUE"],
                figures.map((f) => [f.label, f.value]),
              ),
        );
      }
      case "final-backups": {
        if (arg === "delete") {
          if (!extraId) throw new UsageError("addons final-backups delete needs the backup's id", "addons");
          const reply = await client.delete(`/addon-backups/${encodeURIComponent(extraId)}`);
          return out(reply, `Final backup ${extraId} deleted.`);
        }
        if (arg !== undefined) throw new UsageError(`unexpected argument: ${arg}`, "addons");
        const reply = await client.get<Items<FinalBackupView>>("/addon-backups");
        return out(
          reply,
          reply.items.length === 0
            ? "No final backups: destroyed add-ons' last backups show here."
            : renderTable(
                ["ID", "ADDON", "KIND", "DESTROYED", "SIZE", "CONTENT"],
                reply.items.map((b) => [b.id, b.addon, b.kind, b.destroyedAt, String(b.size), whatOf(b)]),
              ),
        );
      }
      case "backup": {
        const name = need(arg, "backup");
        const b = await client.post<BackupView>(`${path(name)}/backups`);
        return out(b, `Backup ${b.id} of ${name}: ${whatOf(b)}, ${b.size} bytes.`);
      }
      case "backups": {
        const name = need(arg, "backups");
        if (extraId === "delete") {
          const [id, ...more] = extra;
          if (!id || more.length > 0)
            throw new UsageError("addons backups NAME delete needs one backup id", "addons");
          const reply = await client.delete(`${path(name)}/backups/${encodeURIComponent(id)}`);
          return out(reply, `Backup ${id} of ${name} deleted.`);
        }
        if (extraId !== undefined || extra.length > 0)
          throw new UsageError(`unexpected argument: ${extraId ?? extra[0]}`, "addons");
        const reply = await client.get<Items<BackupView>>(`${path(name)}/backups`);
        return out(
          reply,
          reply.items.length === 0
            ? `${name} has no backups (herd addons backup ${name}).`
            : renderTable(
                ["ID", "CREATED", "WHY", "SIZE", "CONTENT"],
                reply.items.map((b) => [b.id, b.createdAt, b.reason ?? "manual", String(b.size), whatOf(b)]),
              ),
        );
      }
      case "restore": {
        const name = need(arg, "restore");
        const id = extraId;
        if (!id)
          throw new UsageError("addons restore needs the backup's id (herd addons backups NAME)", "addons");
        const b = await client.post<BackupView>(`${path(name)}/backups/${encodeURIComponent(id)}/restore`);
        return out(b, `Restored ${name} from backup ${b.id} (${whatOf(b)}).`);
      }
      case "schedule": {
        const name = need(arg, "schedule");
        if (values.off === true) {
          const reply = await client.delete(`${path(name)}/backup-policy`);
          return out(reply, `Scheduled backups of ${name} stopped; the ones taken stay.`);
        }
        if (!extraId) throw new UsageError('addons schedule needs a cron: "0 3 * * *" (or --off)', "addons");
        const reply = await client.put<{ backupPolicy: { schedule: string; keep: number } }>(
          `${path(name)}/backup-policy`,
          { schedule: extraId, ...(keep !== undefined ? { keep } : {}) },
        );
        return out(
          reply,
          `${name} is backed up on "${reply.backupPolicy.schedule}" (UTC); the last ${reply.backupPolicy.keep} are kept.`,
        );
      }
      case "rotate": {
        const name = need(arg, "rotate");
        const reply = await client.post<{ rotated: { app: string; deploy?: string }[] }>(
          `${path(name)}/rotate`,
          app ? { app } : {},
        );
        return out(
          reply,
          reply.rotated.length === 0
            ? `${name} has no bound apps.`
            : reply.rotated
                .map(
                  (r) =>
                    `${r.app}: new credentials${r.deploy ? `, deploy ${r.deploy} rolls them out` : ""}; the old ones are revoked after.`,
                )
                .join("\n"),
        );
      }
      case "plan": {
        const name = need(arg, "plan");
        const parameters = await parametersOf(values);
        if (!extraId && !parameters)
          throw new UsageError("addons plan needs the plan to move to (herd addons plans)", "addons");
        const reply = await client.patch<{ addon: AddonView; deploy?: string; pending?: boolean }>(
          path(name),
          {
            ...(extraId ? { plan: extraId } : {}),
            ...(parameters ? { parameters } : {}),
          },
        );
        const a = reply.addon;
        return out(
          reply,
          reply.pending
            ? `${name} is moving to plan ${extraId ?? a.plan} at broker ${a.broker?.name}; herd follows it (herd addons info ${name}).`
            : reply.deploy
              ? `${name} is on plan ${a.plan}: deploy ${reply.deploy} restarts its server in place, its data kept.`
              : `${name} is on plan ${a.plan}${parameters ? ", with the new parameters" : ""}.`,
        );
      }
      case "plans": {
        const reply =
          await client.get<Items<{ kind: string; plan: string; description: string; source: string }>>(
            "/addon-plans",
          );
        return out(
          reply,
          renderTable(
            ["KIND", "PLAN", "FROM", "DESCRIPTION"],
            reply.items.map((p) => [p.kind, p.plan, p.source, p.description]),
          ),
        );
      }
      default:
        throw new UsageError(`unknown addons action: ${action}`, "addons");
    }
  },
};

/**
 * `--param K=V` (V as JSON when it parses: numbers, booleans, objects; else
 * the string) over `--params FILE` (a JSON object). Undefined: none given.
 */
export async function parametersOf(values: FlagValues): Promise<Record<string, unknown> | undefined> {
  const file = stringFlag(values, "params");
  const pairs = values.param;
  const list = Array.isArray(pairs) ? pairs.filter((p): p is string => typeof p === "string") : [];
  if (file === undefined && list.length === 0) return undefined;
  let out: Record<string, unknown> = {};
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      throw new UsageError(
        `cannot read --params ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
        "addons",
      );
    }
    try {
      out = parseJsonObject(text);
    } catch (err) {
      throw new UsageError(`--params ${file}: ${(err as Error).message}`, "addons");
    }
  }
  for (const p of list) {
    const i = p.indexOf("=");
    if (i < 1) throw new UsageError(`--param ${p}: give KEY=VALUE`, "addons");
    const raw = p.slice(i + 1);
    let v: unknown = raw;
    try {
      v = JSON.parse(raw);
    } catch {
      // not JSON: the string as given
    }
    out[p.slice(0, i)] = v;
  }
  return out;
}

/** `herd addons brokers …`: external Open Service Brokers (a platform admin's, or with --scope tenant the tenant's own). */
async function brokers(ctx: CliContext, values: FlagValues, args: string[]): Promise<number> {
  const [action = "list", name, url, ...extra] = args;
  if (extra.length > 0 || (url !== undefined && action !== "add"))
    throw new UsageError(`unexpected argument: ${extra[0] ?? url}`, "addons");
  const scope = stringFlag(values, "scope") ?? "platform";
  if (scope !== "platform" && scope !== "tenant")
    throw new UsageError(`--scope is tenant or platform, not ${scope}`, "addons");
  const base = scope === "tenant" ? "/tenant-brokers" : "/addon-brokers";
  const client = await ctx.client();
  const out = (reply: unknown, text: string) => {
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else println(ctx.stdout, text);
    return 0;
  };
  const kinds = (b: BrokerView) =>
    b.services.map((s) => `${s.name} (${s.plans.map((p) => p.name).join(", ")})`).join("; ");
  const needName = () => {
    if (!name) throw new UsageError(`addons brokers ${action} needs the broker's name`, "addons");
    return name;
  };
  switch (action) {
    case "list": {
      const reply = await client.get<Items<BrokerView>>(base);
      if (reply.items.length === 0 && !ctx.flags.json)
        return out(reply, "No brokers. Register one with `herd addons brokers add NAME URL`.");
      return out(
        reply,
        renderTable(
          ["NAME", "URL", "USER", "TENANT", "SERVICES"],
          reply.items.map((b) => [b.name, b.url, b.user ?? "-", b.tenant ?? "(all)", kinds(b)]),
        ),
      );
    }
    case "add": {
      if (!url) throw new UsageError("addons brokers add needs NAME and URL", "addons");
      const user = stringFlag(values, "user");
      const password = stringFlag(values, "password");
      const b = await client.post<BrokerView>(base, {
        name: needName(),
        url,
        ...(user !== undefined ? { user } : {}),
        ...(password !== undefined ? { password } : {}),
      });
      return out(
        b,
        `Broker ${b.name} registered${b.tenant ? ` for tenant ${b.tenant} only` : ""}: ${kinds(b)}. herd addons plans lists them.`,
      );
    }
    case "refresh": {
      const b = await client.post<BrokerView>(`${base}/${encodeURIComponent(needName())}/refresh`);
      return out(b, `Broker ${b.name}'s catalog: ${kinds(b)}.`);
    }
    case "remove": {
      const reply = await client.delete(`${base}/${encodeURIComponent(needName())}`);
      return out(reply, `Broker ${name} removed.`);
    }
    default:
      throw new UsageError(`unknown addons brokers action: ${action}`, "addons");
  }
}

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

/** The add-on's key figures, each a PromQL instant query as the tenant (src/addons/metrics.ts). */
async function addonFigures(client: ApiClient, a: AddonView): Promise<{ label: string; value: string }[]> {
  const out: { label: string; value: string }[] = [];
  for (const f of ADDON_FIGURES[a.kind] ?? []) {
    const reply = await client.get<{ data: { result: { value: [number, string] }[] } }>(
      "/prom/api/v1/query",
      { query: f.query.replaceAll("NAME", a.name) },
    );
    const v = reply.data.result[0]?.value[1];
    out.push({ label: f.label, value: v === undefined ? "-" : figureText(Number(v), f.unit) });
  }
  return out;
}

function figureText(v: number, unit: "bytes" | undefined): string {
  if (unit !== "bytes") return Number.isInteger(v) ? String(v) : v.toFixed(2);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  for (; v >= 1024 && i < units.length - 1; i++) v /= 1024;
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
