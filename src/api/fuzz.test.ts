// A short run of the API fuzzer (npm run fuzz does 100,000): 3,000 seeded requests
// against a server in a child process; no 5xx, every 4xx a JSON {code, message},
// no dropped connection, and the server still up.

import assert from "node:assert/strict";
import { test } from "node:test";
import { describe, runFuzz, summary } from "../../test/fuzz/fuzzer.ts";

test("3,000 generated requests: no crash, no 5xx, every 4xx a JSON {code, message}", async () => {
  const seed = 20261203;
  const report = await runFuzz({ requests: 3000, seed, concurrency: 8 });
  console.log(summary(report).split("\n").slice(0, 2).join("\n"));
  assert.equal(report.requests, 3000);
  assert.equal(report.crashed, false, `the server went away:\n${report.serverLog.slice(-20).join("\n")}`);
  assert.equal(
    report.violations.length,
    0,
    report.violations
      .slice(0, 10)
      .map((v) => describe(v, seed))
      .join("\n\n"),
  );
  // The run reached most routes, with every kind of answer.
  assert.ok(Object.keys(report.routes).length > 90, `${Object.keys(report.routes).length} routes`);
  for (const status of ["200", "400", "401", "403", "404"]) assert.ok(report.statuses[status] > 0, status);
});
