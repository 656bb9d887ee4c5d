// bench:autoscale, section "step": a load step ×20 through a real herd up's
// gateway, with herd.yaml's default windows (stable 60 s, panic 6 s):
//   1. step → the scale-out decision (its Autoscaled event); goal ≤ 3 s; peers: the
//      HPA's 15 s sync period and Knative's 6 s panic window (the ratio to each)
//   2. step → the decided instances running, and the requests that failed meanwhile

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { Event, Instance, Service } from "../src/model/objects.ts";
import { cleanupHerd, type Herd, sleep, startHerd, steadyTraffic, waitFor } from "../test/e2e/harness.ts";
import { verdict, verdictSummary } from "./harness.ts";

const BASE_RPS = Number(process.env.BENCH_BASE_RPS ?? 5);
const TARGET_RPS = 20;
const HPA_SYNC_MS = 15_000;
const KNATIVE_PANIC_MS = 6_000;
const GOAL_MS = 3_000;

function writeApp(dir: string): void {
  mkdirSync(dir);
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: "step", private: true, type: "module", scripts: { start: "node server.js" } }),
  );
  writeFileSync(
    join(dir, "server.js"),
    'import { createServer } from "node:http";\n' +
      'createServer((req, res) => setTimeout(() => res.end("ok"), 5)).listen(Number(process.env.PORT));\n',
  );
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      "app: step",
      "services:",
      "  web:",
      "    command: node server.js",
      "    resources: { cpu: 0.05, memory: 32Mi }",
      "    health: { path: / }",
      "    routes: [{ host: step.localhost }]",
      `    autoscale: { min: 1, max: ${Math.ceil((BASE_RPS * 20) / TARGET_RPS) + 1}, target: { rps: ${TARGET_RPS} } }`,
      "",
    ].join("\n"),
  );
}

export async function run(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "herd-bench-step-"));
  let herd: Herd | undefined;
  try {
    herd = await startHerd();
    const h = herd;
    writeApp(join(work, "step"));
    const d = await h.cli(["deploy", join(work, "step")]);
    if (d.code !== 0) throw new Error(`deploy failed:\n${d.stdout}${d.stderr}`);
    const events = async () =>
      (await h.api<{ items: Event[] }>("GET", "/events?app=step&limit=500")).body.items;
    const count = async () =>
      (await h.api<{ services: Service[] }>("GET", "/apps/step")).body.services[0].instances;
    const running = async () =>
      (await h.api<{ items: Instance[] }>("GET", "/apps/step/instances")).body.items.filter(
        (i) => i.desired === "running" && i.state === "running",
      ).length;

    // A base load for a whole panic window, then ×20.
    const base = steadyTraffic(h.gatewayUrl, "step.localhost", {
      connections: 1,
      rate: BASE_RPS,
      maxSeconds: 60,
    });
    await sleep(8000);
    const before = await count();
    await base.stop();
    const step = Date.now();
    const load = steadyTraffic(h.gatewayUrl, "step.localhost", {
      connections: 10,
      rate: BASE_RPS * 20,
      maxSeconds: 120,
    });
    let decisionMs: number | undefined;
    let servingMs: number | undefined;
    let countMs: number | undefined;
    let decided = before;
    try {
      const first = await waitFor(
        "the scale-out decision",
        async () => (await events()).find((e) => e.reason === "Autoscaled" && Date.parse(e.time) >= step),
        30_000,
      );
      decisionMs = Date.parse(first.time) - step;
      // The count the step asks for: ceil(step rps / target).
      decided = Math.ceil((BASE_RPS * 20) / TARGET_RPS);
      await waitFor(`the count to reach ${decided}`, async () => (await count()) >= decided, 60_000);
      countMs = Date.now() - step;
      await waitFor("the decided instances running", async () => (await running()) >= decided, 60_000);
      servingMs = Date.now() - step;
    } finally {
      const counts = await load.stop();
      // The step counts only if it was one: at least half the ×20 rate reached the gateway.
      const seconds = (Date.now() - step) / 1000;
      const ranDry =
        counts.total < (BASE_RPS * 20 * seconds) / 2 &&
        `${counts.total} requests in ${seconds.toFixed(0)} s, not ${BASE_RPS * 20} req/s`;
      const [one] = loadavg();
      console.log(
        `load step: ${BASE_RPS} → ${BASE_RPS * 20} rps (×20), target ${TARGET_RPS} rps per instance; load average ${one.toFixed(2)}`,
      );
      if (decisionMs !== undefined) {
        console.log(
          `step → scale-out decision: ${decisionMs} ms (goal ≤ ${GOAL_MS} ms: ${verdict("step → scale-out decision ≤ 3 s", decisionMs <= GOAL_MS, ranDry)}); ` +
            `${(decisionMs / HPA_SYNC_MS).toFixed(2)}× the HPA's ${HPA_SYNC_MS / 1000} s sync period, ` +
            `${(decisionMs / KNATIVE_PANIC_MS).toFixed(2)}× Knative's ${KNATIVE_PANIC_MS / 1000} s panic window`,
        );
      } else
        console.log(
          `step → scale-out decision: none within 30 s (goal ≤ 3 s: ${verdict("step → scale-out decision ≤ 3 s", false, ranDry)})`,
        );
      console.log(
        `step → count ${decided} decided: ${countMs === undefined ? "not reached" : `${countMs} ms`}; ` +
          `→ ${decided} instances running (from ${before}): ${servingMs === undefined ? "not reached" : `${servingMs} ms`}`,
      );
      console.log(
        `requests during the step: ${counts.total}, failed ${counts.failed}` +
          `${counts.failed > 0 ? ` (${JSON.stringify(counts.failures)})` : ""}`,
      );
    }
  } finally {
    if (herd) await cleanupHerd(herd);
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  await run();
  process.exit(verdictSummary("bench autoscale-step"));
}
