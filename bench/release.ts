// Issue 14, "time from a bad canary step to abort (goal ≤ 2× the step's
// analysis interval) and failed requests during it". One real `herd up`, the
// app of the e2e release tests, steady traffic through the gateway at 80
// requests/s; a bad release answers 500 to every 20th request (5 %) while its
// health check passes. In paired rounds (A B A B, BENCH_ROUNDS rounds, default 2):
//
//   A  herd    the bad release as a canary: one step of 10 %, analysis every
//              INTERVAL s (5 s; BENCH_INTERVAL_S), errorRate < 1 %, at least 20
//              requests. Time: from the step's weight taking effect (its
//              `stepStartedAt`) to the abort (the RolloutAborted event), both
//              the control plane's clock. Failed requests: from `herd deploy`
//              to 2 s after it ended (the gateways' next tables).
//   B  peer    the same bad release as a rolling update (the default strategy),
//              over the same span from `herd deploy`, then `herd rollback`
//              (remediation paused, so nothing else rolls it back).
//
// `npm run bench:release`. The figures move with the machine's load (printed).
// Then the version-set figure (bench/release-set.ts); BENCH_ONLY=canary|set runs one.

import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { RolloutView } from "../src/cli/rollout.ts";
import type { App, Event, Instance } from "../src/model/objects.ts";
import {
  cleanupHerd,
  type Herd,
  sleep,
  startHerd,
  steadyTraffic,
  type Traffic,
  waitFor,
} from "../test/e2e/harness.ts";
import { writeReleaseApp, writeReleaseManifest } from "../test/e2e/release-app.ts";
import { verdict, verdictSummary } from "./harness.ts";
import { runSet } from "./release-set.ts";

const HOST = "shop.localhost";
const INTERVAL_S = Number(process.env.BENCH_INTERVAL_S ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const RATE = 80;
const GOAL_S = 2 * INTERVAL_S;
const CANARY = [
  "strategy: canary",
  "steps: [{ weight: 10, pause: 1m }, { weight: 50 }]",
  `analysis: { interval: ${INTERVAL_S}s, minRequests: 20, errorRate: "< 1%" }`,
];
const ROLLING = ["strategy: rolling"];

interface CanaryRun {
  abortS: number;
  failed: number;
  total: number;
  spanS: number;
}

export async function run(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "herd-bench-release-"));
  let herd: Herd | undefined;
  let traffic: Traffic | undefined;
  try {
    herd = await startHerd();
    const h = herd;
    const dir = writeReleaseApp(work);
    const deploy = async (rollout: string[], bad: boolean) => {
      writeReleaseManifest(dir, HOST, rollout, bad ? { DELAY_MS: 5, ERROR_EVERY: 20 } : { DELAY_MS: 5 });
      return h.cli(["deploy", dir]);
    };
    const first = await deploy(CANARY, false);
    if (first.code !== 0) throw new Error(`first deploy failed:\n${first.stdout}${first.stderr}`);
    const paused = await h.cli(["remediate", "pause", "--app", "shop"]);
    if (paused.code !== 0) throw new Error(paused.stderr);
    traffic = steadyTraffic(h.gatewayUrl, HOST, { connections: 4, rate: RATE, maxSeconds: 900 });
    const t = traffic;
    await sleep(5000);
    if (t.counts().failed > 0)
      throw new Error(`the good release fails requests: ${JSON.stringify(t.counts().failures)}`);

    const canaries: CanaryRun[] = [];
    const peers: { failed: number; total: number }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // A: the bad release as a canary.
      const a = phaseStart(t);
      let stepStartedAt: string | undefined;
      let deploying = true;
      const watch = (async () => {
        while (deploying && stepStartedAt === undefined) {
          const [web] = (await h.api<{ items: RolloutView[] }>("GET", "/apps/shop/rollout")).body.items;
          stepStartedAt = web?.progressive?.stepStartedAt;
          await sleep(100);
        }
      })();
      const r = await deploy(CANARY, true);
      deploying = false;
      await watch;
      if (r.code !== 1 || !/failed its analysis/.test(r.stderr))
        throw new Error(`the bad canary did not abort on its analysis:\n${r.stdout}${r.stderr}`);
      await sleep(2000);
      const span = phaseEnd(t, a);
      const aborted = (await h.api<{ items: Event[] }>("GET", "/events?app=shop&limit=500")).body.items
        .filter((e) => e.reason === "RolloutAborted")
        .at(-1);
      if (!stepStartedAt || !aborted) throw new Error("no step start or no RolloutAborted event");
      if (process.env.BENCH_VERBOSE) console.log(`canary round ${round + 1}: ${span.why}\n${r.stdout}`);
      canaries.push({
        abortS: (Date.parse(aborted.time) - Date.parse(stepStartedAt)) / 1000,
        failed: span.failed,
        total: span.total,
        spanS: span.seconds,
      });
      await waitFor("the canary's instances to stop", async () => (await releases(h)).length === 1, 60_000);

      // B: the same bad release, rolling, over the same span; then rolled back.
      const good = (await h.api<{ app: App }>("GET", "/apps/shop")).body.app.release;
      const b = phaseStart(t);
      const rolled = await deploy(ROLLING, true);
      if (rolled.code !== 0) throw new Error(`the rolling deploy failed:\n${rolled.stdout}${rolled.stderr}`);
      const left = span.seconds * 1000 - (t.elapsed() - b.at);
      if (left > 0) await sleep(left);
      const peer = phaseEnd(t, b);
      peers.push({ failed: peer.failed, total: peer.total });
      if (process.env.BENCH_VERBOSE) console.log(`rolling round ${round + 1}: ${peer.why}`);
      const serving = (await h.api<{ app: App }>("GET", "/apps/shop")).body.app.release;
      // Back to the good content (the release before is the failed canary's, as bad).
      const rb = await h.cli(["rollback", `v${good}`, "--app", "shop"]);
      if (rb.code !== 0) throw new Error(`herd rollback failed:\n${rb.stdout}${rb.stderr}`);
      await waitFor(
        "the rollback serving alone",
        async () => {
          const now = await releases(h);
          return now.length === 1 && now[0] !== serving;
        },
        60_000,
      );
      await sleep(2000);
    }
    await t.stop();

    const [one, five] = loadavg();
    console.log(
      `load average ${one.toFixed(2)}, ${five.toFixed(2)} (figures move with it); traffic ${RATE} req/s`,
    );
    const worst = Math.max(...canaries.map((c) => c.abortS));
    const mean = canaries.reduce((s, c) => s + c.abortS, 0) / canaries.length;
    console.log(
      `bad canary (5% errors, 10% step, analysis every ${INTERVAL_S} s): step → abort ${canaries.map((c) => `${c.abortS.toFixed(1)} s`).join(", ")} ` +
        `(mean ${mean.toFixed(1)} s = ${(mean / INTERVAL_S).toFixed(2)}× the interval; goal ≤ ${GOAL_S} s: ${verdict("bad canary step → abort", worst <= GOAL_S)})`,
    );
    console.log(
      `failed requests from herd deploy to 2 s after the abort: ${canaries.map((c) => `${c.failed} of ${c.total} in ${c.spanS.toFixed(1)} s`).join(", ")}`,
    );
    console.log(
      `peer (the same release rolling, same span from herd deploy): ${peers.map((p) => `${p.failed} of ${p.total}`).join(", ")}`,
    );
    const canaryFailed = canaries.reduce((s, c) => s + c.failed, 0);
    const peerFailed = peers.reduce((s, p) => s + p.failed, 0);
    console.log(
      `ratio failed requests canary / rolling: ×${peerFailed > 0 ? (canaryFailed / peerFailed).toFixed(3) : "n/a (the peer failed none)"}`,
    );
  } finally {
    await traffic?.stop();
    await cleanupHerd(herd);
    rmSync(work, { recursive: true, force: true });
  }
}

/** The releases the app's instances that should run are on. */
async function releases(h: Herd): Promise<number[]> {
  const items = (await h.api<{ items?: Instance[] }>("GET", "/apps/shop/instances")).body.items ?? [];
  return [...new Set(items.filter((i) => i.desired === "running").map((i) => i.release))];
}

const phaseStart = (t: Traffic) => ({ at: t.elapsed(), counts: t.counts() });
function phaseEnd(t: Traffic, start: ReturnType<typeof phaseStart>) {
  const now = t.counts();
  const failures = Object.entries(now.failures)
    .map(([code, n]) => [code, n - (start.counts.failures[code] ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .map(([code, n]) => `${n}× ${code}`)
    .join(", ");
  const at = now.failedAt.filter((ms) => ms >= start.at).map((ms) => ((ms - start.at) / 1000).toFixed(1));
  return {
    seconds: (t.elapsed() - start.at) / 1000,
    failed: now.failed - start.counts.failed,
    total: now.total - start.counts.total,
    why: failures ? `${failures} at ${at.join(" ")} s` : "",
  };
}

if (import.meta.main) {
  if (process.env.BENCH_ONLY !== "set") await run();
  if (process.env.BENCH_ONLY !== "canary") await runSet();
  // --strict: exit 1 when a goal judged with verdict() was missed (bench/harness.ts).
  process.exit(verdictSummary("bench release"));
}
