// npm run fuzz: generated API requests against a real server in a child process.
// Usage: node scripts/fuzz.ts [--requests N] [--seed N] [--concurrency N] [--replay I]
// Exits 1 on any violation (5xx, a 4xx that is not JSON {code, message}, a dropped
// connection, a crash), printing each request so it can be replayed.

import { describe, runFuzz, summary } from "../test/fuzz/fuzzer.ts";

const arg = (name: string, fallback?: number): number | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} needs a whole number`);
  return n;
};

const seed = arg("seed", Date.now() % 1_000_000)!;
const report = await runFuzz({
  requests: arg("requests", 100_000)!,
  seed,
  concurrency: arg("concurrency", 16),
  replay: arg("replay"),
  log: (line) => console.log(line),
});
console.log(summary(report));
for (const v of report.violations.slice(0, 50)) console.log(`\n${describe(v, seed)}`);
if (report.violations.length > 50) console.log(`\n… and ${report.violations.length - 50} more`);
if (report.violations.length > 0 || report.crashed) {
  console.log(`\nserver log (last lines):\n${report.serverLog.slice(-30).join("\n")}`);
  process.exit(1);
}
