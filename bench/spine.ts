// `npm run bench`: the spine's figures, each measured in one bounded run on a
// real `herd up`:
//   1. deploy-to-serving time of examples/hello (CLI start → first 200 through the gateway)
//   2. kill -9 of an instance → its replacement passing its health check (median, p99 of 20)
//   3. gateway req/s and p99 against a direct call to the same instance, and the ratio: in
//      rounds paired in time (direct, gateway, gateway, direct, …), the ratio the median of
//      the rounds' own
// The figures count only when the run did its work: every kill's replacement reported
// Healthy, and no request of the load failed. `--strict`: exit 1 when one did not.

import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon, { type Result } from "autocannon";
import type { Event, Instance } from "../src/model/objects.ts";
import { cleanupHerd, type Herd, ROOT, startHerd, waitFor } from "../test/e2e/harness.ts";
import { median, pairedMedian, pairedRounds, verdict, verdictSummary } from "./harness.ts";

const KILLS = Number(process.env.BENCH_KILLS ?? 20);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
};
const ms = (n: number) => `${n.toFixed(0)} ms`;

async function main() {
  let herd: Herd | undefined;
  try {
    herd = await startHerd();
    const h = herd;

    // 1. Deploy to serving.
    const t0 = performance.now();
    const d = await h.cli(["deploy", join(ROOT, "examples/hello")]);
    if (d.code !== 0) throw new Error(`deploy failed:\n${d.stdout}${d.stderr}`);
    await waitFor("hello to serve", async () => (await h.request("hello.localhost")).status === 200, 60_000);
    const deployMs = performance.now() - t0;
    console.log(`deploy to serving (examples/hello, 2 instances): ${ms(deployMs)}`);

    // 2. Kill -9 → replacement healthy (measured from the kill to the Healthy event of the replacement).
    const running = async () =>
      (await h.api<{ items: Instance[] }>("GET", "/apps/hello/instances")).body.items.filter(
        (i) => i.desired === "running" && i.state === "running",
      );
    await h.cli(["scale", "web=1", "--app", "hello"]);
    await waitFor(
      "1 instance",
      async () =>
        (await running()).length === 1 &&
        (await h.api<{ items: Instance[] }>("GET", "/apps/hello/instances")).body.items.length === 1,
    );
    const heal: number[] = [];
    let noHealthy = 0;
    for (let n = 0; n < KILLS; n++) {
      const [victim] = await running();
      const killedAt = Date.now();
      process.kill(victim.pid!, "SIGKILL");
      const replacement = await waitFor(
        "a replacement",
        async () => (await running()).find((i) => i.id !== victim.id),
        60_000,
      );
      const events = (await h.api<{ items: Event[] }>("GET", "/events?app=hello&limit=200")).body.items;
      const healthy = events.find((e) => e.instance === replacement.id && e.reason === "Healthy");
      if (!healthy) noHealthy++;
      heal.push((healthy ? Date.parse(healthy.time) : Date.now()) - killedAt);
      // Let the crash counter reset (the service settles) so every kill is a first crash.
      await waitFor("settled", async () => {
        const svc = (await h.api<{ services: { state: string; crashes: number }[] }>("GET", "/apps/hello"))
          .body.services[0];
        return svc.state === "running" && svc.crashes === 0;
      });
    }
    console.log(
      `kill -9 to replacement healthy (${KILLS} kills): median ${ms(quantile(heal, 0.5))}, p99 ${ms(quantile(heal, 0.99))} ` +
        `(every replacement reported Healthy: ${verdict("every kill's replacement reported Healthy", noHealthy === 0, noHealthy > 0 && `${noHealthy} replacements without a Healthy event`)})`,
    );

    // 3. Gateway vs direct, same instance, same load. The instance gets a whole core (examples/hello asks
    //    for a quarter, which would make the app, not the gateway, the bottleneck of both runs).
    const dir = mkdtempSync(join(tmpdir(), "herd-bench-"));
    cpSync(join(ROOT, "examples/hello"), dir, { recursive: true });
    const yaml = readFileSync(join(dir, "herd.yaml"), "utf8")
      .replace("instances: 2", "instances: 1")
      .replace("cpu: 0.25", "cpu: 1");
    writeFileSync(join(dir, "herd.yaml"), yaml);
    const big = await h.cli(["deploy", dir]);
    rmSync(dir, { recursive: true, force: true });
    if (big.code !== 0) throw new Error(`deploy failed:\n${big.stdout}${big.stderr}`);
    const [target] = await running();
    const load = (side: string) =>
      side === "direct"
        ? autocannon({ url: `http://127.0.0.1:${target.port}/`, connections: 32, duration: SECONDS })
        : autocannon({
            url: `${h.gatewayUrl}/`,
            connections: 32,
            duration: SECONDS,
            headers: { host: "hello.localhost" },
          });
    const failed = (r: Result) => r.errors + r.non2xx + r.timeouts;
    const row = (name: string, r: Result) =>
      `${name.padEnd(17)} ${r.requests.average.toFixed(0).padStart(8)} req/s   p50 ${String(r.latency.p50).padStart(4)} ms   p99 ${String(r.latency.p99).padStart(4)} ms   failed ${failed(r)}`;
    console.log(
      `load: 32 connections, ${SECONDS} s each, ${ROUNDS} rounds (direct, gateway, then the other way round), one instance (1 CPU), autocannon in this process`,
    );
    const rounds = await pairedRounds(["direct", "gateway"], ROUNDS, async (side, round) => {
      const r = await load(side);
      console.log(row(`round ${round} ${side}`, r));
      return r;
    });
    const of = (side: string) => rounds.map((r) => r.get(side) as Result);
    const rps = pairedMedian(
      rounds,
      (r) => (r.get("gateway") as Result).requests.average / (r.get("direct") as Result).requests.average,
    );
    const p99 = median(of("gateway").map((g, i) => g.latency.p99 - (of("direct")[i] as Result).latency.p99));
    const lost = [...of("direct"), ...of("gateway")].reduce((n, r) => n + failed(r), 0);
    console.log(
      `gateway/direct: ${rps.median.toFixed(2)}× req/s (rounds: ${rps.each.map((x) => x.toFixed(2)).join(" ")}), p99 +${p99} ms, ` +
        `medians of the rounds (no request failed: ${verdict("gateway/direct: no request failed", lost === 0, lost > 0 && `${lost} requests failed`)})`,
    );
  } finally {
    await cleanupHerd(herd);
  }
}

await main();
process.exit(verdictSummary("bench"));
