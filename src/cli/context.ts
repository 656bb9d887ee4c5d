/**
 * What every command gets: the global flags, where to write, and a lazily
 * built API client (commands that need no server never look for one).
 */

import type { ParseArgsOptionsConfig } from "node:util";
import { readCa } from "../common/api-ca.ts";
import { ApiClient } from "./api-client.ts";
import { UsageError } from "./args.ts";
import { resolveServerConfig, type ServerConfig, userConfigPath } from "./config.ts";

/** Somewhere to write text; process.stdout and process.stderr fit. */
export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** The flags every command accepts. */
export interface GlobalFlags {
  server?: string;
  token?: string;
  tenant?: string;
  /** --ca FILE: the CA an https server's certificate is checked against. */
  ca?: string;
  /** --context NAME: a saved context instead of the current one. */
  context?: string;
  json: boolean;
}

/** The world a command runs in; tests build one by hand. */
export interface CliContext {
  flags: GlobalFlags;
  cwd: string;
  env: Record<string, string | undefined>;
  /** The home directory, when not the process's (tests). */
  home?: string;
  stdout: Output;
  stderr: Output;
  /** Reads one line from the terminal (for confirmations); undefined when stdin is not a TTY. */
  prompt?: (question: string) => Promise<string>;
  /** Reads a secret: asked on the terminal without echo, or all of stdin when it is piped. */
  readSecret(question: string): Promise<string>;
  /** The user-level config: the contexts `herd login` and `herd up` save (server, token, tenant). */
  loginFile: string;
  now(): number;
  /** Aborts on Ctrl-C (SIGINT) or SIGTERM from the moment it is first called; for commands that run until stopped. */
  interrupt(): AbortSignal;
  /** The server's address, token and tenant (flags > env > context > data dir); cached. */
  serverConfig(): Promise<ServerConfig>;
  /** A client for the server; cached. */
  client(): Promise<ApiClient>;
}

/** Inputs of createContext. */
export interface ContextOptions {
  flags: GlobalFlags;
  cwd: string;
  env: Record<string, string | undefined>;
  stdout: Output;
  stderr: Output;
  prompt?: (question: string) => Promise<string>;
  readSecret?: (question: string) => Promise<string>;
  now?: () => number;
  home?: string;
  /** Replaces the SIGINT/SIGTERM listener (tests). */
  interrupt?: () => AbortSignal;
}

/**
 * An AbortSignal that fires on the process's first SIGINT or SIGTERM. A
 * repeat within a second is ignored (a terminal's Ctrl-C can arrive twice:
 * from the terminal and forwarded by bin/herd.js); a later one exits at once.
 */
export function signalOnInterrupt(): AbortSignal {
  const controller = new AbortController();
  let firstAt = 0;
  const stop = (signal: NodeJS.Signals) => {
    if (!controller.signal.aborted) {
      firstAt = Date.now();
      controller.abort();
    } else if (Date.now() - firstAt > 1000) {
      process.exit(signal === "SIGINT" ? 130 : 143);
    }
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  return controller.signal;
}

/** Builds a CliContext; the server config is resolved on first use. */
export function createContext(options: ContextOptions): CliContext {
  let config: Promise<ServerConfig> | undefined;
  let client: Promise<ApiClient> | undefined;
  const serverConfig = () => {
    config ??= resolveServerConfig({
      server: options.flags.server,
      token: options.flags.token,
      tenant: options.flags.tenant,
      ca: options.flags.ca,
      context: options.flags.context,
      env: options.env,
      cwd: options.cwd,
      home: options.home,
    });
    return config;
  };
  return {
    flags: options.flags,
    cwd: options.cwd,
    env: options.env,
    home: options.home,
    stdout: options.stdout,
    stderr: options.stderr,
    prompt: options.prompt,
    readSecret:
      options.readSecret ?? (() => Promise.reject(new Error("there is no input to read a token from"))),
    loginFile: userConfigPath({ env: options.env, home: options.home }),
    now: options.now ?? Date.now,
    interrupt: options.interrupt ?? signalOnInterrupt,
    serverConfig,
    client: () => {
      client ??= serverConfig().then(
        (c) =>
          new ApiClient({
            url: c.url,
            token: c.token,
            ...(c.ca ? { ca: readCa(c.ca, c.caSource) } : {}),
            tenant: c.tenant,
            authHint: `the token came from ${c.tokenSource}; sign in with \`herd login\` or pass --token`,
            source: c.source,
          }),
      );
      return client;
    },
  };
}

/** Writes a line to stdout. */
export function println(out: Output, text = ""): void {
  out.write(`${text}\n`);
}

/** Prints a value as indented JSON (the `--json` output). */
export function printJson(out: Output, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Parsed flag values of one command. */
export type FlagValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** One subcommand: how it is called, its help, and what it does. */
export interface CommandSpec {
  name: string;
  /** e.g. `herd ps [--app NAME]`; several lines for commands with sub-forms. */
  usage: string;
  summary: string;
  /** Flag help lines: [flag, what it does]. */
  flags?: [string, string][];
  /** Its own flags (the global ones are added). */
  options: ParseArgsOptionsConfig;
  run(ctx: CliContext, values: FlagValues, positionals: string[]): Promise<number>;
}

/** A string flag's value, or undefined. */
export function stringFlag(values: FlagValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** What a confirmation is about: `app hello` in `herd apps`, and what deleting it does. */
export interface Doomed {
  kind: string;
  name: string;
  /** destroy, delete. */
  verb: string;
  command: string;
  /** e.g. "This destroys the app hello and stops all its instances." */
  warning: string;
}

/**
 * Heroku-style confirmation: --confirm must repeat the name; without it, a
 * terminal is asked to type the name, and anything else is refused.
 */
export async function confirmDestroy(
  ctx: CliContext,
  doomed: Doomed,
  confirm: string | undefined,
): Promise<void> {
  const { kind, name, command } = doomed;
  if (confirm !== undefined) {
    if (confirm !== name)
      throw new UsageError(`--confirm ${confirm} does not match the ${kind} ${name}`, command);
    return;
  }
  if (!ctx.prompt) {
    throw new UsageError(
      `refusing to ${doomed.verb} the ${kind} ${name} without confirmation: pass --confirm ${name}`,
      command,
    );
  }
  const answer = await ctx.prompt(`${doomed.warning}\nType the ${kind}'s name to confirm: `);
  if (answer.trim() !== name) throw new Error(`not confirmed: ${name} is left as it is`);
}
