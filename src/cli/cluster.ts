/**
 * Operating the cluster from the CLI: `herd nodes` (list, cordon, uncordon,
 * drain, remove, join-token), `herd instances move`, `herd quota`.
 */

import type { CapacityReport, NodeCapacity } from "../api/capacity.ts";
import type { Instance, Node, Tenant } from "../model/objects.ts";
import { type ApiClient, ApiError } from "./api-client.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { UsageError } from "./args.ts";
import { type CommandSpec, printJson, println, stringFlag } from "./context.ts";
import { nodesTable } from "./format.ts";
import { currentTenant } from "./login.ts";
import type { Items } from "./types.ts";

type NodeRow = Node & { instances?: number; drain?: { done: boolean; message: string } };

const NODE_ACTIONS = ["cordon", "uncordon", "drain"] as const;

/** `herd nodes`, `herd nodes cordon|uncordon|drain|remove NAME`, `herd nodes join-token`. */
export const nodesCommand: CommandSpec = {
  name: "nodes",
  usage:
    "herd nodes\nherd nodes cordon|uncordon|drain NAME\nherd nodes remove NAME\nherd nodes join-token [--ttl 1h] [--uses N]",
  summary:
    "List the machines running agents: state, instances, CPU and memory used (as measured) / free\n" +
    "(allocatable, CPU × overcommit, minus what placed instances asked for) / allocatable (×N: CPU\n" +
    "overcommit ratio), isolation, heartbeat.\n" +
    "herd capacity shows the same figures in full, and per tenant.\n" +
    "cordon: place nothing new there. drain: cordon and move its cattle elsewhere, each replaced\n" +
    "before it stops (a drain that cannot place replacements waits and says why; pets stay until\n" +
    "moved with `herd instances move`). uncordon: take instances again (ends a drain).\n" +
    "remove: forget a machine for good: its record goes and its credential is revoked (it joins\n" +
    "again only with a new join token); a live node must hold nothing (drain it first), a lost\n" +
    "one no pets (its replaced cattle go with it; its agent, if it comes back, stops all it runs).\n" +
    "join-token (platform admins): a token a new machine's agent trades once for its node's own\n" +
    "credential (`herd agent --server URL --join-token T --name NAME`); valid for --ttl, for any\n" +
    "number of machines or --uses of them.",
  flags: [
    ["--ttl DURATION", "join-token: how long it may be used (default 1h)"],
    ["--uses N", "join-token: how many machines may join with it (default: any number until it expires)"],
  ],
  options: { ttl: { type: "string" }, uses: { type: "string" } },
  async run(ctx, values, positionals) {
    const [action, name, ...extra] = positionals;
    const client = await ctx.client();
    if (action === "join-token") {
      if (name !== undefined) throw new UsageError(`unexpected argument: ${name}`, "nodes");
      const uses = stringFlag(values, "uses");
      if (uses !== undefined && !/^[1-9][0-9]{0,8}$/.test(uses))
        throw new UsageError(`--uses must be a whole number of at least 1, got ${uses}`, "nodes");
      const reply = await client.post<{ token: string; id: string; expiresAt?: string; usesLeft?: number }>(
        "/tokens",
        {
          name: "join",
          kind: "join",
          expiresIn: stringFlag(values, "ttl") ?? "1h",
          ...(uses === undefined ? {} : { uses: Number(uses) }),
        },
      );
      if (ctx.flags.json) printJson(ctx.stdout, reply);
      else {
        println(ctx.stdout, reply.token);
        const limit =
          reply.usesLeft === undefined
            ? "any number of machines"
            : `${reply.usesLeft} machine${reply.usesLeft === 1 ? "" : "s"}`;
        ctx.stderr.write(
          `join token ${reply.id}: ${limit} until ${reply.expiresAt}; on the new machine: herd agent --server ${client.url} --join-token <token> --name NAME\n`,
        );
      }
      return 0;
    }
    if (action === undefined) {
      const reply = await client.get<Items<NodeRow>>("/nodes").catch((err: unknown) => {
        // The machines are the platform's; a tenant's members see their totals with herd capacity.
        if (err instanceof ApiError && err.status === 403)
          throw new ApiError(
            403,
            err.code,
            `${err.message}; herd capacity shows the nodes' totals and your tenant's share`,
          );
        throw err;
      });
      const figures = await nodeFigures(client);
      if (ctx.flags.json)
        printJson(ctx.stdout, {
          items: reply.items.map((n) => {
            const f = figures?.get(n.name);
            return f ? { ...n, requested: f.requested, free: f.free, used: f.used, machine: f.machine } : n;
          }),
        });
      else if (reply.items.length === 0)
        println(ctx.stdout, "No nodes. Start an agent with `herd up` or `herd agent`.");
      else {
        println(ctx.stdout, nodesTable(reply.items, ctx.now(), figures));
        for (const n of reply.items) if (n.drain) println(ctx.stdout, `${n.name}: ${n.drain.message}`);
      }
      return 0;
    }
    if (!(NODE_ACTIONS as readonly string[]).includes(action) && action !== "remove")
      throw new UsageError(`unknown nodes action: ${action}`, "nodes");
    if (!name) throw new UsageError(`nodes ${action} needs the node's name`, "nodes");
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "nodes");
    if (action === "remove") {
      const removed = await client.delete<{ removed: string; instances: number; credentialsRevoked: number }>(
        `/nodes/${encodeURIComponent(name)}`,
      );
      if (ctx.flags.json) printJson(ctx.stdout, removed);
      else
        println(
          ctx.stdout,
          `Removed node ${name}${removed.instances > 0 ? ` and ${removed.instances} instance record(s) it held` : ""}; its credential is revoked (an agent that comes back stops what it runs; stop it; to join again it needs a new join token).`,
        );
      return 0;
    }
    const node = await client.post<Node>(`/nodes/${encodeURIComponent(name)}/${action}`);
    if (ctx.flags.json) printJson(ctx.stdout, node);
    else
      println(
        ctx.stdout,
        action === "drain"
          ? `Draining ${name}: its instances are replaced elsewhere, then stopped. Follow with \`herd nodes\`.`
          : `${name} ${action === "cordon" ? "cordoned: nothing new is placed there" : "takes instances again"}.`,
      );
    return 0;
  },
};

/** Each node's capacity figures (GET /capacity), or undefined from a server older than that route. */
async function nodeFigures(client: ApiClient): Promise<Map<string, NodeCapacity> | undefined> {
  try {
    const report = await client.get<CapacityReport>("/capacity");
    return new Map(report.nodes.map((n) => [n.name, n]));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return undefined;
    throw err;
  }
}

/** `herd instances move ID [--to NODE]`. */
export const instancesCommand: CommandSpec = {
  name: "instances",
  usage: "herd instances move ID [--to NODE] [--app NAME]",
  summary:
    "Move an instance off its node. Cattle are replaced elsewhere first, then stopped; a pet\n" +
    "(--to NODE, or wherever it fits) restarts there with an empty data dir: its data stays behind.",
  flags: [["--to NODE", "the node a pet moves to"], APP_FLAG_HELP],
  options: { to: { type: "string" }, app: { type: "string" } },
  async run(ctx, values, positionals) {
    const [action, id, ...extra] = positionals;
    if (action !== "move")
      throw new UsageError(
        action
          ? `unknown instances action: ${action}`
          : "instances needs an action: move (see herd ps for the instances)",
        "instances",
      );
    if (!id) throw new UsageError("instances move needs the instance's id (see herd ps)", "instances");
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "instances");
    const app = await resolveApp(ctx, stringFlag(values, "app"), "instances");
    const to = stringFlag(values, "to");
    const client = await ctx.client();
    const moved = await client.post<Instance>(
      `/apps/${encodeURIComponent(app)}/instances/${encodeURIComponent(id)}/move`,
      to ? { to } : {},
    );
    if (ctx.flags.json) printJson(ctx.stdout, moved);
    else println(ctx.stdout, `Moving ${id} off ${moved.node ?? "its node"}${to ? ` to ${to}` : ""}.`);
    return 0;
  },
};

/** `herd quota`, `herd quota set UNITS|none`. */
export const quotaCommand: CommandSpec = {
  name: "quota",
  usage: "herd quota [--tenant T]\nherd quota set UNITS|none [--tenant T]",
  summary:
    "Show or set the tenant's quota in resource units (1 unit = 0.1 CPU + 256 MiB unless the\n" +
    "server says otherwise). A deploy or scale past it is refused with what is used and asked.\n" +
    "Setting it is for platform admins (also: herd tenants create NAME --quota UNITS).",
  options: {},
  async run(ctx, _values, positionals) {
    const [action, value, ...extra] = positionals;
    const tenant = await currentTenant(ctx, "quota");
    const client = await ctx.client();
    const path = `/tenants/${encodeURIComponent(tenant)}`;
    type Reply = Tenant & { usage: { units: number } };
    let reply: Reply;
    if (action === undefined) reply = await client.get<Reply>(path);
    else if (action === "set") {
      if (value === undefined) throw new UsageError("quota set needs a number of units, or none", "quota");
      if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "quota");
      const units = value === "none" ? null : Number(value);
      if (units !== null && !(units >= 0)) throw new UsageError(`not a number of units: ${value}`, "quota");
      reply = await client.put<Reply>(`${path}/quota`, { units });
    } else throw new UsageError(`unknown quota action: ${action}`, "quota");
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else
      println(
        ctx.stdout,
        `tenant ${tenant}: ${reply.usage.units} units in use, ${reply.quota ? `limit ${reply.quota.units}` : "no limit"}`,
      );
    return 0;
  },
};
