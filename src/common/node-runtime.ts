/**
 * The Node flags herd's processes pass to the herd processes
 * they start (src/daemons/runtime.ts chooses them per role).
 */

/** The young generation's limit for processes that serve few requests (MB per semi-space; V8's own grows to 16 and more). */
export const QUIET_FLAGS = ["--max-semi-space-size=2"];

/**
 * `herd up --small` also runs its JavaScript in V8's interpreter only: no
 * baseline or optimising compiler, so neither their code nor their share of
 * the node binary is in memory (about 14 MB less), and with V8's
 * `--optimize-for-size` (smaller heap steps and caches: about 5 MB less).
 * Its start-up code (route and schema set-up) runs once: `--bytecode-old-age=1`
 * lets V8 drop a function's bytecode after one GC unused instead of six (it is
 * compiled again if called). One GC thread and one V8 worker thread
 * (`--single-threaded-gc`, `--v8-pool-size=1`): fewer threads, each with its
 * stack and malloc arena. Together about 3 MB (docs/benchmarks.md, Footprint).
 * A control plane serves few requests; a proxy keeps the optimising compilers
 * (but see SMALL_GATEWAY_FLAGS).
 */
export const SMALL_FLAGS = [
  ...QUIET_FLAGS,
  "--max-opt=0",
  "--optimize-for-size",
  "--bytecode-old-age=1",
  "--single-threaded-gc",
  "--v8-pool-size=1",
];

/**
 * `herd up --small`'s gateway: the quiet young generation, one GC and one V8
 * worker thread, and V8's tiers up to Maglev, without TurboFan (`--max-opt=2`):
 * TurboFan's share of the node binary is not touched (about 4 MB less idle;
 * CPU per request within the noise in paired rounds, docs/benchmarks.md).
 */
export const SMALL_GATEWAY_FLAGS = [
  ...QUIET_FLAGS,
  "--max-opt=2",
  "--bytecode-old-age=1",
  "--single-threaded-gc",
  "--v8-pool-size=1",
];

/**
 * glibc's malloc for `herd up --small` and its gateway (GLIBC_TUNABLES, read
 * at exec): at most two arenas, and free memory above 128 KiB at the top of
 * the heap given back (a fixed threshold; glibc's default grows it up to
 * 64 MB after large frees).
 */
export const SMALL_MALLOC = "glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=131072";

/** The V8 flags chosen per role: a child of another role starts without this process's. */
const PER_ROLE = [
  /^--max-semi-space-size(=|$)/,
  /^--max-opt(=|$)/,
  /^--optimize-for-size$/,
  /^--bytecode-old-age(=|$)/,
  /^--single-threaded-gc$/,
  /^--v8-pool-size(=|$)/,
];

/**
 * This process's Node flags less the ones chosen for its role: what a child of another role starts with
 * (with the hooks that load herd's TypeScript already stripped, daemons/strip-hooks.mjs, when this process has them).
 */
export function inheritedExecArgv(): string[] {
  return process.execArgv.filter((flag) => !PER_ROLE.some((pattern) => pattern.test(flag)));
}
