// `npm run bench`: the spine's figures, each measured in one bounded run on a
// real `herd up`:
//   1. deploy-to-serving time of examples/hello (CLI start → first 200 through the gateway)
//   2. kill -9 of an instance → its replacement passing its health check (median, p99 of 20)
//   3. gateway req/s and p99 against a direct call to the same instance, and the ratio

import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon, { type Result } from "autocannon";
import type { Event, Instance } from "../src/model/objects.ts";
import { cleanupHerd, type Herd, ROOT, startHerd, waitFor } from "../test/e2e/harness.ts";

const KILLS = Number(process.env.BENCH_KILLS ?? 20);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);

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
      heal.push((healthy ? Date.parse(healthy.time) : Date.now()) - killedAt);
      // Let the crash counter reset (the service settles) so every kill is a first crash.
      await waitFor("settled", async () => {
        const svc = (await h.api<{ services: { state: string; crashes: number }[] }>("GET", "/apps/hello"))
          .body.services[0];
        return svc.state === "running" && svc.crashes === 0;
      });
    }
    console.log(
      `kill -9 to replacement healthy (${KILLS} kills): median ${ms(quantile(heal, 0.5))}, p99 ${ms(quantile(heal, 0.99))}`,
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
    const direct = await autocannon({
      url: `http://127.0.0.1:${target.port}/`,
      connections: 32,
      duration: SECONDS,
    });
    const gateway = await autocannon({
      url: `${h.gatewayUrl}/`,
      connections: 32,
      duration: SECONDS,
      headers: { host: "hello.localhost" },
    });
    const row = (name: string, r: Result) =>
      `${name.padEnd(9)} ${r.requests.average.toFixed(0).padStart(8)} req/s   p50 ${String(r.latency.p50).padStart(4)} ms   p99 ${String(r.latency.p99).padStart(4)} ms   errors ${r.errors + r.non2xx}`;
    console.log(`load: 32 connections, ${SECONDS} s each, one instance (1 CPU), autocannon in this process`);
    console.log(row("direct", direct));
    console.log(row("gateway", gateway));
    console.log(
      `gateway/direct: ${(gateway.requests.average / direct.requests.average).toFixed(2)}× req/s, p99 +${gateway.latency.p99 - direct.latency.p99} ms`,
    );
  } finally {
    await cleanupHerd(herd);
  }
}

await main();
