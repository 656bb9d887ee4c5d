#!/usr/bin/env node
// The `herd` command installed by `npm install -g .`: runs src/cli/main.ts on
// the Node pinned in this package's node_modules (it strips TypeScript types;
// the `node` that runs this file may be older), falling back to `node` on the
// PATH. Arguments and stdio pass through, signals are forwarded, and the
// child's exit code (or signal) becomes ours. Plain JavaScript that any Node
// version since 14 can run.

import { spawn } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(realpathSync(fileURLToPath(import.meta.url))));
const pinned = join(root, "node_modules", "node", "bin", "node");
const node = existsSync(pinned) ? pinned : "node";

const child = spawn(
  node,
  ["--disable-warning=ExperimentalWarning", join(root, "src", "cli", "main.ts"), ...process.argv.slice(2)],
  { stdio: "inherit" },
);

const FORWARDED = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR2", "SIGWINCH"];
const forward = (signal) => {
  if (child.exitCode === null && child.signalCode === null) child.kill(signal);
};
for (const signal of FORWARDED) process.on(signal, forward);

child.on("error", (err) => {
  const hint = node === "node" ? `: run \`npm install\` in ${root}` : "";
  process.stderr.write(`herd: cannot start ${node} (${err.message})${hint}\n`);
  process.exit(1);
});

child.on("exit", (code, signal) => {
  for (const s of FORWARDED) process.off(s, forward);
  if (signal) {
    // Die the same way, so a shell sees "killed by SIGINT" and not a plain exit code.
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code ?? 1);
});
