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
 * `--optimize-for-size` (smaller heap steps and caches: about 5 MB less;
 * docs/benchmarks.md, Footprint). A control plane serves few requests; a
 * proxy keeps the compilers and V8's defaults.
 */
export const SMALL_FLAGS = [...QUIET_FLAGS, "--max-opt=0", "--optimize-for-size"];

/** The V8 flags chosen per role: a child of another role starts without this process's. */
const PER_ROLE = [/^--max-semi-space-size(=|$)/, /^--max-opt(=|$)/, /^--optimize-for-size$/];

/**
 * This process's Node flags less the ones chosen for its role: what a child of another role starts with
 * (with the hooks that load herd's TypeScript already stripped, daemons/strip-hooks.mjs, when this process has them).
 */
export function inheritedExecArgv(): string[] {
  return process.execArgv.filter((flag) => !PER_ROLE.some((pattern) => pattern.test(flag)));
}
