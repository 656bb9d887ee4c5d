// The skips of a test run, made visible. scripts/test.ts hands this module to
// `node --test` as a second reporter (beside the usual `spec` output): every
// test or subtest that was skipped or marked todo becomes one JSON line in a
// file. After the run, `skipSummary` lists them all with their reasons, and,
// as root, any skip that is not on ALLOWED_AS_ROOT fails the run: on a root
// machine every check can run, so a skip there is a check that did not happen.

import { readFileSync } from "node:fs";
import { relative } from "node:path";

/** One skipped (or todo) test, as the reporter writes it. */
export type Skip = {
  file: string;
  name: string;
  line?: number;
  /** The reason given (`skip: "why"`, `t.skip("why")`); "" when none was. */
  reason: string;
  kind: "skip" | "todo";
};

/** A skip that may happen as root: it depends on the machine, not on privileges. */
export type AllowedSkip = { file: string; reason: RegExp; why: string };

/**
 * Skips that may appear as root. Each names the file, the reason it gives, and
 * why no root machine can be asked to run it. docs/testing.md lists them too.
 */
export const ALLOWED_AS_ROOT: readonly AllowedSkip[] = [
  {
    file: "src/gateway/upgrade-stages.test.ts",
    reason: /^no non-loopback IPv4 address on this machine$/,
    why: "a machine with loopback only has no other address to reach the status page from",
  },
  {
    file: "test/e2e/https.test.ts",
    reason: /^no non-loopback IPv4 address on this machine$/,
    why: "a machine with loopback only has no other address to check --public from",
  },
  {
    file: "test/e2e/limits.test.ts",
    reason: /^no cgroup v[12] memory and cpu controllers in use on this machine \(herd uses v[12] here\)$/,
    why: "herd uses one cgroup version per machine (v2 where it can): the other version cannot be checked there",
  },
  {
    file: "test/e2e/limits.test.ts",
    reason: /^herd has no real-time group scheduling here: /,
    why: "real-time budgets per cgroup exist only on cgroup v1 with a kernel built with them (CONFIG_RT_GROUP_SCHED)",
  },
];

type ReporterEvent = { type: string; data: Record<string, unknown> };

/** node:test reporter: one JSON line per skipped or todo test. */
export default async function* skipReporter(source: AsyncIterable<ReporterEvent>): AsyncGenerator<string> {
  for await (const e of source) {
    if (e.type !== "test:pass" && e.type !== "test:fail") continue;
    const { skip, todo, name, file, line } = e.data;
    if (skip === undefined && todo === undefined) continue;
    const given = skip !== undefined ? skip : todo;
    const s: Skip = {
      file: typeof file === "string" ? file : "?",
      name: String(name),
      ...(typeof line === "number" ? { line } : {}),
      reason: typeof given === "string" ? given : "",
      kind: skip !== undefined ? "skip" : "todo",
    };
    yield `${JSON.stringify(s)}\n`;
  }
}

/** The skips a reporter wrote to `path` (none when the file is missing). */
export function readSkips(path: string): Skip[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Skip);
}

/** The allow-list entry that covers `s`, if one does (`root` is the repository, for relative paths). */
export function allowedAsRoot(s: Skip, root: string, allowed = ALLOWED_AS_ROOT): AllowedSkip | undefined {
  const file = relative(root, s.file);
  return allowed.find((a) => a.file === file && s.kind === "skip" && a.reason.test(s.reason));
}

/**
 * The summary printed at the end of a run, and the skips that fail it: as
 * root, each skip or todo not on the allow list; otherwise none (without root
 * the privileged checks skip, and say so here).
 */
export function skipSummary(
  skips: readonly Skip[],
  opts: { root: string; asRoot: boolean; allowed?: readonly AllowedSkip[] },
): { lines: string[]; failing: Skip[] } {
  if (skips.length === 0) return { lines: ["Skipped: none."], failing: [] };
  const failing: Skip[] = [];
  const lines = [
    `!!! ${skips.length} test${skips.length === 1 ? "" : "s"} skipped (checks that did not run):`,
  ];
  for (const s of skips) {
    const allowed = allowedAsRoot(s, opts.root, opts.allowed);
    const bad = opts.asRoot && !allowed;
    if (bad) failing.push(s);
    const where = `${relative(opts.root, s.file)}${s.line ? `:${s.line}` : ""}`;
    const why = s.reason || "(no reason given)";
    const tag = bad ? "NOT ALLOWED AS ROOT" : allowed && opts.asRoot ? "allowed" : s.kind;
    lines.push(`!!!   [${tag}] ${where} "${s.name}": ${why}`);
  }
  if (failing.length > 0) {
    lines.push(
      `!!! Run as root, every check can run: ${failing.length} skip${failing.length === 1 ? "" : "s"} above fail${failing.length === 1 ? "s" : ""} the run.`,
      "!!! Make the check run, or, if it depends on the machine rather than on root, add it to",
      "!!! ALLOWED_AS_ROOT in scripts/test-skips.ts and to docs/testing.md, saying why.",
    );
  }
  return { lines, failing };
}
