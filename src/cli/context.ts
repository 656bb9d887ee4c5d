/**
 * What every command gets: the global flags, where to write, and a lazily
 * built API client (commands that need no server never look for one).
 */

import type { ParseArgsOptionsConfig } from "node:util";
import { readCa } from "../common/api-ca.ts";
import { ApiClient } from "./api-client.ts";
import { resolveServerConfig, type ServerConfig } from "./config.ts";

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
  json: boolean;
}

/** The world a command runs in; tests build one by hand. */
export interface CliContext {
  flags: GlobalFlags;
  cwd: string;
  env: Record<string, string | undefined>;
  stdout: Output;
  stderr: Output;
  /** Reads one line from the terminal (for confirmations); undefined when stdin is not a TTY. */
  prompt?: (question: string) => Promise<string>;
  now(): number;
  /** Aborts on Ctrl-C (SIGINT) or SIGTERM from the moment it is first called; for commands that run until stopped. */
  interrupt(): AbortSignal;
  /** The server's address and token (flags > env > data dir); cached. */
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
    stdout: options.stdout,
    stderr: options.stderr,
    prompt: options.prompt,
    now: options.now ?? Date.now,
    interrupt: options.interrupt ?? signalOnInterrupt,
    serverConfig,
    client: () => {
      client ??= serverConfig().then(
        (c) =>
          new ApiClient({
            url: c.url,
            token: c.token,
            ...(c.ca ? { ca: readCa(c.ca, "HERD_CA") } : {}),
            tenant: options.flags.tenant || options.env.HERD_TENANT,
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
