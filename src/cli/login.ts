/**
 * Signing in: `herd login` checks a token with GET /whoami and saves it, with
 * its server and a default tenant, in the user-level config; `herd logout`
 * removes it; `herd whoami` says who the current token stands for.
 *
 *   token (terminal without echo │ piped stdin │ --token) ─► GET /whoami ─► config.json (0600)
 */

import { readCa } from "../common/api-ca.ts";
import { ApiClient, ApiError } from "./api-client.ts";
import { UsageError } from "./args.ts";
import { caFileFor, loginServerUrl, readUserConfig, removeUserConfig, writeUserConfig } from "./config.ts";
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

/** `herd login [--server URL] [--tenant T]`. */
export const loginCommand: CommandSpec = {
  name: "login",
  usage: "herd login [--server URL] [--tenant T]\necho $TOKEN | herd login --server URL [--tenant T]",
  summary:
    "Sign in with a token; later commands use it. Asks for the token (typed without echo, or\n" +
    "piped on stdin), checks it with the server, and saves the server, the token and a default\n" +
    "tenant in ~/.config/herd/config.json\n" +
    "($XDG_CONFIG_HOME/herd/config.json when set; mode 0600). Later commands use them unless\n" +
    "--server/--token/--tenant or HERD_SERVER/HERD_TOKEN/HERD_TENANT say otherwise.",
  flags: [
    ["--server URL", "the server (default: HERD_SERVER, the last login's, or the data dir's)"],
    ["--tenant T", "the tenant commands use when none is named (you must hold a role in it)"],
    ["--token TOKEN", "the token, instead of asking (it then shows in your shell history)"],
    ["HERD_CA=FILE", "an https server's CA certificate (herd server --tls); saved with the login"],
  ],
  options: {},
  async run(ctx, _values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "login");
    const server = await loginServerUrl({
      server: ctx.flags.server,
      env: ctx.env,
      cwd: ctx.cwd,
      home: ctx.home,
    });
    if (!server) throw new UsageError("which server? pass --server URL (or set HERD_SERVER)", "login");
    const token = (ctx.flags.token ?? (await ctx.readSecret(`Token for ${server}: `))).trim();
    if (!token) {
      throw new UsageError(
        "no token given: paste it when asked, or pipe it: `echo $TOKEN | herd login --server URL`",
        "login",
      );
    }
    const sources = { env: ctx.env, cwd: ctx.cwd, home: ctx.home };
    const previous = await readUserConfig(ctx.loginFile).catch(() => undefined);
    const caFile = await caFileFor(sources, server, previous);
    const me = await whoIs(server, token, caFile);
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
    await writeUserConfig(ctx.loginFile, {
      server,
      token,
      ...(tenant ? { tenant } : {}),
      ...(caFile ? { ca: caFile } : {}),
    });
    if (ctx.flags.json) printJson(ctx.stdout, { server, ...(tenant ? { tenant } : {}), whoami: me });
    else {
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
      println(ctx.stdout, `Saved in ${ctx.loginFile}.`);
    }
    if (ctx.env.HERD_TOKEN) {
      ctx.stderr.write(
        "herd: note: HERD_TOKEN is set in this shell; it is used instead of this login until you unset it\n",
      );
    }
    return 0;
  },
};

/** GET /whoami with a token that is not saved yet; a refusal says nothing was saved. */
async function whoIs(server: string, token: string, caFile: string | undefined): Promise<WhoAmI> {
  try {
    return await clientFor(server, token, caFile).get<WhoAmI>("/whoami");
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      throw new Error(`the server at ${server} refused the token: ${err.message}. Nothing was saved.`);
    }
    throw err;
  }
}

/** A client for a server and token that are not (or no longer) the resolved ones. */
function clientFor(url: string, token: string, caFile: string | undefined): ApiClient {
  return new ApiClient({ url, token, ...(caFile ? { ca: readCa(caFile, "HERD_CA") } : {}) });
}

/** `herd logout [--revoke]`. */
export const logoutCommand: CommandSpec = {
  name: "logout",
  usage: "herd logout [--revoke]",
  summary:
    "Sign out: removes the server and token `herd login` saved. The token keeps working\n" +
    "elsewhere until it is revoked; --revoke revokes it on the server first.",
  flags: [["--revoke", "also revoke the token on the server (it stops working everywhere)"]],
  options: { revoke: { type: "boolean" } },
  async run(ctx, values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "logout");
    let saved: Awaited<ReturnType<typeof readUserConfig>>;
    try {
      saved = await readUserConfig(ctx.loginFile);
    } catch (err) {
      // Damaged: nothing in it can be used or revoked, so it just goes.
      await removeUserConfig(ctx.loginFile);
      if (ctx.flags.json)
        printJson(ctx.stdout, { loggedOut: true, server: null, token: null, revoked: false });
      else println(ctx.stdout, `Removed ${ctx.loginFile} (${(err as Error).message.split(";")[0]}).`);
      return 0;
    }
    if (!saved) {
      if (ctx.flags.json) printJson(ctx.stdout, { loggedOut: false });
      else println(ctx.stdout, `Not logged in (there is no ${ctx.loginFile}).`);
      return 0;
    }
    const id = tokenId(saved.token);
    let revoked = false;
    if (values.revoke === true) {
      if (!id) throw new Error("the saved token has no id to revoke; nothing was changed");
      try {
        await clientFor(saved.server, saved.token, saved.ca).delete(`/tokens/${id}`);
        revoked = true;
      } catch (err) {
        // Already revoked or expired: it no longer works anyway, so signing out goes on.
        if (!(err instanceof ApiError && err.status === 401)) throw err;
      }
    }
    await removeUserConfig(ctx.loginFile);
    if (ctx.flags.json) {
      printJson(ctx.stdout, { loggedOut: true, server: saved.server, token: id ?? null, revoked });
      return 0;
    }
    println(ctx.stdout, `Logged out of ${saved.server}: removed ${ctx.loginFile}.`);
    if (revoked) println(ctx.stdout, `Token ${id} is revoked.`);
    else if (values.revoke === true)
      println(ctx.stdout, `Token ${id} no longer worked (revoked or expired).`);
    else if (id) println(ctx.stdout, `Token ${id} still works until revoked: herd tokens revoke ${id}`);
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
