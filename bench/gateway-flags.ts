// What a V8 flag costs the gateway (docs/benchmarks.md, Footprint): one `herd gateway`
// process with V8's defaults against one started with FLAG (say --max-semi-space-size=1),
// each following a stand-in control plane to one tiny Node upstream, with wrk
// (2 threads, 64 connections). Rounds alternate between the two so that other load on
// the machine falls on both; for each it prints req/s, p50 and p99, the gateway's CPU
// per request (all its processes, from /proc), and its RSS idle and after the load.
//
// Usage: node bench/gateway-flags.ts [ROUNDS (default 3)] [SECONDS per round (default 8)] [FLAG]

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
const FLAG = process.argv[4] ?? "--max-semi-space-size=1";
const HEADERS = { Host: BENCH_HOST };

interface Round {
  rps: number;
  p50: number;
  p99: number;
  cpuUsPerRequest: number;
}

async function main(): Promise<void> {
  const { wrk } = await ensureDebianPackages({ wrk: "wrk" });
  const base = mkdtempSync(join(tmpdir(), "herd-bench-flags-"));
  removeOnCleanup(base);
  const upstream = startChild("upstream", process.execPath, [join(ROOT, "bench/gateway-upstream.ts")]);
  const controlPlane = await startBenchControlPlane("bench-token", benchObjects(await portOf(upstream)));
  onCleanup(controlPlane.close);
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  console.log(
    `bench gateway-flags (${FLAG}): ${ROUNDS} rounds of ${SECONDS} s each; load average before: ${load}`,
  );
  const results = new Map<number, Round[]>([
    [1, []],
    [2, []],
  ]);
  for (let round = 0; round < ROUNDS; round++) {
    for (const variant of [1, 2]) {
      // 1: V8's defaults, 2: FLAG.
      const flags = variant === 1 ? [] : [FLAG];
      const port = await freePort();
      const gateway = startChild(`gateway ${flags.join(" ")}`, process.execPath, [
        ...flags,
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
        join(base, `gateway-${variant}`),
        "--metrics-port",
        "off",
        "--workers",
        "1",
      ]);
      const url = `http://127.0.0.1:${port}/`;
      // Several answers on fresh connections, so the table is there before the load.
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
      results.get(variant)?.push(result);
      console.log(
        `round ${round + 1}, ${variant === 1 ? "defaults" : FLAG}: ${Math.round(result.rps)} req/s, p50 ${result.p50.toFixed(1)} ms, ` +
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
    `median: defaults ${Math.round(rps1)} req/s (p99 ${median(one.map((r) => r.p99)).toFixed(1)} ms), ` +
      `${FLAG} ${Math.round(rps2)} req/s (p99 ${median(two.map((r) => r.p99)).toFixed(1)} ms): ` +
      `${(rps2 / rps1).toFixed(2)}× the req/s with the flag`,
  );
  console.log("note: wrk, the upstream and the gateway share this machine's cores.");
}

try {
  await main();
} finally {
  await cleanup();
}
process.exit(0);
