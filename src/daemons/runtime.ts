/**
 * The Node runtime of herd's long-running processes, for memory: a herd
 * daemon runs with V8 flags chosen for its role and loads its TypeScript
 * already stripped (strip-hooks.mjs: a cache of each file's JavaScript), so
 * it never loads Node's type stripper (amaro, a WebAssembly module that holds
 * about 18 MB for the life of the process) nor keeps a compile-cache entry per
 * module in memory (Node's compile cache does: about 6 MB in herd up).
 *
 * A daemon started from the command line (`node src/cli/main.ts up`) has
 * neither: its flags are the user's, and main.ts was stripped before any
 * herd code ran. So it replaces itself once (process.execve: same pid, same
 * stdio, nothing started yet) with the same command plus the missing flags and
 * `--import strip-hooks.mjs?cache=<dir>`; the second image runs. A daemon
 * started by another herd process over IPC (herd up's gateway) is never
 * re-executed: its parent gives it the flags and the hooks (its own
 * `--import`, common/node-runtime.ts inheritedExecArgv).
 *
 * The cache lives in the checkout's node_modules/.cache/herd-stripped (in
 * the data dir when that cannot be written); it is keyed by each file's path
 * and content, so a newer checkout strips what changed (in a short process of
 * its own: strip-hooks.mjs).
 */

import { accessSync, constants, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { QUIET_FLAGS, SMALL_FLAGS, SMALL_MALLOC } from "../common/node-runtime.ts";

/** Set in the image this module execs (which never execs again). */
const IMAGE_ENV = "HERD_DAEMON_IMAGE";

/** Where the stripped JavaScript goes: beside the checkout's packages (else in the data dir). */
const CHECKOUT_CACHE = fileURLToPath(new URL("../../node_modules/.cache/herd-stripped", import.meta.url));

/** The module whose hooks load herd's TypeScript from the cache. */
const HOOKS = fileURLToPath(new URL("./strip-hooks.mjs", import.meta.url));

/** The herd CLI's entry module: only a process started as the CLI (or a role's own entry) is re-executed. */
const CLI_MAIN = fileURLToPath(new URL("../cli/main.ts", import.meta.url));

/** The gateway's entry module: a gateway re-executes into it, so it loads none of the CLI (about 18 MB). */
const GATEWAY_MAIN = fileURLToPath(new URL("./gateway-main.ts", import.meta.url));

/**
 * The roles of herd's daemons: the V8 flags each runs with, and for some an
 * entry module of their own that the re-exec runs with the command's
 * arguments instead of the CLI.
 */
const ROLES: Record<string, { flags: readonly string[]; entry?: string }> = {
  up: { flags: QUIET_FLAGS },
  // herd up --small: the interpreter only (common/node-runtime.ts).
  "up-small": { flags: SMALL_FLAGS },
  server: { flags: QUIET_FLAGS },
  agent: { flags: QUIET_FLAGS },
  // A gateway that proxies keeps V8's defaults (a bigger young generation allocates requests faster).
  gateway: { flags: [], entry: GATEWAY_MAIN },
  "gateway-primary": { flags: QUIET_FLAGS, entry: GATEWAY_MAIN },
};

/** A daemon role (see ROLES). */
export type DaemonRole = "up" | "up-small" | "server" | "agent" | "gateway" | "gateway-primary";

/**
 * Makes this process run as its role wants, re-executing it when needed (see
 * the top of this file); returns when it runs so. `dataDir` holds the cache
 * when the checkout's node_modules cannot; `args` are the command's own
 * arguments, which a role with its own entry module is re-executed with.
 * Does nothing in a process that is not the herd CLI (a test calling the
 * daemons) or on a Node without process.execve.
 */
export async function ensureDaemonRuntime(
  role: DaemonRole,
  dataDir: string,
  args?: readonly string[],
): Promise<void> {
  const runtime = ROLES[role];
  const image = Number(process.env[IMAGE_ENV] ?? 1);
  delete process.env[IMAGE_ENV];
  // A herd process that started this one over IPC (cluster-child.ts) chose its flags and hooks: an
  // exec would lose the channel (Node takes it from the environment at start).
  if (process.send !== undefined) return;
  const started = resolve(process.argv[1] ?? "");
  if ((started !== CLI_MAIN && started !== runtime.entry) || typeof process.execve !== "function") return;
  const missing = runtime.flags.filter((flag) => !process.execArgv.includes(flag));
  const hooked = hasHooks();
  if (image >= 2 || (missing.length === 0 && hooked)) return;
  const cacheDir = hooked ? undefined : writableCache(dataDir);
  if (cacheDir === undefined && missing.length === 0) return;
  process.execve(
    process.execPath,
    [
      process.execPath,
      ...process.execArgv,
      ...missing,
      ...(cacheDir === undefined ? [] : [hooksFlag(cacheDir)]),
      ...(runtime.entry !== undefined && args !== undefined
        ? [runtime.entry, ...args]
        : process.argv.slice(1)),
    ],
    {
      ...process.env,
      [IMAGE_ENV]: "2",
      // herd up --small's malloc settings (unless the user set their own); its gateway inherits them.
      ...(role === "up-small" ? { GLIBC_TUNABLES: process.env.GLIBC_TUNABLES ?? SMALL_MALLOC } : {}),
    },
  );
}

/** The flag that loads herd's TypeScript from the cache in `dir`. */
export function hooksFlag(dir: string): string {
  return `--import=${pathToFileURL(HOOKS).href}?cache=${encodeURIComponent(dir)}`;
}

/** Whether this process loads herd's TypeScript through the hooks (it has their `--import` flag). */
function hasHooks(): boolean {
  const prefix = `--import=${pathToFileURL(HOOKS).href}?cache=`;
  return process.execArgv.some((arg) => arg.startsWith(prefix));
}

/** The checkout's cache directory, or the data dir's when that cannot be written; undefined when neither can. */
function writableCache(dataDir: string): string | undefined {
  for (const dir of [CHECKOUT_CACHE, join(dataDir, "stripped")]) {
    try {
      mkdirSync(dir, { recursive: true });
      accessSync(dir, constants.W_OK);
      return dir;
    } catch {
      // the next place
    }
  }
  return undefined;
}
