// herd up --small, end to end: two processes (herd up and one gateway), the
// control plane on V8's interpreter only (--max-opt=0) and the gateway up to
// Maglev (--max-opt=2, with a capped young generation), both with one GC thread and
// herd's malloc settings (GLIBC_TUNABLES), both loading herd's TypeScript from the
// stripped-JavaScript cache (daemons/strip-hooks.mjs); an app deploys, answers over HTTP and over HTTPS with a certificate from
// herd's CA (made by a short-lived signer process), and the control plane
// scrapes the gateway (through the URL guard, on node:http).

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { cleanupHerd, gatewayRecord, type Herd, httpsGet, ROOT, startHerd, waitFor } from "./harness.ts";

let herd: Herd | undefined;
after(() => cleanupHerd(herd));

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
const childrenOf = (pid: number) =>
  readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);

const environ = (pid: number) => readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");

test("herd up --small: an interpreter-only control plane, one gateway process with the compilers up to Maglev; apps deploy and answer", async () => {
  herd = await startHerd({ extraArgs: ["--small"] });
  const up = cmdline(herd.proc.pid as number);
  assert.ok(up.includes("--max-opt=0") && up.includes("--max-semi-space-size=2"), up.join(" "));
  const gateway = gatewayRecord(herd.dataDir).pid;
  const gw = cmdline(gateway);
  assert.deepEqual(
    gw.filter((a) => a.startsWith("--max-opt")),
    ["--max-opt=2"],
    `the gateway keeps Maglev, without the control plane's --max-opt=0: ${gw.join(" ")}`,
  );
  // The gateway's young generation capped too; both load herd's TypeScript already stripped.
  assert.ok(gw.includes("--max-semi-space-size=2"), gw.join(" "));
  for (const [name, args] of [
    ["herd up", up],
    ["gateway", gw],
  ] as const) {
    for (const flag of ["--single-threaded-gc", "--v8-pool-size=1", "--bytecode-old-age=1"]) {
      assert.equal(args.filter((a) => a === flag).length, 1, `${name} has ${flag} once: ${args.join(" ")}`);
    }
  }
  for (const pid of [herd.proc.pid as number, gateway]) {
    assert.ok(
      // glibc parses GLIBC_TUNABLES in place: /proc/<pid>/environ shows it cut at the first ':'.
      environ(pid).some((v) => v.startsWith("GLIBC_TUNABLES=glibc.malloc.arena_max=2")),
      `pid ${pid} runs with herd's malloc settings`,
    );
  }
  const hooks = (args: string[]) => args.some((a) => /^--import=file:.*\/strip-hooks\.mjs\?cache=/.test(a));
  assert.ok(hooks(up) && hooks(cmdline(gateway)), `${up.join(" ")}\n${cmdline(gateway).join(" ")}`);
  assert.deepEqual(childrenOf(gateway), [], "one gateway process, no workers");

  const deploy = await herd.cli(["deploy", join(ROOT, "examples/hello")], { timeoutMs: 180_000 });
  assert.equal(deploy.code, 0, deploy.stdout + deploy.stderr);
  await waitFor("hello over HTTP", async () => (await herd?.request("hello.localhost"))?.status === 200);

  const info = JSON.parse(readFileSync(join(herd.dataDir, "server.json"), "utf8")) as {
    gatewayHttpsUrl: string;
  };
  const ca = readFileSync(join(herd.dataDir, "tls", "ca-cert.pem"), "utf8");
  const https = await httpsGet(Number(new URL(info.gatewayHttpsUrl).port), "hello.localhost", ca);
  assert.equal(https.status, 200);
  assert.equal(https.subjectAltName, "DNS:hello.localhost");

  // The gateway's metrics are scraped: the control plane fetched them over node:http.
  await waitFor(
    "a scrape of the gateway",
    async () => {
      const r = await herd?.api<{ items: { name: string; health: string }[] }>("GET", "/metrics/targets");
      return r?.body.items.some((t) => t.name.startsWith("herd-gateway/") && t.health === "up") ?? false;
    },
    60_000,
  );
});
