/**
 * `herd context`: the saved contexts of the user-level config (config.ts), as
 * kubectl's `config get-contexts / use-context / current-context /
 * delete-context`. A context is a server, a token for it, and a default
 * tenant; `herd login` and `herd up` save them. Tokens are never printed.
 *
 *   herd context [list] ─► table │ use NAME ─► "current" │ current ─► name │ delete NAME
 */

import { UsageError } from "./args.ts";
import { noSuchContext, readUserConfig, type UserConfig, writeUserConfig } from "./config.ts";
import { type CliContext, type CommandSpec, printJson, println } from "./context.ts";
import { renderTable } from "./format.ts";

/** The config, and an error naming the contexts when `name` is not one of them. */
async function withContext(ctx: CliContext, name: string): Promise<UserConfig> {
  const config = await readUserConfig(ctx.loginFile);
  if (!config?.contexts[name]) throw noSuchContext(name, config);
  return config;
}

/** `herd context [list | use NAME | current | delete NAME]`. */
export const contextCommand: CommandSpec = {
  name: "context",
  usage: "herd context [list]\nherd context use NAME\nherd context current\nherd context delete NAME",
  summary:
    "List the saved contexts (a server, its token and a default tenant) and choose the current one.\n" +
    "`herd login` saves one per server and `herd up` saves `local` for its own server; commands use\n" +
    "the current context unless --context NAME (or HERD_CONTEXT) names another.\n" +
    "They live in ~/.config/herd/config.json ($XDG_CONFIG_HOME/herd/config.json when set).",
  options: {},
  async run(ctx, _values, positionals) {
    const [verb = "list", name, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "context");
    const needsName = verb === "use" || verb === "delete";
    if (needsName && name === undefined)
      throw new UsageError(`say which context: herd context ${verb} NAME`, "context");
    if (!needsName && name !== undefined) throw new UsageError(`unexpected argument: ${name}`, "context");
    switch (verb) {
      case "list":
        return list(ctx);
      case "current": {
        const config = await readUserConfig(ctx.loginFile);
        if (config?.current === undefined) {
          throw new Error(
            "no current context: herd context use NAME chooses one (herd context list), herd login or herd up saves one",
          );
        }
        if (ctx.flags.json) printJson(ctx.stdout, { current: config.current });
        else println(ctx.stdout, config.current);
        return 0;
      }
      case "use": {
        const config = await withContext(ctx, name as string);
        config.current = name;
        await writeUserConfig(ctx.loginFile, config);
        if (ctx.flags.json) printJson(ctx.stdout, { current: name });
        else
          println(ctx.stdout, `Now using the context ${name} (${config.contexts[name as string].server}).`);
        return 0;
      }
      case "delete": {
        const config = await withContext(ctx, name as string);
        const wasCurrent = config.current === name;
        delete config.contexts[name as string];
        if (wasCurrent) delete config.current;
        await writeUserConfig(ctx.loginFile, config);
        if (ctx.flags.json) printJson(ctx.stdout, { deleted: name, current: config.current ?? null });
        else {
          println(ctx.stdout, `Deleted the context ${name}.`);
          const left = Object.keys(config.contexts);
          if (wasCurrent && left.length > 0) {
            println(ctx.stdout, `No context is current now: herd context use NAME (${left.join(", ")}).`);
          }
        }
        return 0;
      }
      default:
        throw new UsageError(`unknown subcommand: context ${verb} (list, use, current, delete)`, "context");
    }
  },
};

async function list(ctx: CliContext): Promise<number> {
  const config = (await readUserConfig(ctx.loginFile)) ?? { contexts: {} };
  const rows = Object.entries(config.contexts).map(([name, c]) => ({
    name,
    current: config.current === name,
    server: c.server,
    user: c.user ?? null,
    tenant: c.tenant ?? null,
    ...(c.ca ? { ca: c.ca } : {}),
    ...(c.dataDir ? { dataDir: c.dataDir } : {}),
  }));
  if (ctx.flags.json) {
    printJson(ctx.stdout, { current: config.current ?? null, items: rows });
    return 0;
  }
  if (rows.length === 0) {
    println(
      ctx.stdout,
      "No contexts saved: `herd up` saves one for its own server, `herd login --server URL` one for any server.",
    );
    return 0;
  }
  println(
    ctx.stdout,
    renderTable(
      ["current", "name", "server", "user", "tenant"],
      rows.map((r) => [r.current ? "*" : "", r.name, r.server, r.user ?? "-", r.tenant ?? "-"]),
    ),
  );
  return 0;
}
