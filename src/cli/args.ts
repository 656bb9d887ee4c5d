/**
 * Argument handling that needs no server: finding the subcommand among global
 * flags, and checking scale counts, versions and numbers before any call.
 */

import type { ParseArgsOptionsConfig } from "node:util";
import { NAME_PATTERN } from "../model/manifest.ts";

/** A mistake in how the command was called: printed with a usage hint, exit 2. */
export class UsageError extends Error {
  /** The command whose usage to show, when known. */
  readonly command: string | undefined;

  constructor(message: string, command?: string) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

/** Flags every command accepts, before or after the subcommand. */
export const GLOBAL_OPTIONS = {
  server: { type: "string" },
  token: { type: "string" },
  tenant: { type: "string" },
  ca: { type: "string" },
  context: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig;

/**
 * Splits argv into the subcommand and the rest: the subcommand is the first
 * word that is neither a flag nor the value of a global flag that takes one.
 */
export function splitCommand(argv: readonly string[]): { command: string | undefined; rest: string[] } {
  const takesValue = new Set(["--server", "--token", "--tenant", "--ca", "--context"]);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") break;
    if (takesValue.has(arg)) {
      i++;
      continue;
    }
    if (!arg.startsWith("-")) return { command: arg, rest: [...argv.slice(0, i), ...argv.slice(i + 1)] };
  }
  return { command: undefined, rest: [...argv] };
}

const SERVICE_NAME = new RegExp(NAME_PATTERN);
/** The most instances a service may ask for (as in herd.yaml). */
export const MAX_INSTANCES = 1000;

/**
 * Parses `web=3 worker=1` into `{web: 3, worker: 1}`. Counts are whole
 * numbers from 0 to 1000; anything else is a UsageError saying why.
 */
export function parseScaleArgs(args: readonly string[]): Record<string, number> {
  if (args.length === 0) throw new UsageError("say what to scale, e.g. `herd scale web=3`", "scale");
  const services: Record<string, number> = {};
  for (const arg of args) {
    const m = /^([^=]*)=(.*)$/.exec(arg);
    if (!m) throw new UsageError(`${arg}: expected SERVICE=COUNT, e.g. web=3`, "scale");
    const [, name, count] = m;
    if (!SERVICE_NAME.test(name)) {
      throw new UsageError(
        `${arg}: "${name}" is not a service name (lowercase letters, digits, dashes)`,
        "scale",
      );
    }
    if (!/^\d+$/.test(count)) {
      const why = /^-\d/.test(count)
        ? "cannot be negative"
        : /^\d*\.\d+$/.test(count)
          ? "must be a whole number"
          : "is not a number";
      throw new UsageError(`${arg}: the count ${why} (expected 0 to ${MAX_INSTANCES})`, "scale");
    }
    const n = Number(count);
    if (n > MAX_INSTANCES) throw new UsageError(`${arg}: at most ${MAX_INSTANCES} instances`, "scale");
    if (name in services) throw new UsageError(`${name} is given twice`, "scale");
    services[name] = n;
  }
  return services;
}

/** Parses a release version given as `v3` or `3`. */
export function parseVersion(arg: string, command: string): number {
  const m = /^v?(\d+)$/.exec(arg);
  if (!m || Number(m[1]) < 1) throw new UsageError(`${arg}: expected a release version like v3`, command);
  return Number(m[1]);
}

/** Parses a flag that must be a whole number of at least `min`. */
export function parseCount(value: string, flag: string, command: string, min = 0): number {
  if (!/^\d+$/.test(value) || Number(value) < min) {
    throw new UsageError(
      `--${flag} ${value}: expected a whole number${min > 0 ? ` >= ${min}` : ""}`,
      command,
    );
  }
  return Number(value);
}
