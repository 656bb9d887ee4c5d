/**
 * The subcommands that talk to the API and print tables, and the registry of
 * every API subcommand (these, deploy, rollback, logs, the identity and tenant
 * commands; the platform roles are in platform-commands.ts).
 */

import { readFile } from "node:fs/promises";
import type { App, Event, Instance, Release, Service } from "../model/objects.ts";
import { addonsCommand } from "./addons.ts";
import { alertsCommand } from "./alerts.ts";
import { ApiError } from "./api-client.ts";
import { appConfigCommand } from "./app-config.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { parseCount, parseScaleArgs, UsageError } from "./args.ts";
import { auditCommand } from "./audit.ts";
import { autoscaleCommand } from "./autoscale.ts";
import { capacityCommand } from "./capacity.ts";
import { catalogCommand } from "./catalog.ts";
import { instancesCommand, nodesCommand, quotaCommand } from "./cluster.ts";
import { NO_SERVER_MESSAGE } from "./config.ts";
import { consumersCommand } from "./consumers.ts";
import {
  type CliContext,
  type CommandSpec,
  confirmDestroy,
  printJson,
  println,
  stringFlag,
} from "./context.ts";
import { contextCommand } from "./contexts.ts";
import { deployCommand, rollbackCommand } from "./deploy.ts";
import { deploysCommand } from "./deploys.ts";
import { pipelinesCommand, previewsCommand, promoteCommand } from "./environments.ts";
import { exportCommand } from "./export.ts";
import { appsTable, eventsTable, instancesTable, releasesTable, servicesTable } from "./format.ts";
import { gitCommand } from "./git.ts";
import { jobsCommand } from "./jobs.ts";
import { gatewaysCommand, routesCommand } from "./live-config.ts";
import { loginCommand, logoutCommand, whoamiCommand } from "./login.ts";
import { logsCommand } from "./logs.ts";
import { metricsCommand } from "./metrics.ts";
import { remediateCommand } from "./remediate.ts";
import { restartCommand } from "./restart.ts";
import { rolloutCommand } from "./rollout.ts";
import { runCommand } from "./run.ts";
import { secretsCommand } from "./secrets.ts";
import { setCommand } from "./set.ts";
import { backupCommand, migrateCommand, restoreCommand } from "./store-commands.ts";
import { membersCommand, serviceAccountsCommand, tenantsCommand } from "./tenants.ts";
import { tokensCommand } from "./tokens.ts";
import { mapCommand, topCommand, traceCommand, tracesCommand } from "./traces.ts";
import type { Items } from "./types.ts";
import { usersCommand } from "./users.ts";

const APP_FLAG = APP_FLAG_HELP;
const appPath = (app: string) => `/apps/${encodeURIComponent(app)}`;

/** `herd apps`, `herd apps create NAME`, `herd apps destroy NAME [--confirm NAME]`. */
export const appsCommand: CommandSpec = {
  name: "apps",
  usage: "herd apps\nherd apps create NAME\nherd apps destroy NAME [--confirm NAME]",
  summary:
    "List apps, create an empty one, or destroy one (its instances stop, then it is gone).\n" +
    "destroy asks you to type the name on a terminal; elsewhere it needs --confirm NAME.",
  flags: [["--confirm NAME", "destroy without asking (must repeat the app's name)"]],
  options: { confirm: { type: "string" } },
  async run(ctx, values, positionals) {
    const [action, name, ...extra] = positionals;
    if (action === undefined) return listApps(ctx);
    if (action !== "create" && action !== "destroy")
      throw new UsageError(`unknown apps action: ${action}`, "apps");
    if (!name) throw new UsageError(`apps ${action} needs the app's name`, "apps");
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "apps");
    const client = await ctx.client();
    if (action === "create") {
      const app = await client.post<App>("/apps", { name });
      if (ctx.flags.json) printJson(ctx.stdout, app);
      else
        println(ctx.stdout, `Created app ${app.name}. Deploy to it with \`herd deploy --app ${app.name}\`.`);
      return 0;
    }
    await confirmDestroy(
      ctx,
      {
        kind: "app",
        name,
        verb: "destroy",
        command: "apps",
        warning: `This destroys the app ${name} and stops all its instances.`,
      },
      stringFlag(values, "confirm"),
    );
    const reply = await client.delete<unknown>(appPath(name));
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else println(ctx.stdout, `Destroying ${name}: its instances stop, then the app is gone.`);
    return 0;
  },
};

async function listApps(ctx: CliContext): Promise<number> {
  const client = await ctx.client();
  const reply = await client.get<Items<App>>("/apps");
  if (ctx.flags.json) {
    printJson(ctx.stdout, reply);
    return 0;
  }
  if (reply.items.length === 0) {
    println(ctx.stdout, "No apps yet. Create one with `herd deploy DIR`.");
    return 0;
  }
  const detailed = await Promise.all(
    reply.items.map(async (app) => {
      try {
        const d = await client.get<{ app: App; services: Service[] }>(appPath(app.name));
        return { app, services: d.services };
      } catch (err) {
        // Gone in between (e.g. being destroyed): list it without services.
        if (err instanceof ApiError && err.status === 404) return { app };
        throw err;
      }
    }),
  );
  println(ctx.stdout, appsTable(detailed, ctx.now()));
  return 0;
}

/** `herd ps [--app NAME]`. */
export const psCommand: CommandSpec = {
  name: "ps",
  usage: "herd ps [--app NAME]",
  summary: "List an app's instances: state, node, port, restarts, age, and why one is not running.",
  flags: [APP_FLAG],
  options: { app: { type: "string" } },
  async run(ctx, values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "ps");
    const app = await resolveApp(ctx, stringFlag(values, "app"), "ps");
    const client = await ctx.client();
    const reply = await client.get<Items<Instance>>(`${appPath(app)}/instances`);
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else if (reply.items.length === 0) println(ctx.stdout, `${app} has no instances.`);
    else println(ctx.stdout, instancesTable(reply.items, ctx.now()));
    return 0;
  },
};

/** A service's instances that cannot be placed on today's nodes, as the scale API answers. */
interface Unplaced {
  service: string;
  unplaced: number;
  of: number;
  message: string;
}

/**
 * `herd scale web=3 [worker=1 …] [--app NAME]`. Like `kubectl scale`, it exits 0 once the
 * new counts are recorded, also when some instances cannot be placed yet: it says how many
 * and why on stderr, and they wait as pending until there is room.
 */
export const scaleCommand: CommandSpec = {
  name: "scale",
  usage: "herd scale SERVICE=COUNT… [--app NAME]",
  summary:
    "Set how many instances of each service run, e.g. `herd scale web=3 worker=1 --app hello`.\n" +
    "Instances that cannot be placed on today's nodes are counted, with the reason; they wait as\n" +
    "pending until there is room. Exits 0 once the counts are recorded (as kubectl scale does).\n" +
    "A service with autoscale: gets a count inside its [min, max] (said on stderr), and the autoscaler\n" +
    "may change it afterwards, as the HPA does after kubectl scale (docs/autoscaling.md).",
  flags: [APP_FLAG],
  options: { app: { type: "string" } },
  async run(ctx, values, positionals) {
    const services = parseScaleArgs(positionals);
    const app = await resolveApp(ctx, stringFlag(values, "app"), "scale");
    const client = await ctx.client();
    const reply = await client.post<Items<Service> & { unplaced?: Unplaced[]; warnings?: string[] }>(
      `${appPath(app)}/scale`,
      { services },
    );
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else println(ctx.stdout, servicesTable(reply.items));
    for (const w of reply.warnings ?? []) ctx.stderr.write(`herd: ${w}.\n`);
    for (const u of reply.unplaced ?? []) {
      ctx.stderr.write(
        `herd: ${u.service}: ${u.message}. They wait as pending until there is room (herd ps shows them).\n`,
      );
    }
    return 0;
  },
};

/** `herd releases [--app NAME]`. */
export const releasesCommand: CommandSpec = {
  name: "releases",
  usage: "herd releases [--app NAME]",
  summary: "List an app's releases, newest first; `*` marks the one that serves.",
  flags: [APP_FLAG],
  options: { app: { type: "string" } },
  async run(ctx, values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "releases");
    const app = await resolveApp(ctx, stringFlag(values, "app"), "releases");
    const client = await ctx.client();
    const [reply, detail] = await Promise.all([
      client.get<Items<Release>>(`${appPath(app)}/releases`),
      client.get<{ app: App }>(appPath(app)),
    ]);
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else if (reply.items.length === 0) println(ctx.stdout, `${app} has no releases yet.`);
    else println(ctx.stdout, releasesTable(reply.items, detail.app.release, ctx.now()));
    return 0;
  },
};

/** `herd events [--app NAME] [--limit N]`. */
export const eventsCommand: CommandSpec = {
  name: "events",
  usage: "herd events [--app NAME] [--limit N]",
  summary: "List recent events (every state change and its reason), newest last; all apps unless --app.",
  flags: [
    ["--app NAME", "only this app's events"],
    ["--limit N", "at most N events (server default 100)"],
  ],
  options: { app: { type: "string" }, limit: { type: "string" } },
  async run(ctx, values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "events");
    const limitFlag = stringFlag(values, "limit");
    const limit = limitFlag === undefined ? undefined : parseCount(limitFlag, "limit", "events", 1);
    const client = await ctx.client();
    const reply = await client.get<Items<Event>>("/events", { app: stringFlag(values, "app"), limit });
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else if (reply.items.length === 0) println(ctx.stdout, "No events.");
    else println(ctx.stdout, eventsTable(reply.items, ctx.now()));
    return 0;
  },
};

/** The version in herd's package.json. */
export async function clientVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

/** `herd version`: the CLI's version and, when a server is configured, the server's. */
export const versionCommand: CommandSpec = {
  name: "version",
  usage: "herd version",
  summary: "Print the version of this CLI and of the server it talks to.",
  options: {},
  async run(ctx, _values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "version");
    const client = await clientVersion();
    let server: string | undefined;
    let serverError: string | undefined;
    try {
      server = (await (await ctx.client()).get<{ version: string }>("/version")).version;
    } catch (err) {
      serverError = (err as Error).message;
    }
    if (ctx.flags.json) {
      printJson(ctx.stdout, { client, server: server ?? null });
    } else {
      println(ctx.stdout, `client: herd ${client}`);
      if (server) println(ctx.stdout, `server: herd ${server}`);
    }
    if (serverError === undefined || serverError === NO_SERVER_MESSAGE) return 0;
    ctx.stderr.write(`herd: ${serverError}\n`);
    return 1;
  },
};

/** The subcommands that work with apps, in help order. */
export const APP_COMMANDS: CommandSpec[] = [
  deployCommand,
  gitCommand,
  appsCommand,
  psCommand,
  scaleCommand,
  restartCommand,
  autoscaleCommand,
  logsCommand,
  releasesCommand,
  deploysCommand,
  rollbackCommand,
  rolloutCommand,
  setCommand,
  pipelinesCommand,
  promoteCommand,
  previewsCommand,
  eventsCommand,
  metricsCommand,
  alertsCommand,
  remediateCommand,
  nodesCommand,
  capacityCommand,
  catalogCommand,
  runCommand,
  jobsCommand,
  consumersCommand,
  secretsCommand,
  addonsCommand,
  appConfigCommand,
  instancesCommand,
  quotaCommand,
  routesCommand,
  gatewaysCommand,
  tracesCommand,
  traceCommand,
  mapCommand,
  topCommand,
  exportCommand,
  migrateCommand,
  backupCommand,
  restoreCommand,
  versionCommand,
];

/** Identities, tenants and the audit trail, in help order. */
export const TEAM_COMMANDS: CommandSpec[] = [
  loginCommand,
  logoutCommand,
  contextCommand,
  whoamiCommand,
  tokensCommand,
  usersCommand,
  tenantsCommand,
  membersCommand,
  serviceAccountsCommand,
  auditCommand,
];

/** Every API subcommand. */
export const COMMANDS: CommandSpec[] = [...APP_COMMANDS, ...TEAM_COMMANDS];
