// Two configurations of one `herd gateway` process group against each other
// (bench/gateway-workers.ts, bench/gateway-flags.ts): each follows a stand-in
// control plane to one tiny Node upstream and takes wrk's load (2 threads, 64
// connections). Rounds paired in time: both variants each round, the order
// reversed every other round (A B, B A, …), so other load on the machine falls
// on both; the ratio is the median of the rounds' own ratios. For each run it
// prints req/s, p50 and p99, the gateway's CPU per request (all its processes,
// from /proc) and its RSS idle and after the load. A comparison counts only
// when no request failed (wrk's non-2xx and socket errors); `--strict` makes
// one that did not count exit 1.

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
  median,
  onCleanup,
  pairedMedian,
  pairedRounds,
  portOf,
  ROOT,
  removeOnCleanup,
  startChild,
  stopChild,
  untilServes,
  verdict,
  verdictSummary,
  wrkPercentile,
} from "./harness.ts";

const HEADERS = { Host: BENCH_HOST };

/** One configuration: its name, Node's flags and `herd gateway`'s extra arguments. */
export interface Variant {
  name: string;
  nodeFlags: string[];
  args: string[];
}

interface Run {
  rps: number;
  p50: number;
  p99: number;
  cpuUsPerRequest: number;
  failed: number;
}

/** Measures `a` and `b` in `rounds` paired rounds of `seconds`; prints the figures; returns the exit code. */
export async function compareGateways(
  bench: string,
  a: Variant,
  b: Variant,
  rounds: number,
  seconds: number,
): Promise<number> {
  try {
    const { wrk } = await ensureDebianPackages({ wrk: "wrk" });
    const base = mkdtempSync(join(tmpdir(), `herd-${bench}-`));
    removeOnCleanup(base);
    const upstream = startChild("upstream", process.execPath, [join(ROOT, "bench/gateway-upstream.ts")]);
    const controlPlane = await startBenchControlPlane("bench-token", benchObjects(await portOf(upstream)));
    onCleanup(controlPlane.close);
    const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
    console.log(
      `${bench}: ${a.name} against ${b.name}, ${rounds} paired rounds of ${seconds} s; load average before: ${load}`,
    );
    const variants = new Map([
      [a.name, a],
      [b.name, b],
    ]);
    const all = await pairedRounds([a.name, b.name], rounds, async (name, round): Promise<Run> => {
      const v = variants.get(name) as Variant;
      const port = await freePort();
      const gateway = startChild(`gateway ${v.name}`, process.execPath, [
        ...v.nodeFlags,
        join(ROOT, "src/cli/main.ts"),
        "gateway",
        ...["--server", controlPlane.url, "--token", "bench-token", "--port", String(port)],
        ...["--host", "127.0.0.1", "--data", join(base, `gateway-${round}-${v.name.replace(/\W+/g, "_")}`)],
        ...["--metrics-port", "off", ...v.args],
      ]);
      try {
        const url = `http://127.0.0.1:${port}/`;
        // Several answers on fresh connections: with workers, each must have the table.
        for (let i = 0; i < 20; i++) await untilServes(url, HEADERS, gateway);
        const pgid = gateway.process.pid as number;
        const idle = groupRss(pgid);
        const wrkRun = async (s: number) => {
          const child = startChild("wrk", wrk, [
            "-t2",
            "-c64",
            `-d${s}s`,
            "--latency",
            "-H",
            `Host: ${BENCH_HOST}`,
            url,
          ]);
          await child.exited;
          return child.output;
        };
        await wrkRun(2); // warm-up
        const cpuBefore = groupCpuSeconds(pgid);
        const out = await wrkRun(seconds);
        const cpu = groupCpuSeconds(pgid) - cpuBefore;
        const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
        const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
        const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
        const r: Run = {
          rps: Number(/^Requests\/sec:\s+([\d.]+)/m.exec(out)?.[1] ?? Number.NaN),
          p50: wrkPercentile(out, "50"),
          p99: wrkPercentile(out, "99"),
          cpuUsPerRequest: requests > 0 ? (cpu * 1e6) / requests : Number.NaN,
          failed: non2xx + (socket ? socket.slice(1).reduce((n, x) => n + Number(x), 0) : 0),
        };
        console.log(
          `round ${round}, ${v.name}: ${Math.round(r.rps)} req/s, p50 ${r.p50.toFixed(1)} ms, ` +
            `p99 ${r.p99.toFixed(1)} ms, ${Math.round(r.cpuUsPerRequest)} µs CPU/request; ` +
            `RSS idle ${idle}, after the load ${groupRss(pgid)}${r.failed ? `  ! ${r.failed} failed requests` : ""}`,
        );
        return r;
      } finally {
        await stopChild(gateway);
      }
    });
    const of = (name: string) => all.map((r) => r.get(name) as Run);
    const rps = pairedMedian(all, (r) => (r.get(b.name) as Run).rps / (r.get(a.name) as Run).rps);
    const cpu = pairedMedian(
      all,
      (r) => (r.get(b.name) as Run).cpuUsPerRequest / (r.get(a.name) as Run).cpuUsPerRequest,
    );
    const failed = [...of(a.name), ...of(b.name)].reduce((n, r) => n + r.failed, 0);
    const summary = (name: string) =>
      `${name} ${Math.round(median(of(name).map((r) => r.rps)))} req/s (p99 ${median(of(name).map((r) => r.p99)).toFixed(1)} ms)`;
    console.log(`medians: ${summary(a.name)}, ${summary(b.name)}`);
    console.log(
      `${b.name} against ${a.name}: ${rps.median.toFixed(2)}× the req/s (rounds: ${rps.each.map((x) => x.toFixed(2)).join(" ")}), ` +
        `${cpu.median.toFixed(2)}× the CPU per request (rounds: ${cpu.each.map((x) => x.toFixed(2)).join(" ")}); ` +
        `no request failed: ${verdict(`${bench}: no request failed`, failed === 0, failed > 0 && `${failed} requests failed`)}`,
    );
    console.log("note: wrk, the upstream and the gateway share this machine's cores.");
    return verdictSummary(bench);
  } finally {
    await cleanup();
  }
}
