// herd with the real Debian `prometheus` package:
// (a) a real Prometheus finds targets through herd's HTTP service discovery
//     (with the bearer token) and scrapes them;
// (b) `promtool query instant|range` reads herd's Prometheus-compatible API;
// (c) a herd server with --metrics-remote-write sends what it stores to the
//     Prometheus's remote write receiver.

import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { ensureDebianPackages } from "../../scripts/ensure-tools.ts";
import { silentLogger } from "../../src/common/log.ts";
import { type RunningServer, startServer } from "../../src/daemons/control-plane.ts";
import { freePort, waitFor as harnessWaitFor } from "./harness.ts";

const run = promisify(execFile);
let tools: Record<string, string>;
let herd: RunningServer;
let exporter: Server;
let prometheus: ChildProcess | undefined;
let promOutput = "";
/** The Prometheus test (a) starts (remote write receiver on), for (c). */
let promUrl = "";
const dir = mkdtempSync(join(tmpdir(), "herd-e2e-prometheus-"));

/** The harness's waitFor, with Prometheus's output when it times out. */
function waitFor<T>(what: string, f: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  return harnessWaitFor(what, f, ms).catch((err: Error) => {
    throw new Error(`${err.message}\n${promOutput}`);
  });
}

before(async () => {
  tools = await ensureDebianPackages({ prometheus: "prometheus", promtool: "prometheus" });
  // The test's targets listen on 127.0.0.1, as `herd server --allow-fetch 127.0.0.0/8` allows.
  herd = await startServer({
    dataDir: join(dir, "herd"),
    port: 0,
    logger: silentLogger,
    allowFetch: ["127.0.0.0/8"],
  });
  exporter = createServer((_req, res) => res.end("# TYPE e2e_widgets gauge\ne2e_widgets 7\n"));
  await new Promise<void>((r) => exporter.listen(0, "127.0.0.1", r));
});

after(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const exited = new Promise((r) => prometheus?.once("exit", r));
    prometheus.kill("SIGTERM");
    const timer = setTimeout(() => prometheus?.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
  await herd?.close();
  await new Promise((r) => exporter?.close(r));
  rmSync(dir, { recursive: true, force: true });
});

test("a real Prometheus discovers herd's targets over HTTP SD with the bearer token and scrapes them", async () => {
  const port = (exporter.address() as AddressInfo).port;
  const put = await fetch(`${herd.url}/api/v1/metrics/targets/widgets`, {
    method: "PUT",
    headers: { authorization: `Bearer ${herd.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ url: `http://127.0.0.1:${port}/metrics`, labels: { component: "widgets" } }),
  });
  assert.equal(put.status, 200);

  const promPort = await freePort();
  const tokenFile = join(dir, "token");
  writeFileSync(tokenFile, herd.adminToken, { mode: 0o600 });
  const config = join(dir, "prometheus.yml");
  writeFileSync(
    config,
    `global:
  scrape_interval: 1s
scrape_configs:
  - job_name: herd
    scrape_interval: 1s
    http_sd_configs:
      - url: ${herd.url}/api/v1/prom/sd
        refresh_interval: 1s
        # Prometheus 2.42 sends the bare token unless the type is spelled out.
        authorization:
          type: Bearer
          credentials_file: ${tokenFile}
`,
  );
  prometheus = spawn(
    tools.prometheus as string,
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, "prom-data")}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      "--web.enable-remote-write-receiver",
      "--log.level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  prometheus.stdout?.on("data", (d: Buffer) => (promOutput += d.toString()));
  prometheus.stderr?.on("data", (d: Buffer) => (promOutput += d.toString()));
  const prom = `http://127.0.0.1:${promPort}`;
  promUrl = prom;
  await waitFor("prometheus ready", async () => ((await fetch(`${prom}/-/ready`)).ok ? true : undefined));

  const up = await waitFor("prometheus to scrape both targets", async () => {
    const res = await fetch(`${prom}/api/v1/query?query=up`);
    const body = (await res.json()) as {
      data: { result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    const found = body.data.result.filter((r) => r.value[1] === "1");
    return found.length >= 2 ? found : undefined;
  });
  const byComponent = Object.fromEntries(up.map((r) => [r.metric.component, r.metric]));
  assert.equal(byComponent.api?.instance, `127.0.0.1:${herd.port}`);
  assert.equal(byComponent.api?.job, "herd");
  assert.equal(byComponent.widgets?.instance, `127.0.0.1:${port}`);
  // What it scraped from herd's own /metrics is real: the API's request counter.
  await waitFor("herd_api_requests_total in prometheus", async () => {
    const res = await fetch(
      `${prom}/api/v1/query?query=${encodeURIComponent('herd_api_requests_total{component="api"}')}`,
    );
    const body = (await res.json()) as { data: { result: unknown[] } };
    return body.data.result.length > 0 ? true : undefined;
  });
  const widgets = (await (await fetch(`${prom}/api/v1/query?query=e2e_widgets`)).json()) as {
    data: { result: { value: [number, string] }[] };
  };
  assert.equal(widgets.data.result[0]?.value[1], "7");
});

test("promtool queries herd's Prometheus-compatible API (instant and range)", async () => {
  const t0 = Math.floor(Date.now() / 1000) - 120;
  const series = ["a", "b"].map((route) => ({
    metric: "e2e_requests_total",
    labels: { route },
    samples: Array.from({ length: 9 }, (_, i) => [(t0 + i * 15) * 1000, i * 15 * (route === "a" ? 1 : 3)]),
  }));
  const w = await fetch(`${herd.url}/api/v1/metrics/write`, {
    method: "POST",
    headers: { authorization: `Bearer ${herd.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ series }),
  });
  assert.equal(w.status, 200);
  const end = t0 + 120;

  // promtool's instant query has no header flag: the token goes as the basic-auth password in the URL.
  const base = new URL(`${herd.url}/api/v1/prom`);
  base.username = "herd";
  base.password = herd.adminToken;
  const instant = await run(tools.promtool as string, [
    "query",
    "instant",
    "-o",
    "json",
    `--time=${end}`,
    base.toString(),
    "sum by (route) (rate(e2e_requests_total[1m]))",
  ]);
  const vector = JSON.parse(instant.stdout) as { metric: { route: string }; value: [number, string] }[];
  assert.deepEqual(vector.map((s) => [s.metric.route, Number(s.value[1])]).sort(), [
    ["a", 1],
    ["b", 3],
  ]);

  const range = await run(tools.promtool as string, [
    "query",
    "range",
    "-o",
    "json",
    `--header=Authorization: Bearer ${herd.adminToken}`,
    `--start=${end - 60}`,
    `--end=${end}`,
    "--step=30s",
    `${herd.url}/api/v1/prom`,
    'e2e_requests_total{route="b"} * 2',
  ]);
  const matrix = JSON.parse(range.stdout) as { metric: Record<string, string>; values: [number, string][] }[];
  assert.deepEqual(matrix, [
    {
      metric: { route: "b" },
      values: [
        [end - 60, "360"],
        [end - 30, "540"],
        [end, "720"],
      ],
    },
  ]);

  // A parse error comes back as Prometheus' bad_data, which promtool prints.
  const bad = await run(tools.promtool as string, [
    "query",
    "instant",
    base.toString(),
    "sum(rate(x[5m])",
  ]).catch((err: { code: number; stderr: string }) => err);
  assert.notEqual((bad as { code?: number }).code ?? 0, 0);
  assert.match((bad as { stderr: string }).stderr, /bad_data: parse error at position 16/);
});

test("--metrics-remote-write: what a server stores reaches a real Prometheus by remote write", async (t) => {
  assert.ok(promUrl, "test (a) started Prometheus");
  const writer = await startServer({
    dataDir: join(dir, "herd-remote-write"),
    port: 0,
    logger: silentLogger,
    allowFetch: ["127.0.0.0/8"],
    metrics: { remoteWrite: { url: `${promUrl}/api/v1/write` } },
  });
  t.after(() => writer.close());
  const now = Date.now();
  const w = await fetch(`${writer.url}/api/v1/metrics/write`, {
    method: "POST",
    headers: { authorization: `Bearer ${writer.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({
      series: [
        {
          metric: "e2e_remote_written",
          labels: { shard: "a" },
          samples: [
            [now - 1000, 41],
            [now, 42],
          ],
        },
      ],
    }),
  });
  assert.equal(w.status, 200);
  const got = await waitFor("e2e_remote_written in prometheus", async () => {
    const res = await fetch(
      `${promUrl}/api/v1/query?query=${encodeURIComponent("e2e_remote_written")}&time=${now / 1000}`,
    );
    const body = (await res.json()) as {
      data: { result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    return body.data.result.length > 0 ? body.data.result : undefined;
  });
  assert.equal(got.length, 1);
  assert.equal(got[0]?.value[1], "42");
  assert.equal(got[0]?.metric.shard, "a");
  assert.equal(got[0]?.metric.__name__, "e2e_remote_written");
  // Its own series go too: `up` of its scrape of itself (job herd-api; Prometheus's own scrape says job herd).
  await waitFor("the writer's own series in prometheus", async () => {
    const query = `up{job="herd-api",instance="127.0.0.1:${writer.port}"}`;
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(query)}`);
    const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
    return body.data.result[0]?.value[1] === "1" ? true : undefined;
  });
  assert.equal(writer.metrics.remoteWriter?.stats().dropped, 0);
});
