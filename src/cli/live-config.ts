/**
 * Live configuration from the command line: `herd routes` (route objects next
 * to herd.yaml's routes) and `herd gateways` (which config version each
 * gateway serves).
 *
 *   herd routes [APP]                          GET    /apps/:app/routes
 *   herd routes set APP NAME -f FILE | flags   PUT    /apps/:app/routes/:name
 *   herd routes delete APP NAME                DELETE /apps/:app/routes/:name
 *   herd gateways                              GET    /gateways
 */

import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import type { GatewayStatus, RouteBody } from "../model/live-config.ts";
import type { Route } from "../model/manifest.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { parseCount, UsageError } from "./args.ts";
import {
  type CliContext,
  type CommandSpec,
  type FlagValues,
  printJson,
  println,
  stringFlag,
} from "./context.ts";
import { formatAge, renderTable } from "./format.ts";
import type { Items } from "./types.ts";

/** One line of GET /apps/:app/routes. */
interface ListedRoute {
  source: "herd.yaml" | "api";
  name?: string;
  service: string;
  route: Route;
  revision?: number;
}

const routePath = (app: string, name?: string) =>
  `/apps/${encodeURIComponent(app)}/routes${name === undefined ? "" : `/${encodeURIComponent(name)}`}`;

/** `herd routes`. */
export const routesCommand: CommandSpec = {
  name: "routes",
  usage:
    "herd routes [APP]\nherd routes set APP NAME (-f FILE | --service S --host H [flags])\nherd routes delete APP NAME",
  summary:
    "List an app's routes (herd.yaml's and those set through the API), or set or delete a route live:\n" +
    "no deploy, no gateway restart. FILE is YAML or JSON: herd.yaml's route fields plus `service`;\n" +
    "flags override its fields.",
  flags: [
    ["-f, --file FILE", "the route as YAML or JSON (- reads stdin)"],
    ["--service NAME", "the app's service the route sends to"],
    ["--host HOST", "host, exact or *.suffix"],
    ["--path PATH", "path prefix (default /)"],
    ["--match exact|prefix", "how the path matches"],
    ["--methods LIST", "only these methods, e.g. GET,HEAD"],
    ["--rewrite PATH", "replaces the matched prefix"],
    ["--priority N", "higher wins when several routes match"],
    ["--rate N", "rate limit: requests per second"],
    ["--burst N", "rate limit: at once (default: one second's worth)"],
    ["--per route|ip", "rate limit: one bucket for the route, or one per client address"],
    ["--revision N", "only if the route is at this revision (0: only if it does not exist yet); else 409"],
    ["--app NAME", `for the list: ${APP_FLAG_HELP[1]}`],
  ],
  options: {
    file: { type: "string", short: "f" },
    service: { type: "string" },
    host: { type: "string" },
    path: { type: "string" },
    match: { type: "string" },
    methods: { type: "string" },
    rewrite: { type: "string" },
    priority: { type: "string" },
    rate: { type: "string" },
    burst: { type: "string" },
    per: { type: "string" },
    revision: { type: "string" },
    app: { type: "string" },
  },
  async run(ctx, values, positionals) {
    const [action, ...rest] = positionals;
    if (action === "set" || action === "delete") {
      const [app, name, ...extra] = rest;
      if (!app || !name)
        throw new UsageError(`routes ${action} needs the app and the route's name`, "routes");
      if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "routes");
      const revision = optionalCount(values, "revision", 0);
      return action === "set"
        ? setRoute(ctx, app, name, values, revision)
        : deleteRoute(ctx, app, name, revision);
    }
    if (rest.length > 0) throw new UsageError(`unexpected argument: ${rest[0]}`, "routes");
    const app = action ?? (await resolveApp(ctx, stringFlag(values, "app"), "routes"));
    const client = await ctx.client();
    const reply = await client.get<Items<ListedRoute>>(routePath(app));
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else if (reply.items.length === 0) println(ctx.stdout, `${app} has no routes.`);
    else println(ctx.stdout, routesTable(reply.items));
    return 0;
  },
};

async function setRoute(
  ctx: CliContext,
  app: string,
  name: string,
  values: FlagValues,
  revision: number | undefined,
): Promise<number> {
  const body: Record<string, unknown> = {};
  const file = stringFlag(values, "file");
  if (file !== undefined) {
    const text = file === "-" ? await readStdin() : await readFile(resolve(ctx.cwd, file), "utf8");
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (err) {
      throw new UsageError(
        `${file}: not valid YAML or JSON: ${(err as Error).message.split("\n")[0]}`,
        "routes",
      );
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new UsageError(`${file}: expected one route (a mapping with host, service, …)`, "routes");
    }
    Object.assign(body, parsed);
  }
  for (const field of ["service", "host", "path", "match", "rewrite"] as const) {
    const v = stringFlag(values, field);
    if (v !== undefined) body[field] = v;
  }
  const methods = stringFlag(values, "methods");
  if (methods !== undefined) body.methods = methods.split(",").map((m) => m.trim().toUpperCase());
  const priority = stringFlag(values, "priority");
  if (priority !== undefined) {
    if (!/^-?\d+$/.test(priority))
      throw new UsageError(`--priority ${priority}: expected a whole number`, "routes");
    body.priority = Number(priority);
  }
  const rate = stringFlag(values, "rate");
  const burst = optionalCount(values, "burst", 1);
  const per = stringFlag(values, "per");
  if (rate !== undefined || burst !== undefined || per !== undefined) {
    const limit = { ...(body.rateLimit as object | undefined) } as Record<string, unknown>;
    if (rate !== undefined) {
      if (!(Number(rate) > 0)) throw new UsageError(`--rate ${rate}: expected a number above 0`, "routes");
      limit.rate = Number(rate);
    }
    if (burst !== undefined) limit.burst = burst;
    if (per !== undefined) limit.per = per;
    body.rateLimit = limit;
  }
  if (Object.keys(body).length === 0) {
    throw new UsageError("say what the route is: -f FILE, or --service and --host", "routes");
  }
  const client = await ctx.client();
  const saved = await client.put<{ spec: RouteBody; revision: number }>(routePath(app, name), body, {
    revision,
  });
  if (ctx.flags.json) printJson(ctx.stdout, saved);
  else
    println(
      ctx.stdout,
      `Route ${name} of ${app}: ${saved.spec.host}${saved.spec.path ?? "/"} → ${saved.spec.service} (revision ${saved.revision}).\n` +
        "Gateways apply it in a moment; `herd gateways` shows the version each one serves.",
    );
  return 0;
}

async function deleteRoute(
  ctx: CliContext,
  app: string,
  name: string,
  revision: number | undefined,
): Promise<number> {
  const client = await ctx.client();
  const reply = await client.delete<unknown>(routePath(app, name), { revision });
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else println(ctx.stdout, `Route ${name} of ${app} deleted.`);
  return 0;
}

function optionalCount(values: FlagValues, flag: string, min: number): number | undefined {
  const v = stringFlag(values, flag);
  return v === undefined ? undefined : parseCount(v, flag, "routes", min);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** `herd routes`: one row per route, herd.yaml's first. */
export function routesTable(items: readonly ListedRoute[]): string {
  const rows = items.map((i) => [
    i.name ?? "-",
    i.source,
    i.service,
    i.route.host,
    `${i.route.path}${i.route.match === "exact" ? " (exact)" : ""}`,
    [
      i.route.methods?.join(",") ?? "",
      i.route.rateLimit
        ? `rate ${i.route.rateLimit.rate}/s${i.route.rateLimit.per === "ip" ? " per ip" : ""}`
        : "",
      i.route.rewrite ? `rewrite ${i.route.rewrite}` : "",
      i.route.priority ? `priority ${i.route.priority}` : "",
      i.route.split ? "split" : "",
      i.route.mirror ? "mirror" : "",
      i.route.fallback ? "fallback" : "",
    ]
      .filter(Boolean)
      .join(", ") || "-",
    i.revision === undefined ? "-" : String(i.revision),
  ]);
  return renderTable(["name", "source", "service", "host", "path", "policies", "revision"], rows);
}

/** `herd gateways`. */
export const gatewaysCommand: CommandSpec = {
  name: "gateways",
  usage: "herd gateways",
  summary:
    "List the gateways: the config version each serves, the control plane's, whether they are in sync,\n" +
    "the last configuration one refused and why, and when each last reported.",
  options: {},
  async run(ctx, _values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "gateways");
    const client = await ctx.client();
    const reply = await client.get<{ configVersion: number; items: GatewayStatus[] }>("/gateways");
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else if (reply.items.length === 0)
      println(
        ctx.stdout,
        `No gateway has reported (config version ${reply.configVersion}). Start one with \`herd up\` or \`herd gateway\`.`,
      );
    else println(ctx.stdout, gatewaysTable(reply.items, ctx.now()));
    return 0;
  },
};

/** `herd gateways`: one row per gateway; ERROR only when one refused a configuration. */
export function gatewaysTable(items: readonly GatewayStatus[], now: number): string {
  const withError = items.some((g) => g.error !== undefined);
  const rows = items.map((g) => {
    const sync = g.silent
      ? "silent"
      : g.inSync
        ? "yes"
        : g.rejectedVersion !== undefined
          ? `refused v${g.rejectedVersion}`
          : "behind";
    const row = [
      g.id,
      g.url ?? "-",
      String(g.version),
      String(g.configVersion),
      sync,
      String(g.routes),
      g.workers === undefined ? "-" : String(g.workers),
      formatAge(g.lastSeen, now),
    ];
    if (withError) row.push(g.error ?? "");
    return row;
  });
  const headers = ["id", "url", "version", "config", "in sync", "routes", "workers", "last seen"];
  return renderTable(withError ? [...headers, "error"] : headers, rows);
}
