/**
 * `herd git remote` and `herd git credential`: deploy by `git push`
 * (docs/releases.md).
 *
 *   herd git remote [--app A] [--remote herd] ─► git remote add herd <server>/api/v1/tenants/<t>/git/<A>.git
 *                                             ─► git config credential.<url>.helper "!herd git credential"
 *   git push herd main ─► git asks `herd git credential get` ─► username=herd, password=<this context's token>
 *
 * The token stays in herd's own login file: git asks herd for it on each
 * push instead of keeping it in the repository's config.
 */

import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { UsageError } from "./args.ts";
import { type CliContext, type CommandSpec, type FlagValues, println, stringFlag } from "./context.ts";

const run = promisify(execFile);

interface Whoami {
  admin: boolean;
  tenants: { tenant: string; role: string }[];
}

/** A word for sh: single-quoted. */
const shellWord = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

/** The tenant the remote is in: --tenant (or the context's), else the token's only one (an admin's: default). */
async function remoteTenant(ctx: CliContext): Promise<string> {
  const config = await ctx.serverConfig();
  if (config.tenant) return config.tenant;
  const me = await (await ctx.client()).get<Whoami>("/whoami");
  if (me.admin) return "default";
  if (me.tenants.length === 1) return me.tenants[0].tenant;
  throw new UsageError(
    `name the tenant with --tenant: this token is in ${me.tenants.map((t) => t.tenant).join(", ") || "no tenant"}`,
    "git",
  );
}

async function addRemote(ctx: CliContext, values: FlagValues): Promise<number> {
  const app = await resolveApp(ctx, stringFlag(values, "app"), "git");
  const name = stringFlag(values, "remote") ?? "herd";
  const config = await ctx.serverConfig();
  const url = `${config.url}/api/v1/tenants/${await remoteTenant(ctx)}/git/${app}.git`;
  const git = (...args: string[]) => run("git", args, { cwd: ctx.cwd });
  try {
    await git("rev-parse", "--git-dir");
  } catch {
    throw new UsageError(`${ctx.cwd} is not in a git repository (git init first)`, "git");
  }
  const existing = await git("remote", "get-url", name).then(
    (r) => r.stdout.trim(),
    () => undefined,
  );
  await (existing === undefined ? git("remote", "add", name, url) : git("remote", "set-url", name, url));
  // git asks herd for the token on each push: the same context (and CA) as this command's.
  const helper = [
    process.execPath,
    process.argv[1],
    "git",
    "credential",
    ...(ctx.flags.context ? ["--context", ctx.flags.context] : []),
  ];
  await git("config", `credential.${url}.helper`, `!${helper.map(shellWord).join(" ")}`);
  await git("config", `credential.${url}.username`, "herd");
  if (config.ca) await git("config", `http.${url}.sslCAInfo`, config.ca);
  println(ctx.stdout, `${existing === undefined ? "Added" : "Updated"} git remote ${name}: ${url}`);
  println(ctx.stdout, `git push ${name} main   builds and releases main as app ${app}`);
  return 0;
}

/** git's credential protocol: `get` answers with this context's token; `store` and `erase` keep nothing. */
async function credential(ctx: CliContext, action: string | undefined): Promise<number> {
  if (action !== "get") return 0;
  const config = await ctx.serverConfig();
  println(ctx.stdout, "username=herd");
  println(ctx.stdout, `password=${config.token}`);
  return 0;
}

/** `herd git remote|credential`. */
export const gitCommand: CommandSpec = {
  name: "git",
  usage: "herd git remote [--app NAME] [--remote NAME]\nherd git credential get",
  summary:
    "Deploy by git push: `remote` adds the app's git remote on this server to the repository here (named herd),\n" +
    "with herd as git's credential helper for it; then `git push herd main` builds and releases main and\n" +
    "shows the build. `credential` is what git calls.",
  flags: [APP_FLAG_HELP, ["--remote NAME", "the git remote's name (default herd)"]],
  options: { app: { type: "string" }, remote: { type: "string" } },
  async run(ctx, values, positionals) {
    const [action, sub] = positionals;
    if (action === "remote") return addRemote(ctx, values);
    if (action === "credential") return credential(ctx, sub);
    throw new UsageError("say what: herd git remote, or herd git credential get", "git");
  },
};
