// The open-loop load client of bench:gateway's fixed-rate passes: compiles
// bench/gateway-open-loop.c with Debian's gcc (installed when missing) into a
// directory the caller removes, runs it, and reads its JSON into the same
// RateResult as h2load's (bench/gateway-rate.ts), so the two are printed side
// by side. Why open loop, and how it measures: the comment atop the C file.

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { ensureDebianPackages } from "../scripts/ensure-tools.ts";
import type { RateResult } from "./gateway-rate.ts";
import { ROOT, startChild } from "./harness.ts";

const SOURCE = join(ROOT, "bench/gateway-open-loop.c");

/**
 * Compiles the client into `dir` and returns the binary's path. gcc and the C
 * library's headers come from Debian (`libc6-dev`, found by its `gencat`,
 * which the package brings with it: ensureDebianPackages looks for binaries).
 */
export async function compileOpenLoop(dir: string): Promise<string> {
  const { gcc } = await ensureDebianPackages({ gcc: "gcc", gencat: "libc6-dev" });
  const binary = join(dir, "gateway-open-loop");
  const r = spawnSync(gcc as string, ["-O2", "-Wall", "-Wextra", "-o", binary, SOURCE], { encoding: "utf8" });
  if (r.status !== 0)
    throw new Error(`gcc could not compile ${SOURCE} (${r.status ?? r.signal}):\n${r.stderr}`);
  return binary;
}

/** What the client prints: counts, and latencies in µs from each request's due time. */
interface OpenLoopOutput {
  rate: number;
  seconds: number;
  scheduled: number;
  sent: number;
  ok: number;
  non2xx: number;
  errors: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  sendDelayP99: number;
  clientLagP99: number;
}

/**
 * A RateResult (ms) with how late requests were written (p99): `sendDelayP99` for any reason (no free
 * connection: the target is slow), `clientLagP99` with a connection free (the client itself was late: the
 * machine was busy, and a latency then is the machine's).
 */
export type OpenLoopResult = RateResult & { sendDelayP99: number; clientLagP99: number };

/** The client's arguments: `rate` req/s evenly spaced over `connections`, `warmupSeconds` not counted. */
export function openLoopArgs(options: {
  url: string;
  headers: Record<string, string>;
  rate: number;
  seconds: number;
  warmupSeconds: number;
  connections: number;
}): string[] {
  return [
    ...["-r", String(options.rate), "-d", String(options.seconds), "-w", String(options.warmupSeconds)],
    ...["-c", String(options.connections)],
    ...Object.entries(options.headers).flatMap(([name, value]) => ["-H", `${name}: ${value}`]),
    options.url,
  ];
}

/** The client's JSON as a RateResult (ms); `reached` false when fewer than 95 % of the requests due were answered. */
export function openLoopResult(out: OpenLoopOutput): OpenLoopResult {
  const answered = out.ok + out.non2xx;
  const achieved = answered / out.seconds;
  const reached = answered >= out.scheduled * 0.95;
  return {
    rate: out.rate,
    completed: answered,
    non2xx: out.non2xx,
    errors: out.errors,
    achieved,
    p50: out.p50 / 1000,
    p99: out.p99 / 1000,
    p999: out.p999 / 1000,
    max: out.max / 1000,
    sendDelayP99: out.sendDelayP99 / 1000,
    clientLagP99: out.clientLagP99 / 1000,
    reached,
    ...(reached ? {} : { why: `${answered} of ${out.scheduled} requests answered` }),
  };
}

/** Runs the compiled client against `target` at `rate` req/s and reads its result. */
export async function runOpenLoop(
  binary: string,
  target: { url: string; headers: Record<string, string> },
  options: { rate: number; seconds: number; warmupSeconds: number; connections: number },
): Promise<OpenLoopResult> {
  const child = startChild("open-loop client", binary, openLoopArgs({ ...options, ...target }));
  await child.exited;
  const line = child.output.split("\n").find((l) => l.startsWith("{"));
  if (child.process.exitCode !== 0 || !line)
    throw new Error(`the open-loop client failed (${child.process.exitCode}):\n${child.output}`);
  return openLoopResult(JSON.parse(line) as OpenLoopOutput);
}
