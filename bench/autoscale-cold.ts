// Scale to zero: the first response after a cold start (bench:autoscale's "cold" section).
//
// On a real `herd up` (one gateway process), examples/hello with `autoscale: {min: 0}` is
// scaled to 0 (POST /scale, then waited until no instance is left), and one request goes
// through the gateway: the gateway holds it, wakes the service, and forwards it when the
// instance passes its health check. Time to the response's first byte, 20 times: p50, p99,
// against the goal (≤ 1 s p99). Where the time goes, from the events of each start (Woken →
// Scheduled → Started → Healthy → first byte). Peers measured in the same rounds (before each
// cold start): one request to the warm instance through the gateway, and `node server.js` from
// spawn to its first answer. `--strict`: exit 1 when the goal is missed.

import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { Event, Instance } from "../src/model/objects.ts";
import { cleanupHerd, freePort, type Herd, ROOT, startHerd, waitFor } from "../test/e2e/harness.ts";
import { median, verdict, verdictSummary } from "./harness.ts";

const STARTS = Number(process.env.BENCH_COLD_STARTS ?? 20);
const GOAL_MS = 1000;
const HOST = "hello.localhost";

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};
const ms = (n: number) => `${n.toFixed(0)} ms`;

/** One GET through the gateway; resolves with the time to the response's first byte (ms) and its status. */
function timeToFirstByte(gatewayUrl: string): Promise<{ ms: number; status: number; at: number }> {
  const u = new URL(gatewayUrl);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path: "/", headers: { host: HOST }, agent: false },
      (res) => {
        res.once("data", () => {
          const at = Date.now();
          resolve({ ms: performance.now() - started, status: res.statusCode ?? 0, at });
        });
        res.resume();
      },
    );
    req.setTimeout(60_000, () => req.destroy(new Error("no answer within 60 s")));
    req.on("error", reject);
    req.end();
  });
}

/** `node server.js` of examples/hello: spawn → first 200 on /healthz (polled every 2 ms). */
async function plainStart(): Promise<number> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, ["server.js"], {
    cwd: join(ROOT, "examples/hello"),
    env: { ...process.env, PORT: String(port) },
    stdio: "ignore",
  });
  try {
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const req = http.get({ host: "127.0.0.1", port, path: "/healthz", agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        });
        req.on("error", () => resolve(false));
      });
      if (ok) return performance.now() - started;
      if (performance.now() - started > 30_000) throw new Error("node server.js did not answer in 30 s");
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    child.kill("SIGKILL");
  }
}

/** Where one cold start's time went, from its events (ms between them; undefined when one is missing). */
function phases(events: Event[], requestAt: number, firstByteAt: number): Record<string, number | undefined> {
  const woken = events.find((e) => e.reason === "Woken" && Date.parse(e.time) >= requestAt - 5);
  const instance = events.find(
    (e) => e.reason === "Scheduled" && woken !== undefined && Date.parse(e.time) >= Date.parse(woken.time),
  )?.instance;
  const at = (reason: string) => {
    const e = events.find((x) => x.reason === reason && x.instance === instance);
    return e === undefined ? undefined : Date.parse(e.time);
  };
  const w = woken === undefined ? undefined : Date.parse(woken.time);
  const scheduled = at("Scheduled");
  const started = at("Started");
  const healthy = at("Healthy");
  const diff = (a?: number, b?: number) => (a === undefined || b === undefined ? undefined : b - a);
  return {
    "request → Woken (gateway holds, asks)": diff(requestAt, w),
    "Woken → Scheduled (placement)": diff(w, scheduled),
    "Scheduled → Started (agent hears, unpacks, spawns; reported)": diff(scheduled, started ?? healthy),
    "Started → Healthy (health check passes; reported)": diff(started ?? healthy, healthy),
    "Healthy → first byte (gateway table, proxy)": diff(healthy, firstByteAt),
  };
}

export async function run(): Promise<void> {
  let herd: Herd | undefined;
  const dir = mkdtempSync(join(tmpdir(), "herd-bench-cold-"));
  try {
    herd = await startHerd({ extraArgs: ["--gateway-workers", "1", "--no-example"] });
    const h = herd;
    cpSync(join(ROOT, "examples/hello"), dir, { recursive: true });
    const yaml = readFileSync(join(dir, "herd.yaml"), "utf8")
      .replace("instances: 2", "instances: 1")
      // One-second windows: the autoscaler does not undo each scale to 0 for the request before it.
      .replace(
        "    mode: cattle\n",
        "    mode: cattle\n    autoscale: { min: 0, max: 2, target: { rps: 100 }, stableWindow: 1s, panicWindow: 1s }\n",
      );
    writeFileSync(join(dir, "herd.yaml"), yaml);
    const deployed = await h.cli(["deploy", dir]);
    if (deployed.code !== 0) throw new Error(`deploy failed:\n${deployed.stdout}${deployed.stderr}`);
    await waitFor("hello to serve", async () => (await h.request(HOST)).status === 200, 60_000);

    // The peers, measured in the same rounds as the cold starts (warm, plain, cold; warm, plain, cold; …),
    // so each ratio is the median of the rounds' own: 1. the same request to the warm instance (the one
    // the last cold start woke); 2. the app's own start, without herd.
    const warm: number[] = [];
    const plain: number[] = [];

    const instances = async () =>
      (await h.api<{ items: Instance[] }>("GET", "/apps/hello/instances")).body.items;
    const cold: number[] = [];
    const breakdown: Record<string, number[]> = {};
    let failed = 0;
    for (let n = 0; n < STARTS; n++) {
      const w = await timeToFirstByte(h.gatewayUrl);
      if (w.status !== 200) failed++;
      warm.push(w.ms);
      plain.push(await plainStart());
      // Past the autoscaler's windows (at zero, a request it still sees there wakes the service).
      await new Promise((r) => setTimeout(r, 2500));
      const scaled = await h.api("POST", "/apps/hello/scale", { services: { web: 0 } });
      if (scaled.status !== 200) throw new Error(`scale to 0 answered ${scaled.status}`);
      await waitFor("no instance left", async () => (await instances()).length === 0, 60_000);
      const atZero = (
        await h.api<{ items: { name: string; services: { name: string; instances: number }[] }[] }>(
          "GET",
          "/apps",
        )
      ).body.items
        .find((a) => a.name === "hello")
        ?.services.find((s) => s.name === "web")?.instances;
      if (atZero !== 0) throw new Error(`something woke hello/web before the request (instances ${atZero})`);
      const requestAt = Date.now();
      const r = await timeToFirstByte(h.gatewayUrl);
      if (r.status !== 200) failed++;
      cold.push(r.ms);
      const events = (await h.api<{ items: Event[] }>("GET", "/events?app=hello&limit=100")).body.items;
      for (const [phase, value] of Object.entries(phases(events, requestAt, r.at))) {
        if (value === undefined) continue;
        breakdown[phase] ??= [];
        breakdown[phase].push(value);
      }
    }

    const p50 = quantile(cold, 0.5);
    const p99 = quantile(cold, 0.99);
    const warmMedian = quantile(warm, 0.5);
    const plainMedian = quantile(plain, 0.5);
    const overWarm = median(cold.map((c, i) => c / (warm[i] as number)));
    const overPlain = median(cold.map((c, i) => c / (plain[i] as number)));
    console.log(
      `scale to zero — first response after a cold start of examples/hello (${STARTS} starts, load ${loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")})`,
    );
    console.log(
      `  cold start: p50 ${ms(p50)}, p99 ${ms(p99)}; non-200 answers: ${failed} (goal ≤ ${ms(GOAL_MS)} p99, every answer 200: ` +
        `${(p99 / GOAL_MS).toFixed(2)}× the goal, ${verdict("cold start p99 ≤ 1 s, every answer 200", p99 <= GOAL_MS && failed === 0)})`,
    );
    console.log(
      `  peers, in the same rounds: warm instance ${ms(warmMedian)} (cold is ${overWarm.toFixed(0)}×, median of the rounds' ratios); ` +
        `node server.js spawn → first answer ${ms(plainMedian)} (cold is ${overPlain.toFixed(1)}×)`,
    );
    console.log("  where the time goes (median, p99 of the starts; event times have ms resolution):");
    for (const [phase, values] of Object.entries(breakdown)) {
      console.log(
        `    ${phase.padEnd(62)} ${ms(quantile(values, 0.5)).padStart(7)} ${ms(quantile(values, 0.99)).padStart(7)}`,
      );
    }
  } finally {
    await cleanupHerd(herd);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  await run();
  process.exit(verdictSummary("bench autoscale-cold"));
}
