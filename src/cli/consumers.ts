/**
 * `herd consumers …`: the clients of the tenant's routes and their
 * credentials (routes with `auth` in herd.yaml let them in). A new API key,
 * or a generated JWT secret, is printed once and never again.
 */

import { readFile } from "node:fs/promises";
import { UsageError } from "./args.ts";
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

/** A consumer as the API shows it (no secrets). */
export interface ConsumerView {
  name: string;
  createdAt: string;
  keys: { id: string; hint: string; createdAt: string }[];
  jwt: { id: string; key: string; algorithm: string; createdAt: string }[];
}

const USAGE = [
  "herd consumers",
  "herd consumers create NAME",
  "herd consumers show NAME",
  "herd consumers delete NAME",
  "herd consumers keys add NAME",
  "herd consumers keys remove NAME ID",
  "herd consumers jwt add NAME [--key ISS] [--algorithm HS256|RS256] [--secret-file FILE | --public-key FILE]",
  "herd consumers jwt remove NAME ID",
].join("\n");

const consumerPath = (name: string) => `/consumers/${encodeURIComponent(name)}`;

export const consumersCommand: CommandSpec = {
  name: "consumers",
  usage: USAGE,
  summary:
    "Manage consumers: the clients that routes with `auth` let in, with API keys or JWT credentials.\n" +
    "A new API key (or a generated JWT secret) is printed once; store it then.",
  flags: [
    ["--key ISS", "jwt add: the credential's key, matched against the tokens' iss (default: generated)"],
    ["--algorithm ALG", "jwt add: HS256 (default, a shared secret) or RS256 (a public key)"],
    [
      "--secret-file FILE",
      "jwt add: the HS256 secret, at least 32 characters, from a file (default: generated; never on the command line)",
    ],
    ["--public-key FILE", "jwt add: the RS256 public key, a PEM file"],
  ],
  options: {
    key: { type: "string" },
    algorithm: { type: "string" },
    "secret-file": { type: "string" },
    "public-key": { type: "string" },
  },
  async run(ctx, values, positionals) {
    const [action, ...rest] = positionals;
    if (action === undefined) return listConsumers(ctx);
    const client = await ctx.client();
    if (action === "create" || action === "show" || action === "delete") {
      const name = one(rest, `consumers ${action} needs the consumer's name`);
      const reply =
        action === "create"
          ? await client.post<ConsumerView>("/consumers", { name })
          : action === "show"
            ? await client.get<ConsumerView>(consumerPath(name))
            : await client.delete<ConsumerView>(consumerPath(name));
      if (ctx.flags.json) printJson(ctx.stdout, reply);
      else if (action === "create")
        println(
          ctx.stdout,
          `Created consumer ${name}. Give it a key with \`herd consumers keys add ${name}\`.`,
        );
      else if (action === "show") println(ctx.stdout, credentialsTable(reply, ctx.now()));
      else println(ctx.stdout, `Deleted consumer ${name}; its credentials no longer work.`);
      return 0;
    }
    if (action !== "keys" && action !== "jwt")
      throw new UsageError(`unknown consumers action: ${action}`, "consumers");
    const [verb, name, id, ...extra] = rest;
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "consumers");
    if (verb === "remove") {
      if (!name || !id)
        throw new UsageError(`consumers ${action} remove needs the consumer's name and the id`, "consumers");
      const reply = await client.delete<ConsumerView>(
        `${consumerPath(name)}/${action}/${encodeURIComponent(id)}`,
      );
      if (ctx.flags.json) printJson(ctx.stdout, reply);
      else
        println(ctx.stdout, `Removed ${action === "keys" ? "API key" : "JWT credential"} ${id} of ${name}.`);
      return 0;
    }
    if (verb !== "add")
      throw new UsageError(`unknown consumers ${action} action: ${verb ?? "(none)"}`, "consumers");
    if (!name) throw new UsageError(`consumers ${action} add needs the consumer's name`, "consumers");
    if (id !== undefined) throw new UsageError(`unexpected argument: ${id}`, "consumers");
    if (action === "keys") return addKey(ctx, name);
    return addJwt(ctx, name, values);
  },
};

function one(rest: string[], message: string): string {
  if (rest.length === 0) throw new UsageError(message, "consumers");
  if (rest.length > 1) throw new UsageError(`unexpected argument: ${rest[1]}`, "consumers");
  return rest[0];
}

async function listConsumers(ctx: CliContext): Promise<number> {
  const reply = await (await ctx.client()).get<Items<ConsumerView>>("/consumers");
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else if (reply.items.length === 0)
    println(ctx.stdout, "No consumers. Create one with `herd consumers create NAME`.");
  else println(ctx.stdout, consumersTable(reply.items, ctx.now()));
  return 0;
}

async function addKey(ctx: CliContext, name: string): Promise<number> {
  const reply = await (await ctx.client()).post<{ id: string; key: string }>(`${consumerPath(name)}/keys`);
  if (ctx.flags.json) {
    printJson(ctx.stdout, reply);
    return 0;
  }
  println(ctx.stdout, `API key ${reply.id} for ${name} (shown only now; herd keeps only its hash):`);
  println(ctx.stdout, reply.key);
  return 0;
}

async function addJwt(ctx: CliContext, name: string, values: FlagValues): Promise<number> {
  const algorithm = stringFlag(values, "algorithm") ?? "HS256";
  if (algorithm !== "HS256" && algorithm !== "RS256") {
    throw new UsageError(`--algorithm must be HS256 or RS256, not ${algorithm}`, "consumers");
  }
  const file = stringFlag(values, "public-key");
  let publicKey: string | undefined;
  if (file !== undefined) {
    try {
      publicKey = await readFile(file, "utf8");
    } catch (err) {
      throw new Error(`cannot read the public key ${file}: ${(err as Error).message}`);
    }
  }
  const secretFile = stringFlag(values, "secret-file");
  let secret: string | undefined;
  if (secretFile !== undefined) {
    try {
      secret = (await readFile(secretFile, "utf8")).replace(/\r?\n$/, "");
    } catch (err) {
      throw new Error(
        `cannot read the secret file ${secretFile}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
      );
    }
  }
  const body = {
    algorithm,
    ...(stringFlag(values, "key") ? { key: stringFlag(values, "key") } : {}),
    ...(secret !== undefined ? { secret } : {}),
    ...(publicKey !== undefined ? { publicKey } : {}),
  };
  const reply = await (await ctx.client()).post<{
    id: string;
    key: string;
    algorithm: string;
    secret?: string;
  }>(`${consumerPath(name)}/jwt`, body);
  if (ctx.flags.json) {
    printJson(ctx.stdout, reply);
    return 0;
  }
  println(
    ctx.stdout,
    `JWT credential ${reply.id} for ${name}: ${reply.algorithm}, tokens with "iss": "${reply.key}".`,
  );
  if (reply.secret) println(ctx.stdout, `Secret (shown only now):\n${reply.secret}`);
  return 0;
}

/** `herd consumers`: one row per consumer. */
export function consumersTable(items: readonly ConsumerView[], now: number): string {
  const rows = items.map((c) => [
    c.name,
    String(c.keys.length),
    c.jwt.map((j) => `${j.key} (${j.algorithm})`).join(", ") || "-",
    formatAge(c.createdAt, now),
  ]);
  return renderTable(["name", "api keys", "jwt", "created"], rows);
}

/** `herd consumers show NAME`: one row per credential. */
function credentialsTable(c: ConsumerView, now: number): string {
  const rows = [
    ...c.keys.map((k) => ["api key", k.id, k.hint, formatAge(k.createdAt, now)]),
    ...c.jwt.map((j) => [`jwt ${j.algorithm}`, j.id, `iss ${j.key}`, formatAge(j.createdAt, now)]),
  ];
  if (rows.length === 0) return `${c.name} has no credentials yet (herd consumers keys add ${c.name}).`;
  return renderTable(["credential", "id", "identifies", "created"], rows);
}
