/**
 * `herd secrets …`: an app's secrets. Values come from stdin or a file,
 * never from the command line (where shell history and `ps` would keep
 * them), and the API never gives them back: `list` shows names, versions
 * and who changed them.
 */

import { readFile } from "node:fs/promises";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { UsageError } from "./args.ts";
import { type CliContext, type CommandSpec, printJson, println, stringFlag } from "./context.ts";
import { formatAge, renderTable } from "./format.ts";
import type { Items } from "./types.ts";

/** A secret as the API shows it: never its value. */
export interface SecretView {
  name: string;
  version: number;
  createdAt: string;
  updatedAt: string;
  updatedBy: string;
}

const USAGE = [
  "herd secrets [list] [--app NAME]",
  "herd secrets set NAME [--app NAME] [--from-file FILE]   (the value from stdin, or the file)",
  "herd secrets unset NAME [--app NAME]",
  "herd secrets rotate-key",
].join("\n");

const secretsPath = (app: string) => `/apps/${encodeURIComponent(app)}/secrets`;

export const secretsCommand: CommandSpec = {
  name: "secrets",
  usage: USAGE,
  summary:
    "Manage an app's secrets: herd.yaml's env refers to them as { secret: NAME }; they are encrypted at rest.\n" +
    "set reads the value from stdin (one trailing newline dropped) or --from-file (as is), never from the command line.\n" +
    "A change to a secret the running release uses rolls out a new release. rotate-key re-encrypts every secret (platform admin).",
  flags: [APP_FLAG_HELP, ["--from-file FILE", "set: the value is this file's content, exactly"]],
  options: { app: { type: "string" }, "from-file": { type: "string" } },
  async run(ctx, values, positionals) {
    const [action = "list", name, ...extra] = positionals;
    if (action === "rotate-key") {
      if (name !== undefined) throw new UsageError(`unexpected argument: ${name}`, "secrets");
      return rotateKey(ctx);
    }
    if (action !== "list" && action !== "set" && action !== "unset")
      throw new UsageError(`unknown secrets action: ${action}`, "secrets");
    // `set NAME VALUE`, or Heroku's `config:set NAME=VALUE` habit.
    if (action === "set" && (extra.length > 0 || (name?.indexOf("=") ?? 0) > 0)) {
      const bare = name?.split("=")[0] ?? "NAME";
      throw new UsageError(
        "the value is never taken from the command line (shell history and ps would keep it): " +
          `pipe it to stdin (printf %s "$VALUE" | herd secrets set ${bare}) or use --from-file FILE`,
        "secrets",
      );
    }
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "secrets");
    const app = await resolveApp(ctx, stringFlag(values, "app"), "secrets");
    if (action === "list") {
      if (name !== undefined) throw new UsageError(`unexpected argument: ${name}`, "secrets");
      return listSecrets(ctx, app);
    }
    if (!name) throw new UsageError(`secrets ${action} needs the secret's name`, "secrets");
    const client = await ctx.client();
    const path = `${secretsPath(app)}/${encodeURIComponent(name)}`;
    if (action === "unset") {
      const reply = await client.delete<{ deleted: SecretView }>(path);
      if (ctx.flags.json) printJson(ctx.stdout, reply);
      else
        println(ctx.stdout, `Unset secret ${name} of ${app} (it was at version ${reply.deleted.version}).`);
      return 0;
    }
    const value = await readValue(ctx, stringFlag(values, "from-file"));
    const reply = await client.put<{ secret: SecretView; deploy?: { id: string; release?: number } }>(path, {
      value,
    });
    if (ctx.flags.json) {
      printJson(ctx.stdout, reply);
      return 0;
    }
    println(ctx.stdout, `Set secret ${name} of ${app}: version ${reply.secret.version}.`);
    if (reply.deploy) {
      println(
        ctx.stdout,
        `Its release uses it: v${reply.deploy.release ?? "?"} rolls out (deploy ${reply.deploy.id}; herd releases --app ${app}).`,
      );
    }
    return 0;
  },
};

/** The value to set: the file's content as it is, else stdin without its one trailing newline. */
async function readValue(ctx: CliContext, file: string | undefined): Promise<string> {
  if (file !== undefined) {
    try {
      return await readFile(file, "utf8");
    } catch (err) {
      throw new Error(
        `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  }
  if (process.stdin.isTTY) println(ctx.stderr, "Type the value, then Ctrl-D:");
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const value = Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
  if (value === "") {
    throw new UsageError(
      'no value on stdin: pipe it in (e.g. `printf %s "$PW" | herd secrets set NAME`) or use --from-file',
      "secrets",
    );
  }
  return value;
}

async function listSecrets(ctx: CliContext, app: string): Promise<number> {
  const reply = await (await ctx.client()).get<Items<SecretView>>(secretsPath(app));
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else if (reply.items.length === 0)
    println(ctx.stdout, `${app} has no secrets. Set one with \`herd secrets set NAME --app ${app} < file\`.`);
  else println(ctx.stdout, secretsTable(reply.items, ctx.now()));
  return 0;
}

async function rotateKey(ctx: CliContext): Promise<number> {
  const reply = await (await ctx.client()).post<{
    keyId: string;
    reencrypted: number;
    secrets: number;
    droppedKeys: string[];
  }>("/secrets/rotate-key");
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else
    println(
      ctx.stdout,
      `Secrets are encrypted with key ${reply.keyId} now: ${reply.reencrypted} versions of ${reply.secrets} secrets re-encrypted; ${reply.droppedKeys.length} old key${reply.droppedKeys.length === 1 ? "" : "s"} removed.`,
    );
  return 0;
}

/** `herd secrets`: one row per secret, no values. */
export function secretsTable(items: readonly SecretView[], now: number): string {
  return renderTable(
    ["name", "version", "changed by", "changed"],
    items.map((s) => [s.name, `v${s.version}`, s.updatedBy, formatAge(s.updatedAt, now)]),
  );
}
