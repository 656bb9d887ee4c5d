/**
 * Signing in: `herd login` checks a token with GET /whoami and saves it, with
 * its server and a default tenant, as a context of the user-level config and
 * makes it current; `herd logout` removes it; `herd whoami` says who the
 * current token stands for.
 *
 *   token (terminal without echo │ piped stdin │ --token) ─► GET /whoami ─► config.json contexts (0600)
 */

import { readCa } from "../common/api-ca.ts";
import { ApiClient, ApiError } from "./api-client.ts";
import { UsageError } from "./args.ts";
import {
  type ConfigSources,
  caFileFor,
  checkContextName,
  contextNameFor,
  loginServerUrl,
  readUserConfig,
  removeUserConfig,
  sameServer,
  selectContext,
  type UserConfig,
  writeUserConfig,
} from "./config.ts";
import { type CliContext, type CommandSpec, printJson, println } from "./context.ts";
import { formatExpiry, renderTable } from "./format.ts";
import type { WhoAmI } from "./types.ts";

/** The public id inside a token's text (`herd_pat_<id>_<secret>`), if it has one. */
export function tokenId(token: string): string | undefined {
  return /^herd_[a-z]+_([0-9a-f]{8})_/.exec(token)?.[1];
}

/** `you are …` for people: `user alice (platform admin)`. */
const describe = (me: WhoAmI) => `${me.name}${me.admin ? " (platform admin)" : ""}`;

/** `a (owner), b (viewer)`, or all tenants for a platform admin. */
function tenantList(me: WhoAmI): string {
  if (me.admin) return `every tenant (${me.tenants.map((t) => t.tenant).join(", ") || "none yet"})`;
  return me.tenants.map((t) => `${t.tenant} (${t.role})`).join(", ");
}

/** `herd login [--server URL] [--tenant T] [--context NAME]`. */
export const loginCommand: CommandSpec = {
  name: "login",
  usage:
    "herd login [--server URL] [--tenant T] [--context NAME] [--ca FILE]\necho $TOKEN | herd login --server URL [--tenant T]",
  summary:
    "Sign in with a token; later commands use it. Asks for the token (typed without echo, or\n" +
    "piped on stdin), checks it with the server, and saves the server, the token and a default\n" +
    "tenant as a context in ~/.config/herd/config.json ($XDG_CONFIG_HOME/herd/config.json when\n" +
    "set; mode 0600), which becomes the current context. Later commands use it unless\n" +
    "--server/--token/--tenant or HERD_SERVER/HERD_TOKEN/HERD_TENANT say otherwise.\n" +
    "`herd context` lists the contexts and switches between them.",
  flags: [
    ["--server URL", "the server (default: HERD_SERVER, the current context's, or the data dir's)"],
    ["--tenant T", "the tenant commands use when none is named (you must hold a role in it)"],
    ["--token TOKEN", "the token, instead of asking (it then shows in your shell history)"],
    [
      "--context NAME",
      "the context to save it as (default: the current one or another one for this server, else the server's host:port)",
    ],
    ["--ca FILE", "an https server's CA certificate (herd server --tls), or HERD_CA; saved with the login"],
  ],
  options: {},
  async run(ctx, _values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "login");
    const sources = ctxSources(ctx);
    const server = await loginServerUrl(sources);
    if (!server) throw new UsageError("which server? pass --server URL (or set HERD_SERVER)", "login");
    const named = ctx.flags.context ?? (ctx.env.HERD_CONTEXT || undefined);
    if (named !== undefined) checkContextName(named);
    const token = (ctx.flags.token ?? (await ctx.readSecret(`Token for ${server}: `))).trim();
    if (!token) {
      throw new UsageError(
        "no token given: paste it when asked, or pipe it: `echo $TOKEN | herd login --server URL`",
        "login",
      );
    }
    // A damaged config is replaced by this login.
    const config: UserConfig = (await readUserConfig(ctx.loginFile).catch(() => undefined)) ?? {
      contexts: {},
    };
    const name = named ?? contextFor(config, server);
    const previous = config.contexts[name];
    const ca = await caFileFor(sources, server, previous && { name, context: previous });
    const me = await whoIs(server, token, ca);
    if (me.kind !== "user") {
      throw new Error(
        `this token stands for ${me.name}, a machine; herd login takes a user's or service account's token. Nothing was saved.`,
      );
    }
    const tenant = ctx.flags.tenant;
    if (tenant !== undefined && !me.tenants.some((t) => t.tenant === tenant)) {
      throw new Error(
        me.admin
          ? `no tenant ${tenant} (herd tenants lists them). Nothing was saved.`
          : `${me.name} holds no role in tenant ${tenant}${me.tenants.length ? `; its tenants: ${tenantList(me)}` : ""}. Nothing was saved.`,
      );
    }
    config.contexts[name] = {
      server,
      token,
      ...(tenant ? { tenant } : {}),
      ...(ca ? { ca: ca.file } : {}),
      user: me.name,
    };
    config.current = name;
    await writeUserConfig(ctx.loginFile, config);
    if (ctx.flags.json) {
      printJson(ctx.stdout, { server, context: name, ...(tenant ? { tenant } : {}), whoami: me });
    } else {
      println(ctx.stdout, `Logged in to ${server} as ${describe(me)}.`);
      println(
        ctx.stdout,
        me.tenants.length || me.admin
          ? `Tenants: ${tenantList(me)}`
          : `No tenants yet: a tenant's owner adds you with \`herd members add ${me.user} --tenant T --role viewer\`.`,
      );
      if (tenant) println(ctx.stdout, `Default tenant: ${tenant}`);
      println(
        ctx.stdout,
        `Token ${me.token.id} (${me.token.name}) expires: ${formatExpiry(me.token.expiresAt, ctx.now())}`,
      );
      println(ctx.stdout, `Saved as context ${name}, now the current one, in ${ctx.loginFile}.`);
    }
    if (ctx.env.HERD_TOKEN) {
      ctx.stderr.write(
        "herd: note: HERD_TOKEN is set in this shell; it is used instead of this login until you unset it\n",
      );
    }
    return 0;
  },
};

/** Where the server, token, tenant and CA of a command come from: its flags and its world. */
function ctxSources(ctx: CliContext): ConfigSources {
  return {
    server: ctx.flags.server,
    ca: ctx.flags.ca,
    context: ctx.flags.context,
    env: ctx.env,
    cwd: ctx.cwd,
    home: ctx.home,
  };
}

/**
 * The context a login to `server` replaces when none is named: the current
 * one if it is for this server, else another one for it, else a new one named
 * after the server's host and port.
 */
function contextFor(config: UserConfig, server: string): string {
  const { current, contexts } = config;
  if (current !== undefined && sameServer(contexts[current].server, server)) return current;
  const same = Object.keys(contexts).find((n) => sameServer(contexts[n].server, server));
  return same ?? contextNameFor(server);
}

/** GET /whoami with a token that is not saved yet; a refusal says nothing was saved. */
async function whoIs(
  server: string,
  token: string,
  ca: { file: string; source: string } | undefined,
): Promise<WhoAmI> {
  try {
    return await clientFor(server, token, ca).get<WhoAmI>("/whoami");
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      throw new Error(`the server at ${server} refused the token: ${err.message}. Nothing was saved.`);
    }
    throw err;
  }
}

/** A client for a server and token that are not (or no longer) the resolved ones. */
function clientFor(url: string, token: string, ca: { file: string; source: string } | undefined): ApiClient {
  return new ApiClient({ url, token, ...(ca ? { ca: readCa(ca.file, ca.source) } : {}) });
}

/** `herd logout [--revoke]`. */
export const logoutCommand: CommandSpec = {
  name: "logout",
  usage: "herd logout [--revoke] [--context NAME]",
  summary:
    "Sign out: removes the current context (or --context NAME) from the saved ones. The token keeps\n" +
    "working elsewhere until it is revoked; --revoke revokes it on the server first.",
  flags: [["--revoke", "also revoke the token on the server (it stops working everywhere)"]],
  options: { revoke: { type: "boolean" } },
  async run(ctx, values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "logout");
    let config: UserConfig | undefined;
    try {
      config = await readUserConfig(ctx.loginFile);
    } catch (err) {
      // Damaged: nothing in it can be used or revoked, so it just goes.
      await removeUserConfig(ctx.loginFile);
      if (ctx.flags.json)
        printJson(ctx.stdout, { loggedOut: true, server: null, token: null, revoked: false });
      else println(ctx.stdout, `Removed ${ctx.loginFile} (${(err as Error).message.split(";")[0]}).`);
      return 0;
    }
    const selected = selectContext(config, ctx.flags.context ?? (ctx.env.HERD_CONTEXT || undefined));
    if (!config || !selected) {
      if (ctx.flags.json) printJson(ctx.stdout, { loggedOut: false });
      else println(ctx.stdout, "Not logged in: there is no current context (herd context list).");
      return 0;
    }
    const { name, context: saved } = selected;
    const id = tokenId(saved.token);
    let revoked = false;
    if (values.revoke === true) {
      if (!id) throw new Error("the saved token has no id to revoke; nothing was changed");
      try {
        const ca = saved.ca ? { file: saved.ca, source: `context ${name}'s CA` } : undefined;
        await clientFor(saved.server, saved.token, ca).delete(`/tokens/${id}`);
        revoked = true;
      } catch (err) {
        // Already revoked or expired: it no longer works anyway, so signing out goes on.
        if (!(err instanceof ApiError && err.status === 401)) throw err;
      }
    }
    delete config.contexts[name];
    if (config.current === name) delete config.current;
    await writeUserConfig(ctx.loginFile, config);
    if (ctx.flags.json) {
      printJson(ctx.stdout, {
        loggedOut: true,
        context: name,
        server: saved.server,
        token: id ?? null,
        revoked,
      });
      return 0;
    }
    println(ctx.stdout, `Logged out of ${saved.server}: removed the context ${name}.`);
    if (revoked) println(ctx.stdout, `Token ${id} is revoked.`);
    else if (values.revoke === true)
      println(ctx.stdout, `Token ${id} no longer worked (revoked or expired).`);
    else if (id) println(ctx.stdout, `Token ${id} still works until revoked: herd tokens revoke ${id}`);
    const others = Object.keys(config.contexts);
    if (others.length > 0 && config.current === undefined) {
      println(ctx.stdout, `Other contexts: ${others.join(", ")} (herd context use NAME)`);
    }
    return 0;
  },
};

/** `herd whoami`. */
export const whoamiCommand: CommandSpec = {
  name: "whoami",
  usage: "herd whoami",
  summary: "Show who the current token stands for and its roles. Also where the server and token come from.",
  options: {},
  async run(ctx, _values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "whoami");
    const config = await ctx.serverConfig();
    const me = await (await ctx.client()).get<WhoAmI>("/whoami");
    if (ctx.flags.json) {
      printJson(ctx.stdout, me);
      return 0;
    }
    println(ctx.stdout, describe(me));
    if (config.context) println(ctx.stdout, `context: ${config.context}`);
    println(ctx.stdout, `server: ${config.url} (from ${config.source})`);
    println(
      ctx.stdout,
      `token:  ${me.token.id} ${me.token.name}, expires ${formatExpiry(me.token.expiresAt, ctx.now())} (from ${config.tokenSource})`,
    );
    if (config.tenant) println(ctx.stdout, `tenant: ${config.tenant}`);
    if (me.tenants.length > 0) {
      println(ctx.stdout);
      println(
        ctx.stdout,
        renderTable(
          ["tenant", "role"],
          me.tenants.map((t) => [t.tenant, t.role]),
        ),
      );
    } else if (me.kind === "user" && !me.admin) {
      println(ctx.stdout, "No roles in any tenant yet.");
    }
    return 0;
  },
};

/**
 * The tenant a command acts in: --tenant, HERD_TENANT or the login's default;
 * else the only tenant the token has a role in ("default" for a platform admin).
 */
export async function currentTenant(ctx: CliContext, command: string): Promise<string> {
  const config = await ctx.serverConfig();
  if (config.tenant) return config.tenant;
  const me = await (await ctx.client()).get<WhoAmI>("/whoami");
  if (me.admin || me.kind !== "user") return "default";
  if (me.tenants.length === 1) return me.tenants[0].tenant;
  if (me.tenants.length === 0) {
    throw new Error(
      `${me.name} holds no role in any tenant: a tenant's owner adds members (herd members add)`,
    );
  }
  throw new UsageError(`pass --tenant: ${me.name} is in ${tenantList(me)}`, command);
}
