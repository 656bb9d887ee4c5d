// How many gateway processes herd up needs on this machine (docs/benchmarks.md, Footprint):
// `herd gateway --workers 1` (one process) against `--workers 2` (a primary and two
// workers), in rounds paired in time (bench/gateway-ab.ts): req/s, p50 and p99, CPU per
// request, RSS idle and after the load, and the ratios.
//
// Usage: node bench/gateway-workers.ts [ROUNDS (default 3)] [SECONDS per round (default 8)] [--strict]

import { compareGateways } from "./gateway-ab.ts";
import { benchArgs } from "./harness.ts";

const [rounds = "3", seconds = "8"] = benchArgs();
process.exit(
  await compareGateways(
    "bench gateway-workers",
    { name: "--workers 1", nodeFlags: [], args: ["--workers", "1"] },
    { name: "--workers 2", nodeFlags: [], args: ["--workers", "2"] },
    Number(rounds),
    Number(seconds),
  ),
);
