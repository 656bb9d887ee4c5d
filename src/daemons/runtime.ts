/**
 * The Node runtime of herd's long-running processes, for memory: a herd
 * daemon runs with V8 flags chosen for its role and loads its TypeScript from
 * Node's compile cache, so it never loads the type stripper (amaro, a
 * WebAssembly module that holds about 18 MB for the life of the process).
 *
 * A daemon started from the command line (`node src/cli/main.ts up`) has
 * neither: its flags are the user's, and main.ts was stripped before any
 * herd code ran. So it replaces itself once (process.execve: same pid, same
 * stdio, nothing started yet) with the same command plus the missing flags and
 * the cache:
 *
 *   image 1 ─► flags missing or types stripped ─► exec image 2 (cache on)
 *   image 2 ─► everything came from the cache ─► run
 *           └► the cache was cold (stripped again) ─► load the role's modules,
 *              write the cache, exec image 3 ─► run (whatever it finds)
 *
 * A daemon started by another herd process over IPC (herd up's gateway) is
 * never re-executed: its parent gives it the flags and the cache.
 *
 * The cache lives in the checkout's node_modules/.cache/herd-compile (in the
 * data dir when that cannot be written; herd up's gateway and its workers
 * share herd up's); it is keyed by each file's path and content, so a newer
 * checkout recompiles what changed.
 * NODE_COMPILE_CACHE is removed from the environment once the process runs,
 * so no build or other child inherits it; herd's own children that want it
 * (the gateway, its workers) are given it by name (common/node-runtime.ts).
 */

import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { constants, enableCompileCache, flushCompileCache } from "node:module";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { compileCacheBase, inheritedExecArgv, QUIET_FLAGS, SMALL_FLAGS } from "../common/node-runtime.ts";

/** The image number this module gives the process it execs: 2, then 3 (which never execs). */
const IMAGE_ENV = "HERD_DAEMON_IMAGE";

/** Where the compile cache goes: beside the checkout's packages (else in the data dir). */
const CHECKOUT_CACHE = fileURLToPath(new URL("../../node_modules/.cache/herd-compile", import.meta.url));

/** The herd CLI's entry module: only a process started as the CLI (or a role's own entry) is re-executed. */
const CLI_MAIN = fileURLToPath(new URL("../cli/main.ts", import.meta.url));

/** The gateway's entry module: a gateway re-executes into it, so it loads none of the CLI (about 18 MB). */
const GATEWAY_MAIN = fileURLToPath(new URL("./gateway-main.ts", import.meta.url));

/**
 * What a gateway loads: its command and its code, and the route-object schema
 * it loads on first use (route-table.ts), compiled ahead like the rest.
 */
const GATEWAY_MODULES = ["../cli/gateway-command.ts", "./gateway.ts", "../model/live-config.ts"];

/**
 * The roles of herd's daemons: the V8 flags each runs with, the modules it
 * loads (from src/daemons/), and for some an entry module of their own that
 * the re-exec runs with the command's arguments instead of the CLI.
 */
const ROLES: Record<
  string,
  { flags: readonly string[]; modules: readonly string[]; entry?: string; childModules?: readonly string[] }
> = {
  // herd up's gateway shares its cache: it is filled with the gateway's modules too.
  // herd up loads example.ts on a first start only: compiled ahead all the same, so that start strips nothing.
  up: {
    flags: QUIET_FLAGS,
    modules: ["./up.ts", "./example.ts", ...GATEWAY_MODULES, "../gateway/cluster-worker.ts"],
  },
  // herd up --small: the interpreter only (common/node-runtime.ts). V8 keys its code cache by flags, so
  // its gateway's modules are compiled for the gateway's flags by a process that has them (fillForChildren).
  "up-small": {
    flags: SMALL_FLAGS,
    modules: ["./up.ts", "./example.ts"],
    childModules: [...GATEWAY_MODULES, "../gateway/cluster-worker.ts"],
  },
  server: { flags: QUIET_FLAGS, modules: ["./server.ts"] },
  agent: { flags: QUIET_FLAGS, modules: ["./agent.ts"] },
  // A gateway that proxies keeps V8's defaults (a bigger young generation allocates requests faster).
  gateway: { flags: [], modules: GATEWAY_MODULES, entry: GATEWAY_MAIN },
  "gateway-primary": {
    flags: QUIET_FLAGS,
    modules: [...GATEWAY_MODULES, "../gateway/cluster-worker.ts"],
    entry: GATEWAY_MAIN,
  },
};

/** A daemon role (see ROLES). */
export type DaemonRole = "up" | "up-small" | "server" | "agent" | "gateway" | "gateway-primary";

/**
 * Makes this process run as its role wants, re-executing it when needed (see
 * the top of this file); returns when it runs so. `dataDir` holds the cache
 * when the checkout's node_modules cannot; `args` are the command's own
 * arguments, which a role with its own entry module is re-executed with.
 * Does nothing in a
 * process that is not the herd CLI (a test calling the daemons) or on a Node
 * without process.execve.
 */
export async function ensureDaemonRuntime(
  role: DaemonRole,
  dataDir: string,
  args?: readonly string[],
): Promise<void> {
  const runtime = ROLES[role];
  const image = Number(process.env[IMAGE_ENV] ?? 1);
  delete process.env[IMAGE_ENV];
  // A herd process that started this one over IPC (cluster-child.ts) chose its flags and cache: an
  // exec would lose the channel (Node takes it from the environment at start).
  if (process.send !== undefined) return;
  const started = resolve(process.argv[1] ?? "");
  if ((started !== CLI_MAIN && started !== runtime.entry) || typeof process.execve !== "function") return;
  const missing = runtime.flags.filter((flag) => !process.execArgv.includes(flag));
  const stripped = typesStripped();
  if (image >= 3 || (missing.length === 0 && !stripped)) {
    delete process.env.NODE_COMPILE_CACHE;
    return;
  }
  const cacheDir = compileCacheBase() ?? enableCache(dataDir);
  if (cacheDir === undefined && missing.length === 0) return;
  if (image === 2 && cacheDir !== undefined) {
    // The cache was cold: fill it with what this role loads, so the next image strips nothing.
    for (const module of runtime.modules) {
      try {
        await import(new URL(module, import.meta.url).href);
      } catch {
        // a module that runs only in its own process (the gateway worker) is compiled all the same
      }
    }
    flushCompileCache();
    if (runtime.childModules !== undefined) fillForChildren(runtime.childModules, cacheDir);
  }
  process.execve(
    process.execPath,
    [
      process.execPath,
      ...process.execArgv,
      ...missing,
      ...(runtime.entry !== undefined && args !== undefined
        ? [runtime.entry, ...args]
        : process.argv.slice(1)),
    ],
    {
      ...process.env,
      ...(cacheDir === undefined ? {} : { NODE_COMPILE_CACHE: cacheDir }),
      // Without a cache, only the flags were missing: the next image is the last.
      [IMAGE_ENV]: String(cacheDir === undefined ? 3 : image + 1),
    },
  );
}

/**
 * Turns the compile cache on in the checkout's node_modules/.cache (shared by
 * every data dir and by the processes herd up starts), or in the data dir
 * when that cannot be written; returns the directory, or undefined.
 */
function enableCache(dataDir: string): string | undefined {
  for (const dir of [CHECKOUT_CACHE, join(dataDir, "compile-cache")]) {
    try {
      mkdirSync(dir, { recursive: true });
    } catch {
      continue;
    }
    if (enableCompileCache(dir).status === constants.compileCacheStatus.ENABLED) return dir;
  }
  return undefined;
}

/**
 * Fills the cache with `modules` as compiled for the V8 flags this process's
 * children start with (inheritedExecArgv), in a short process that has them:
 * Node keeps one cache per set of flags (V8 rejects code compiled with others),
 * and a child started over IPC never re-executes to fill its own.
 */
function fillForChildren(modules: readonly string[], cacheDir: string): void {
  const imports = modules
    .map(
      (module) => `await import(${JSON.stringify(new URL(module, import.meta.url).href)}).catch(() => {});`,
    )
    .join("\n");
  spawnSync(
    process.execPath,
    [
      ...inheritedExecArgv(),
      "--input-type=module",
      "-e",
      `${imports}\n(await import("node:module")).flushCompileCache();\nprocess.exit(0);`,
    ],
    { env: { ...process.env, NODE_COMPILE_CACHE: cacheDir }, stdio: "ignore", timeout: 120_000 },
  );
}

/** Whether this process has loaded the type stripper (some .ts file did not come from the cache). */
function typesStripped(): boolean {
  const loaded = (process as { moduleLoadList?: string[] }).moduleLoadList ?? [];
  return loaded.some((name) => name.includes("internal/deps/amaro"));
}
