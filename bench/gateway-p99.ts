// The added p99 alone (issue 11), quicker than `npm run bench:gateway`: no wrk
// pass, a given rate. Direct, nginx (one worker per core, as bench:gateway
// starts it) and the gateway with every policy of bench:gateway's (d) on,
// measured back to back in paired rounds with the open-loop client
// (bench/gateway-open-loop.c); with BENCH_BASELINE=DIR the (d) of another
// checkout of herd (say the main branch) too, as (d0), in the same rounds.
// Each added p99 is the median of the rounds' own differences (target −
// direct, same round); the client's own lag is printed beside each run.
//
// Usage: node bench/gateway-p99.ts [RATE (3000)] [ROUNDS (3)] [SECONDS (6)]
// Env: BENCH_CONNECTIONS (64), BENCH_BASELINE, BENCH_GATEWAY_NODE_OPTIONS
// (NODE_OPTIONS of the gateways under test, e.g. --max-semi-space-size=16).

import { mkdtempSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages } from "../scripts/ensure-tools.ts";
import type { StoredObject } from "../src/store/store.ts";
import { benchObjects, startBenchGateway } from "./gateway-control-plane.ts";
import { compileOpenLoop, type OpenLoopResult, runOpenLoop } from "./gateway-open-loop.ts";
import { POLICY_HEADERS, withPolicies } from "./gateway-policies.ts";
import {
  benchArgs,
  cleanup,
  median,
  pairedRounds,
  portOf,
  ROOT,
  removeOnCleanup,
  startChild,
  startNginx,
} from "./harness.ts";

const [rateArg = "3000", roundsArg = "3", secondsArg = "6"] = benchArgs();
const RATE = Number(rateArg);
const ROUNDS = Number(roundsArg);
const SECONDS = Number(secondsArg);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const BASELINE = process.env.BENCH_BASELINE;
const NODE_OPTIONS = process.env.BENCH_GATEWAY_NODE_OPTIONS;

interface Started {
  url: string;
  headers: Record<string, string>;
}

/** (d): `herd gateway` from the checkout at `root` with every policy on, as bench:gateway starts it. */
const startGateway = (base: string, id: string, objects: StoredObject[], root: string): Promise<Started> =>
  startBenchGateway({
    base,
    id,
    name: id,
    objects,
    headers: POLICY_HEADERS,
    root,
    ...(NODE_OPTIONS ? { env: { NODE_OPTIONS } } : {}),
  });

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
const ms = (n: number) => n.toFixed(2);

async function main(): Promise<void> {
  const { nginx } = await ensureDebianPackages({ nginx: "nginx" });
  const base = mkdtempSync(join(tmpdir(), "herd-bench-p99-"));
  removeOnCleanup(base);
  const openLoop = await compileOpenLoop(base);
  const upstream = startChild("upstream", process.execPath, [join(ROOT, "bench/gateway-upstream.ts")]);
  const upstreamPort = await portOf(upstream);
  const objects = withPolicies(benchObjects(upstreamPort));
  const targets = new Map<string, Started>([
    ["a direct", { url: `http://127.0.0.1:${upstreamPort}/`, headers: {} }],
    [
      "b nginx",
      { url: (await startNginx(nginx, base, upstreamPort, availableParallelism())).url, headers: {} },
    ],
    ["d gateway", await startGateway(base, "d", objects, ROOT)],
  ]);
  if (BASELINE !== undefined) targets.set("d0 baseline", await startGateway(base, "d0", objects, BASELINE));
  console.log(
    `bench gateway-p99: ${RATE} req/s open loop, ${CONNECTIONS} connections, ${ROUNDS} rounds of ${SECONDS} s ` +
      `(+1 s warm-up); ${NODE_OPTIONS ? `gateway NODE_OPTIONS ${NODE_OPTIONS}; ` : ""}load ${load()}`,
  );
  const rounds = await pairedRounds([...targets.keys()], ROUNDS, async (id, round) => {
    const r = await runOpenLoop(openLoop, targets.get(id) as Started, {
      rate: RATE,
      seconds: SECONDS,
      warmupSeconds: 1,
      connections: CONNECTIONS,
    });
    console.log(
      `round ${round} ${id.padEnd(12)} p50 ${ms(r.p50)} p99 ${ms(r.p99)} p99.9 ${ms(r.p999)} ms, ` +
        `client lag p99 ${ms(r.clientLagP99)} ms${r.errors + r.non2xx ? `, ${r.errors + r.non2xx} failed` : ""}` +
        `${r.reached ? "" : `, NOT HELD (${r.why})`} (load ${load()})`,
    );
    return r;
  });
  for (const id of [...targets.keys()].slice(1)) {
    const each = rounds.map(
      (r) => (r.get(id) as OpenLoopResult).p99 - (r.get("a direct") as OpenLoopResult).p99,
    );
    console.log(`${id.padEnd(12)} added p99 ${ms(median(each))} ms (rounds ${each.map(ms).join(" ")})`);
  }
  console.log(`load at the end ${load()}`);
}

try {
  await main();
} finally {
  await cleanup();
}
