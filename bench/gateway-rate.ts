// h2load in bench:gateway's fixed-rate passes (Debian's nghttp2-client):
// HTTP/1.1, CONNECTIONS clients each sending RATE / CONNECTIONS requests a
// second, every request's latency in h2load's log file; `reached` is false
// when fewer requests were answered than the rate asks for. Its figure is
// printed beside the open-loop client's (gateway-open-loop.ts), which
// carries the verdict: each h2load client sends on its own timer, the timers
// fire together, and a connection waits for its answer before it sends
// again, so h2load measures bursts and sends less to a target that stalls.
// bench/tracing-cost.ts drives its fixed rate with it too.

import { readFileSync, rmSync } from "node:fs";
import { startChild } from "./harness.ts";

export interface RateResult {
  /** Asked rate, req/s. */
  rate: number;
  /** Requests answered in the measured window (any status). */
  completed: number;
  /** Answered with a status outside 2xx. */
  non2xx: number;
  /** Errored (socket) or timed out, per h2load. */
  errors: number;
  /** Completed requests per second of the measured window. */
  achieved: number;
  /** Latency from sending to the end of the response, ms. */
  p50: number;
  p99: number;
  p999: number;
  max: number;
  reached: boolean;
  /** Why `reached` is false. */
  why?: string;
}

/** The h2load arguments for `rate` req/s over `connections` connections. */
export function h2loadArgs(options: {
  url: string;
  /** Request headers; Host becomes h2load's :authority. */
  headers: Record<string, string>;
  rate: number;
  seconds: number;
  warmupSeconds: number;
  connections: number;
  logFile: string;
}): string[] {
  const perClient = Math.max(1, Math.round(options.rate / options.connections));
  return [
    "--h1",
    ...["-c", String(options.connections), "-t", "1"],
    `--rps=${perClient}`,
    ...["-D", `${options.seconds}s`, `--warm-up-time=${options.warmupSeconds}s`],
    // h2load makes Host from :authority; a second Host header would be refused (400) by a proxy.
    ...Object.entries(options.headers).flatMap(([name, value]) => [
      "-H",
      name.toLowerCase() === "host" ? `:authority: ${value}` : `${name}: ${value}`,
    ]),
    `--log-file=${options.logFile}`,
    options.url,
  ];
}

/** Reads h2load's output and log file into a RateResult. */
export function rateResult(rate: number, seconds: number, output: string, logFile: string): RateResult {
  const latencies: number[] = [];
  let non2xx = 0;
  for (const line of readFileSync(logFile, "utf8").split("\n")) {
    const [, status, micros] = line.split("\t");
    if (micros === undefined) continue;
    latencies.push(Number(micros) / 1000);
    if (!/^2\d\d$/.test(status)) non2xx++;
  }
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? NaN;
  const m =
    /requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
      output,
    );
  // h2load's "failed" counts non-2xx answers too; those are counted from the log instead.
  const errors = m ? Number(m[2]) + Number(m[3]) : 0;
  const achieved = latencies.length / seconds;
  const reached = achieved >= rate * 0.95;
  return {
    rate,
    completed: latencies.length,
    non2xx,
    errors,
    achieved,
    p50: at(0.5),
    p99: at(0.99),
    p999: at(0.999),
    max: latencies.at(-1) ?? NaN,
    reached,
    ...(reached ? {} : { why: `${Math.round(achieved)} of ${Math.round(rate)} req/s answered` }),
  };
}

/** Runs h2load at `rate` req/s against `target` (warm-up first, not counted) and reads its result. */
export async function runH2load(
  h2load: string,
  target: { url: string; headers: Record<string, string> },
  options: { rate: number; seconds: number; warmupSeconds: number; connections: number; logFile: string },
): Promise<RateResult> {
  // h2load appends to its log file: a run's latencies must not count the last run's.
  rmSync(options.logFile, { force: true });
  const child = startChild("h2load", h2load, h2loadArgs({ ...options, ...target }));
  await child.exited;
  if (child.process.exitCode !== 0)
    throw new Error(`h2load failed (${child.process.exitCode}):\n${child.output}`);
  return rateResult(options.rate, options.seconds, child.output, options.logFile);
}
