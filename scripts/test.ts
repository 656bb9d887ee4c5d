// Runs every test: unit tests beside the code (in parallel), then the
// end-to-end tests in test/e2e (one at a time: each runs a whole platform).
// Usage: node scripts/test.ts [--unit | --e2e] [extra node --test flags]

import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";

const root = join(import.meta.dirname, "..");

function find(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === "node_modules" || e.name.startsWith(".")) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...find(p));
    else if (e.name.endsWith(".test.ts") && !e.name.endsWith(".case.test.ts")) out.push(relative(root, p));
  }
  return out.sort();
}

const args = process.argv.slice(2);
const only = args.find((a) => a === "--unit" || a === "--e2e");
const extra = args.filter((a) => a !== only);
const unit = find(join(root, "src"));
const e2e = find(join(root, "test"));

function run(files: string[], concurrency: number): number {
  if (files.length === 0) return 0;
  const r = spawnSync(
    process.execPath,
    ["--test", `--test-concurrency=${concurrency}`, "--test-timeout=300000", ...extra, ...files],
    {
      cwd: root,
      stdio: "inherit",
    },
  );
  return r.status ?? 1;
}

let status = 0;
if (only !== "--e2e") status ||= run(unit, 2);
if (only !== "--unit") status ||= run(e2e, 1);
process.exit(status);
