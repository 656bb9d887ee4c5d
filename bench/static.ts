// bench:static — the data plane without its control plane (docs/availability.md).
// Steady keep-alive traffic (a bounded Node client, test/e2e/harness.ts's
// steadyTraffic: RATE req/s over CONNECTIONS connections, nothing retried)
// goes through a real `herd up`'s gateway to examples/hello while:
//   1. herd up is killed with kill -9, stays away 10 s, and is started again;
//   2. herd up --keep-apps is stopped and started on a newer checkout (the
//      new gateway takes the ports over, the old one drains);
//   3. herd up is killed, and 1 s later one of hello's two instances too;
//      the control plane stays away 60 s.
// For each it prints the requests sent, those that failed (and why), the
// share that failed, and throughput while the control plane was away against
// throughput before (its peer in the same run). Goals: 0 failed and one
// gateway afterwards for 1 and 2; for 3, failures only until the dead
// instance is ejected, and how long that took.
//
// Each case's verdict counts only when the traffic ran (at least a tenth of RATE before the event).
//
// Usage: node bench/static.ts [--quick] [--strict]   (--quick: 3 s and 10 s away instead of 10 s and 60 s;
// --strict: exit 1 when a goal is missed or not counted)

import { rmSync } from "node:fs";
import { join } from "node:path";
import type { Instance } from "../src/model/objects.ts";
import {
  cleanupHerd,
  freePort,
  gatewayPids,
  gatewayRecord,
  type Herd,
  killRecordedInstances,
  newerCheckout,
  ROOT,
  runCli,
  sleep,
  startHerd,
  steadyTraffic,
  type Traffic,
  type TrafficCounts,
  waitFor,
} from "../test/e2e/harness.ts";
import { verdict, verdictSummary } from "./harness.ts";

const QUICK = process.argv.includes("--quick");
const RATE = 1000;
const CONNECTIONS = 16;
const BEFORE_S = 5;
const AWAY_S = QUICK ? 3 : 10;
const AWAY_LONG_S = QUICK ? 10 : 60;
/** Case 3: the last failed GET after the instance's death comes within this (its ejection). */
const EJECT_WITHIN_MS = 5000;

const herds: Herd[] = [];
const dirs: string[] = [];
const loads: Traffic[] = [];

async function cleanup(): Promise<void> {
  for (const l of loads.splice(0)) await l.stop();
  for (const h of herds.splice(0)) await cleanupHerd(h, { keepDir: true });
  for (const d of dirs.splice(0)) {
    killRecordedInstances(d);
    rmSync(d, { recursive: true, force: true });
  }
}

process.once("SIGINT", () => {
  void cleanup().finally(() => process.exit(130));
});

/** herd up with examples/hello, and steady traffic to it for BEFORE_S seconds. */
async function helloUnderTraffic(extraArgs: string[]): Promise<{ herd: Herd; traffic: Traffic }> {
  const herd = await startHerd({ extraArgs });
  herds.push(herd);
  dirs.push(herd.dataDir);
  const d = await herd.cli(["deploy", join(ROOT, "examples/hello")]);
  if (d.code !== 0) throw new Error(`deploy failed: ${d.stdout}${d.stderr}`);
  const traffic = steadyTraffic(herd.gatewayUrl, "hello.localhost", {
    rate: RATE,
    connections: CONNECTIONS,
    maxSeconds: 300,
  });
  loads.push(traffic);
  await sleep(BEFORE_S * 1000);
  return { herd, traffic };
}

/** Answered requests a second over the whole seconds [from, to) of the traffic. */
function rate(counts: TrafficCounts, fromMs: number, toMs: number): number {
  const seconds = counts.perSecond.slice(Math.ceil(fromMs / 1000), Math.floor(toMs / 1000));
  return seconds.length === 0 ? 0 : seconds.reduce((a, b) => a + b, 0) / seconds.length;
}

/** Why a case's figures do not count (the load did not run, so nothing could fail), or false. */
function notDone(counts: TrafficCounts): string | false {
  const before = rate(counts, 1000, BEFORE_S * 1000);
  return before < RATE / 10 && `the traffic ran at ${before.toFixed(0)} req/s before, not ${RATE}`;
}

function report(
  title: string,
  counts: TrafficCounts,
  window: { name: string; fromMs: number; toMs: number },
  extra: string[] = [],
): void {
  const before = rate(counts, 1000, BEFORE_S * 1000);
  const during = rate(counts, window.fromMs, window.toMs);
  const failures = Object.entries(counts.failures)
    .map(([why, n]) => `${why} ×${n}`)
    .join(", ");
  process.stdout.write(
    [
      `\n${title}`,
      `  requests:    ${counts.total}`,
      `  failed:      ${counts.failed} (${((100 * counts.failed) / Math.max(1, counts.total)).toFixed(3)} %)${failures ? `: ${failures}` : ""}`,
      `  throughput:  ${during.toFixed(0)} req/s ${window.name} vs ${before.toFixed(0)} req/s before (${(during / Math.max(1, before)).toFixed(2)}×)`,
      ...extra.map((line) => `  ${line}`),
      "",
    ].join("\n"),
  );
}

async function crashAndRestart(): Promise<void> {
  const port = String(await freePort());
  const { herd, traffic } = await helloUnderTraffic(["--port", port]);
  const gateway = gatewayRecord(herd.dataDir).pid;
  const killedAt = traffic.elapsed();
  await herd.kill9();
  await sleep(AWAY_S * 1000);
  const restartAt = traffic.elapsed();
  const second = await startHerd({ dataDir: herd.dataDir, extraArgs: ["--port", port] });
  herds.push(second);
  const upAt = traffic.elapsed();
  await sleep(3000);
  const counts = await traffic.stop();
  const after = gatewayPids(herd.dataDir);
  const adopted = after.length === 1 && after[0] === gateway;
  report(
    `1. herd up killed (kill -9), ${AWAY_S} s away, started again (goal: 0 failed, one gateway)`,
    counts,
    { name: "while away", fromMs: killedAt, toMs: restartAt },
    [
      `herd up back in ${((upAt - restartAt) / 1000).toFixed(1)} s; gateways afterwards: ${after.length} ` +
        `(${adopted ? "the same one, adopted" : `pids ${after.join(", ")}`})`,
      `goal: ${verdict("1. kill -9 and restart: 0 failed, the gateway adopted", counts.failed === 0 && adopted, notDone(counts))}`,
    ],
  );
  await cleanup();
}

async function upgrade(): Promise<void> {
  const port = String(await freePort());
  const { herd, traffic } = await helloUnderTraffic(["--port", port, "--keep-apps"]);
  const old = gatewayRecord(herd.dataDir).pid;
  const stopAt = traffic.elapsed();
  await herd.stop();
  await sleep(2000);
  const checkout = newerCheckout();
  dirs.push(checkout);
  const startAt = traffic.elapsed();
  const second = await startHerd({
    dataDir: herd.dataDir,
    root: checkout,
    extraArgs: ["--port", port, "--keep-apps"],
  });
  herds.push(second);
  const successor = gatewayRecord(herd.dataDir).pid;
  const handedAt = traffic.elapsed();
  await waitFor(
    "the old gateway to exit",
    () => {
      try {
        process.kill(old, 0);
        return false;
      } catch {
        return true;
      }
    },
    30_000,
  );
  const drainedAt = traffic.elapsed();
  await sleep(2000);
  const counts = await traffic.stop();
  const after = gatewayPids(herd.dataDir);
  report(
    "2. herd up --keep-apps stopped, started again on a newer checkout (goal: 0 failed)",
    counts,
    { name: "from the stop to the old gateway's exit", fromMs: stopAt, toMs: drainedAt },
    [
      `new herd up ready ${((handedAt - startAt) / 1000).toFixed(1)} s after its start; the old gateway drained and exited ` +
        `${((drainedAt - handedAt) / 1000).toFixed(1)} s after the handoff`,
      `gateways afterwards: ${after.length} (${after.length === 1 && after[0] === successor ? "the new one" : `pids ${after.join(", ")}`})`,
      `goal: ${verdict("2. upgrade with --keep-apps: 0 failed, one gateway", counts.failed === 0 && after.length === 1 && after[0] === successor, notDone(counts))}`,
    ],
  );
  await second.stop();
  await runCli(["down", "--data", herd.dataDir]);
  await cleanup();
}

async function instanceDiesWhileAway(): Promise<void> {
  const { herd, traffic } = await helloUnderTraffic([]);
  const items = (await herd.api<{ items: Instance[] }>("GET", "/apps/hello/instances")).body.items;
  const victim = items[0];
  // POSTs too: a refused GET is retried on another instance, a POST never is, so these fail until the ejection.
  const posts = steadyTraffic(herd.gatewayUrl, "hello.localhost", {
    rate: RATE / 10,
    connections: 2,
    maxSeconds: 300,
    method: "POST",
  });
  loads.push(posts);
  await sleep(1000);
  const crashAt = traffic.elapsed();
  await herd.kill9();
  await sleep(1000);
  const killedAt = traffic.elapsed();
  const postsKilledAt = posts.elapsed() - (traffic.elapsed() - killedAt);
  process.kill(-(victim.pid ?? 0), "SIGKILL");
  await sleep((AWAY_LONG_S - 1) * 1000);
  const counts = await traffic.stop();
  const postCounts = await posts.stop();
  const lastPost = postCounts.failedAt.filter((t) => t >= postsKilledAt).at(-1);
  const last = counts.failedAt.filter((t) => t >= killedAt).at(-1);
  const metricsUrl = gatewayRecord(herd.dataDir).metricsUrl;
  const metrics = metricsUrl ? await (await fetch(metricsUrl)).text() : "";
  const ejected = /^herd_gateway_ejected_endpoints\{[^}]*hello[^}]*\} (\d+)$/m.exec(metrics)?.[1] ?? "?";
  report(
    `3. herd up killed; 1 s later one of two hello instances too; ${AWAY_LONG_S} s away (goal: failures only until ejection)`,
    counts,
    { name: "after the instance died", fromMs: killedAt + 1000, toMs: crashAt + AWAY_LONG_S * 1000 },
    [
      `failed after the instance died: ${counts.failedAt.filter((t) => t >= killedAt).length}` +
        (last === undefined ? "" : `, the last ${(last - killedAt).toFixed(0)} ms after its death`),
      `POSTs beside (never retried by the gateway): ${postCounts.failed} of ${postCounts.total} failed` +
        (lastPost === undefined
          ? ""
          : `, the last ${(lastPost - postsKilledAt).toFixed(0)} ms after the death`) +
        ` (each of the gateway's worker processes ejects after 3 refused connections in a row)`,
      `ejected instances (gateway metrics): ${ejected}`,
      // "Only until the ejection": ejecting takes 3 refused connections per worker, milliseconds; 5 s
      // leaves room for a busy machine, and the rest of the minute away must be clean.
      `goal: ${verdict(
        "3. an instance dies while away: it is ejected, no failed GET 5 s after its death",
        Number(ejected) >= 1 && (last === undefined || last - killedAt <= EJECT_WITHIN_MS),
        notDone(counts),
      )} (ejected, and no failed GET more than ${EJECT_WITHIN_MS / 1000} s after the death)`,
    ],
  );
  await runCli(["down", "--data", herd.dataDir]);
  await cleanup();
}

try {
  process.stdout.write(
    `bench:static: ${RATE} req/s over ${CONNECTIONS} keep-alive connections to examples/hello through herd up's gateway (Node client, nothing retried)\n`,
  );
  await crashAndRestart();
  await upgrade();
  await instanceDiesWhileAway();
} finally {
  await cleanup();
}
process.exit(verdictSummary("bench:static"));
