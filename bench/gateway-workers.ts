// How many gateway processes herd up needs on this machine (docs/benchmarks.md, Footprint):
// `herd gateway --workers 1` (one process) against `--workers 2` (a primary and two
// workers), each following a stand-in control plane to one tiny Node upstream, with wrk
// (2 threads, 64 connections). Rounds alternate between the two so that other load on
// the machine falls on both; for each it prints req/s, p50 and p99, the gateway's CPU
// per request (all its processes, from /proc), and its RSS idle and after the load.
//
// Usage: node bench/gateway-workers.ts [ROUNDS (default 3)] [SECONDS per round (default 8)]

import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages } from "../scripts/ensure-tools.ts";
import { BENCH_HOST, benchObjects, startBenchControlPlane } from "./gateway-control-plane.ts";
import {
  cleanup,
  freePort,
  groupCpuSeconds,
  groupRss,
  onCleanup,
  portOf,
  ROOT,
  removeOnCleanup,
  startChild,
  stopChild,
  untilServes,
  wrkPercentile,
} from "./harness.ts";

const ROUNDS = Number(process.argv[2] ?? 3);
const SECONDS = Number(process.argv[3] ?? 8);
const HEADERS = { Host: BENCH_HOST };

interface Round {
  rps: number;
  p50: number;
  p99: number;
  cpuUsPerRequest: number;
}

async function main(): Promise<void> {
  const { wrk } = await ensureDebianPackages({ wrk: "wrk" });
  const base = mkdtempSync(join(tmpdir(), "herd-bench-workers-"));
  removeOnCleanup(base);
  const upstream = startChild("upstream", process.execPath, [join(ROOT, "bench/gateway-upstream.ts")]);
  const controlPlane = await startBenchControlPlane("bench-token", benchObjects(await portOf(upstream)));
  onCleanup(controlPlane.close);
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  console.log(`bench gateway-workers: ${ROUNDS} rounds of ${SECONDS} s each; load average before: ${load}`);
  const results = new Map<number, Round[]>([
    [1, []],
    [2, []],
  ]);
  for (let round = 0; round < ROUNDS; round++) {
    for (const workers of [1, 2]) {
      const port = await freePort();
      const gateway = startChild(`gateway --workers ${workers}`, process.execPath, [
        join(ROOT, "src/cli/main.ts"),
        "gateway",
        "--server",
        controlPlane.url,
        "--token",
        "bench-token",
        "--port",
        String(port),
        "--host",
        "127.0.0.1",
        "--data",
        join(base, `gateway-${workers}`),
        "--metrics-port",
        "off",
        "--workers",
        String(workers),
      ]);
      const url = `http://127.0.0.1:${port}/`;
      // Several answers on fresh connections: with workers, each must have the table.
      for (let i = 0; i < 20; i++) await untilServes(url, HEADERS, gateway);
      const pgid = gateway.process.pid as number;
      const idle = groupRss(pgid);
      const run = async (seconds: number) => {
        const child = startChild("wrk", wrk, [
          "-t2",
          "-c64",
          `-d${seconds}s`,
          "--latency",
          "-H",
          `Host: ${BENCH_HOST}`,
          url,
        ]);
        await child.exited;
        return child.output;
      };
      await run(2); // warm-up
      const cpuBefore = groupCpuSeconds(pgid);
      const out = await run(SECONDS);
      const cpu = groupCpuSeconds(pgid) - cpuBefore;
      const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
      const result: Round = {
        rps: Number(/^Requests\/sec:\s+([\d.]+)/m.exec(out)?.[1] ?? Number.NaN),
        p50: wrkPercentile(out, "50"),
        p99: wrkPercentile(out, "99"),
        cpuUsPerRequest: requests > 0 ? (cpu * 1e6) / requests : Number.NaN,
      };
      results.get(workers)?.push(result);
      console.log(
        `round ${round + 1}, --workers ${workers}: ${Math.round(result.rps)} req/s, p50 ${result.p50.toFixed(1)} ms, ` +
          `p99 ${result.p99.toFixed(1)} ms, ${Math.round(result.cpuUsPerRequest)} µs CPU/request; ` +
          `RSS idle ${idle}, after the load ${groupRss(pgid)}`,
      );
      await stopChild(gateway);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const one = results.get(1) ?? [];
  const two = results.get(2) ?? [];
  const rps1 = median(one.map((r) => r.rps));
  const rps2 = median(two.map((r) => r.rps));
  console.log(
    `median: --workers 1 ${Math.round(rps1)} req/s (p99 ${median(one.map((r) => r.p99)).toFixed(1)} ms), ` +
      `--workers 2 ${Math.round(rps2)} req/s (p99 ${median(two.map((r) => r.p99)).toFixed(1)} ms): ` +
      `one process serves ${(rps1 / rps2).toFixed(2)}× the req/s of a primary and two workers`,
  );
  console.log("note: wrk, the upstream and the gateway share this machine's cores.");
}

try {
  await main();
} finally {
  await cleanup();
}
process.exit(0);
