// Issue 12, "bad release under traffic → detected and rolled back" (goal ≤ 30 s,
// failed requests counted). One real `herd up`, an app whose v2 answers 500 to
// every second request (its health check passes, so its rollout succeeds),
// steady traffic through the gateway at 40 requests/s, measured twice in one run:
//
//   herd     the remediation engine, on its built-in rules, from the live figures
//            the gateways report each second
//   peer     a metric analysis in the style of Argo Rollouts / Flagger, run by this
//            bench against the same herd: an instant PromQL query of the app's 5xx
//            share over 1 m of the scraped gateway metrics, measured when the bad
//            release serves and then every INTERVAL s (60 s, as in those tools'
//            analysis examples; BENCH_PEER_INTERVAL_S), failing on the first
//            measurement over 5 %, then `herd rollback`. The engine is paused meanwhile.
//
// Each time is from the bad release serving (its deploy finished) to the
// rolled-back release serving; failed requests are those of that span.
// One pair (herd, then the peer): a round takes minutes, the peer's a minute or more.
// `node bench/autoscale-rollback.ts [--strict]`, or a section of `npm run bench:autoscale`.

import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { App, Event } from "../src/model/objects.ts";
import { writeFlakyApp, writeFlakyManifest } from "../test/e2e/flaky-app.ts";
import {
  cleanupHerd,
  type Herd,
  sleep,
  startHerd,
  steadyTraffic,
  type Traffic,
  waitFor,
} from "../test/e2e/harness.ts";
import { verdict, verdictSummary } from "./harness.ts";

const GOAL_S = 30;
const PEER_INTERVAL_S = Number(process.env.BENCH_PEER_INTERVAL_S ?? 60);
const HOST = "flaky.localhost";

export async function run(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "herd-bench-rollback-"));
  let herd: Herd | undefined;
  let traffic: Traffic | undefined;
  try {
    herd = await startHerd();
    const h = herd;
    const dir = writeFlakyApp(work);
    const deploy = async (bad: boolean) => {
      writeFlakyManifest(dir, HOST, bad);
      const r = await h.cli(["deploy", dir]);
      if (r.code !== 0) throw new Error(`deploy failed:\n${r.stdout}${r.stderr}`);
    };
    const release = async () => (await h.api<{ app: App }>("GET", "/apps/flaky")).body.app.release;

    await deploy(false);
    traffic = steadyTraffic(h.gatewayUrl, HOST, { connections: 4, rate: 40, maxSeconds: 600 });
    const t = traffic;
    // A steady minute's worth of traffic first, as a service in use has.
    await sleep(20_000);
    if (t.counts().failed > 0) throw new Error(`v1 fails requests: ${JSON.stringify(t.counts().failures)}`);

    // 1. herd's engine.
    await deploy(true);
    const a = phaseStart(t);
    const decided = await waitFor(
      "the engine's rollback decision",
      async () =>
        (await h.api<{ items: Event[] }>("GET", "/events?app=flaky&limit=500")).body.items.find(
          (e) => e.reason === "Remediation" && /rollback v2/.test(e.message),
        ),
      120_000,
    );
    const detectedS = (Date.parse(decided.time) - a.wall) / 1000;
    await waitFor("the rollback (v3) serving", async () => (await release()) === 3, 120_000);
    const herdRun = phaseEnd(t, a);
    await sleep(3000);

    // 2. The peer: a metric analysis every PEER_INTERVAL_S, then herd rollback.
    const paused = await h.cli(["remediate", "pause", "--app", "flaky"]);
    if (paused.code !== 0) throw new Error(paused.stderr);
    await deploy(true);
    const b = phaseStart(t);
    let measurements = 0;
    let share = 0;
    for (;;) {
      measurements++;
      share = await errorShare(h);
      if (share > 0.05) break;
      if (t.elapsed() - b.at > 600_000) throw new Error("the peer's analysis never failed");
      await sleep(PEER_INTERVAL_S * 1000);
    }
    const peerDetectedS = (t.elapsed() - b.at) / 1000;
    const rb = await h.cli(["rollback", "--app", "flaky"]);
    if (rb.code !== 0) throw new Error(`herd rollback failed:\n${rb.stdout}${rb.stderr}`);
    await waitFor("the peer's rollback (v5) serving", async () => (await release()) === 5, 120_000);
    const peerRun = phaseEnd(t, b);
    await t.stop();

    const [one, five] = loadavg();
    console.log(
      `load average ${one.toFixed(2)}, ${five.toFixed(2)} (figures move with it); traffic 40 req/s`,
    );
    console.log(
      `herd engine: detected in ${detectedS.toFixed(1)} s, rolled back and serving in ${herdRun.seconds.toFixed(1)} s ` +
        `(goal ≤ ${GOAL_S} s: ${verdict("rollback serving ≤ 30 s", herdRun.seconds <= GOAL_S, ranDry(herdRun))}); ` +
        `${herdRun.failed} of ${herdRun.total} requests failed`,
    );
    console.log(
      `peer (PromQL analysis every ${PEER_INTERVAL_S} s over the scraped metrics, then herd rollback): ` +
        `detected in ${peerDetectedS.toFixed(1)} s (${measurements} measurement(s), 5xx share ${(share * 100).toFixed(1)} %), ` +
        `rolled back and serving in ${peerRun.seconds.toFixed(1)} s; ${peerRun.failed} of ${peerRun.total} requests failed`,
    );
    console.log(
      `ratio peer / herd: time ×${(peerRun.seconds / herdRun.seconds).toFixed(1)}, ` +
        `failed requests ×${herdRun.failed > 0 ? (peerRun.failed / herdRun.failed).toFixed(1) : "∞"}`,
    );
  } finally {
    await traffic?.stop();
    await cleanupHerd(herd);
    rmSync(work, { recursive: true, force: true });
  }
}

/** The app's 5xx share over the last minute of scraped gateway metrics (0 without data). */
async function errorShare(h: Herd): Promise<number> {
  const q = `sum(rate(herd_gateway_requests_total{app="flaky",code=~"5.."}[1m])) / sum(rate(herd_gateway_requests_total{app="flaky"}[1m]))`;
  const r = await h.api<{ data?: { result: { value: [number, string] }[] } }>(
    "GET",
    `/prom/api/v1/query?query=${encodeURIComponent(q)}`,
  );
  const v = r.body.data?.result[0]?.value[1];
  return v === undefined || Number.isNaN(Number(v)) ? 0 : Number(v);
}

/** Why a phase does not count: its traffic did not run (fewer than a quarter of the 40 req/s asked). */
const ranDry = (p: ReturnType<typeof phaseEnd>) =>
  p.total < p.seconds * 10 && `${p.total} requests in ${p.seconds.toFixed(0)} s, not 40 req/s`;

const phaseStart = (t: Traffic) => ({ at: t.elapsed(), wall: Date.now(), counts: t.counts() });
function phaseEnd(t: Traffic, start: ReturnType<typeof phaseStart>) {
  const now = t.counts();
  return {
    seconds: (t.elapsed() - start.at) / 1000,
    failed: now.failed - start.counts.failed,
    total: now.total - start.counts.total,
  };
}

if (import.meta.main) {
  await run();
  process.exit(verdictSummary("bench autoscale-rollback"));
}
