// What a V8 flag costs the gateway (docs/benchmarks.md, Footprint): one `herd gateway`
// process with V8's defaults against one started with FLAG (say --max-semi-space-size=1),
// in rounds paired in time (bench/gateway-ab.ts): req/s, p50 and p99, CPU per request,
// RSS idle and after the load, and the ratios.
//
// Usage: node bench/gateway-flags.ts [ROUNDS (default 3)] [SECONDS per round (default 8)] [FLAG] [--strict]

import { compareGateways } from "./gateway-ab.ts";
import { benchArgs } from "./harness.ts";

const [rounds = "3", seconds = "8", flag = "--max-semi-space-size=1"] = benchArgs();
process.exit(
  await compareGateways(
    "bench gateway-flags",
    { name: "defaults", nodeFlags: [], args: ["--workers", "1"] },
    { name: flag, nodeFlags: [flag], args: ["--workers", "1"] },
    Number(rounds),
    Number(seconds),
  ),
);
