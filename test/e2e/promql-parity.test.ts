// herd's PromQL against the distribution's real Prometheus (Debian `prometheus`, 2.42):
// both scrape the same target (Prometheus finds it through herd's HTTP service
// discovery), the target stamps its samples with its own times (one value per
// 4 s quantum, served from the moment both scrapers have called once), so both
// stores hold the same samples and every query of the corpus, asked of both at
// the same instants, must give the same series with the same values (1e-9
// relative). A difference is a failing case naming the query.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ensureDebianPackages } from "../../scripts/ensure-tools.ts";
import { silentLogger } from "../../src/common/log.ts";
import { type RunningServer, startServer } from "../../src/daemons/control-plane.ts";
import { freePort, waitFor as harnessWaitFor } from "./harness.ts";
import { CORPUS, RANGE_CORPUS } from "./promql-corpus.ts";

const Q = 4000;
/** How long both collect before the queries (both hold the same samples from the first quantum on, whatever the windows). */
const COLLECT_MS = Number(process.env.PARITY_COLLECT_MS ?? 80_000);

let herd: RunningServer;
let exporter: Server;
let prometheus: ChildProcess | undefined;
let promOutput = "";
let prom = "";
const dir = mkdtempSync(join(tmpdir(), "herd-e2e-promql-parity-"));

/** The quantum from which the target serves samples (set once both scrapers have called). */
let first: number | undefined;
const callers = new Set<string>();

/** The exposition at quantum k (n quanta after the first): counters, gauges, a histogram, an info metric. */
function exposition(k: number): string {
  const n = k - (first as number);
  const ts = k * Q;
  const lines: string[] = [];
  const put = (name: string, labels: Record<string, string>, v: number) => {
    const l = Object.entries(labels)
      .map(([a, b]) => `${a}="${b}"`)
      .join(",");
    lines.push(`${name}${l ? `{${l}}` : ""} ${v} ${ts}`);
  };
  lines.push("# HELP parity_requests_total Requests served.", "# TYPE parity_requests_total counter");
  put("parity_requests_total", { route: "/a", code: "200" }, 5 * n);
  put("parity_requests_total", { route: "/a", code: "500" }, n + (n % 3));
  put("parity_requests_total", { route: "/b", code: "200" }, (n % 9) * 3); // resets every 9 quanta
  lines.push("# HELP parity_temperature Degrees.", "# TYPE parity_temperature gauge");
  put("parity_temperature", { room: "kitchen" }, 20 + ((n * 7) % 11) - 5);
  put("parity_temperature", { room: "hall" }, 15 + (n % 5));
  put("parity_temperature", { room: "attic" }, -3 + ((n * 3) % 7) * 0.5);
  lines.push("# TYPE parity_limit gauge");
  put("parity_limit", { room: "kitchen" }, 22);
  put("parity_limit", { room: "hall" }, 18);
  put("parity_limit", { room: "attic" }, 1);
  lines.push("# HELP parity_info Who owns a route.", "# TYPE parity_info gauge");
  put("parity_info", { route: "/a", owner: "team-x" }, 1);
  put("parity_info", { route: "/b", owner: "team-y" }, 1);
  lines.push("# HELP parity_latency_seconds Latency.", "# TYPE parity_latency_seconds histogram");
  for (const [route, m] of [
    ["/a", 1],
    ["/b", 3],
  ] as const) {
    const per: [string, number][] = [
      ["0.1", 2],
      ["0.5", 5],
      ["1", 7],
      ["+Inf", 8],
    ];
    for (const [le, c] of per)
      put("parity_latency_seconds_bucket", { route, le }, c * m * n + (le === "1" ? n % 2 : 0));
    put("parity_latency_seconds_sum", { route }, 2.5 * m * n);
    put("parity_latency_seconds_count", { route }, 8 * m * n + (n % 2));
  }
  return `${lines.join("\n")}\n`;
}

/** The harness's waitFor, with Prometheus's output when it times out. */
function waitFor<T>(what: string, f: () => Promise<T | undefined>, ms = 90_000): Promise<T> {
  return harnessWaitFor(what, f, ms).catch((err: Error) => {
    throw new Error(`${err.message}\n${promOutput}`);
  });
}

before(async () => {
  // Installed as root if missing (never enabled at boot: ensure-tools disables what the package would start).
  const tools = await ensureDebianPackages({ prometheus: "prometheus" });
  herd = await startServer({
    dataDir: join(dir, "herd"),
    port: 0,
    logger: silentLogger,
    allowFetch: ["127.0.0.0/8"],
  });
  exporter = createServer((req, res) => {
    callers.add(String(req.headers["user-agent"] ?? "").startsWith("Prometheus/") ? "prometheus" : "herd");
    const k = Math.floor(Date.now() / Q);
    if (first === undefined && callers.size === 2) first = k + 1;
    res.setHeader("content-type", "text/plain; version=0.0.4");
    res.end(first !== undefined && k >= first ? exposition(k) : "");
  });
  await new Promise<void>((r) => exporter.listen(0, "127.0.0.1", r));
  const port = (exporter.address() as AddressInfo).port;
  const put = await fetch(`${herd.url}/api/v1/metrics/targets/parity`, {
    method: "PUT",
    headers: { authorization: `Bearer ${herd.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({
      url: `http://127.0.0.1:${port}/metrics`,
      labels: { component: "parity" },
      intervalSeconds: 1,
    }),
  });
  assert.equal(put.status, 200, await put.text());

  const tokenFile = join(dir, "token");
  writeFileSync(tokenFile, herd.adminToken, { mode: 0o600 });
  const config = join(dir, "prometheus.yml");
  writeFileSync(
    config,
    `global:
  scrape_interval: 1s
scrape_configs:
  - job_name: parity
    scrape_interval: 1s
    http_sd_configs:
      - url: ${herd.url}/api/v1/prom/sd
        refresh_interval: 1s
        authorization:
          type: Bearer
          credentials_file: ${tokenFile}
    relabel_configs:
      - source_labels: [component]
        regex: parity
        action: keep
`,
  );
  const promPort = await freePort();
  prometheus = spawn(
    tools.prometheus as string,
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, "prom-data")}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  prometheus.stdout?.on("data", (d: Buffer) => (promOutput += d.toString()));
  prometheus.stderr?.on("data", (d: Buffer) => (promOutput += d.toString()));
  prom = `http://127.0.0.1:${promPort}`;
  await waitFor("prometheus ready", async () => ((await fetch(`${prom}/-/ready`)).ok ? true : undefined));
  await waitFor("both scrapers to call the target", async () => (first !== undefined ? true : undefined));
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

type Json = { status: string; data: { resultType: string; result: unknown }; error?: string };

async function ask(base: string, path: string, params: Record<string, string>, auth?: string): Promise<Json> {
  const form = new URLSearchParams(params).toString();
  // Label values and metadata are GET only in Prometheus; the rest is POSTed as a form, as Grafana does.
  if (path.includes("/label/") || path.endsWith("/metadata")) {
    const res = await fetch(`${base}${path}?${form}`, {
      headers: auth ? { authorization: `Bearer ${auth}` } : {},
    });
    return (await res.json()) as Json;
  }
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      ...(auth ? { authorization: `Bearer ${auth}` } : {}),
    },
    body: form,
  });
  return (await res.json()) as Json;
}
const askHerd = (path: string, params: Record<string, string>) =>
  ask(herd.url, `/api/v1/prom/api/v1${path}`, params, herd.adminToken);
const askProm = (path: string, params: Record<string, string>) => ask(prom, `/api/v1${path}`, params);

const key = (m: Record<string, string>) =>
  JSON.stringify(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/** Equal to 1e-9 (sums in another order differ in the last bits); the same number must be written the same way. */
function sameValue(a: string, b: string): boolean {
  if (a === b) return true;
  const x = Number(a);
  const y = Number(b);
  if (Number.isNaN(x) || Number.isNaN(y) || x === y) return false;
  return Math.abs(x - y) <= 1e-9 * Math.max(1, Math.abs(x), Math.abs(y));
}

/** Differences between two answers (empty: the same). */
function compare(h: Json, p: Json, ordered: boolean): string[] {
  // Both refusing is agreeing (the messages are each their own).
  if (p.status !== "success" && h.status !== "success") return [];
  if (p.status !== "success") return [`prometheus refused it: ${p.error}`];
  if (h.status !== "success") return [`herd refused it: ${h.error}`];
  if (h.data.resultType !== p.data.resultType)
    return [`result type ${h.data.resultType}, prometheus ${p.data.resultType}`];
  if (h.data.resultType === "scalar" || h.data.resultType === "string") {
    const [hv, pv] = [(h.data.result as [number, string])[1], (p.data.result as [number, string])[1]];
    return sameValue(hv, pv) ? [] : [`value ${hv}, prometheus ${pv}`];
  }
  type Row = { metric: Record<string, string>; value?: [number, string]; values?: [number, string][] };
  const points = (r: Row) => (r.values ?? (r.value ? [r.value] : [])).map(([t, v]) => `${t}=${v}`);
  const hr = h.data.result as Row[];
  const pr = p.data.result as Row[];
  const problems: string[] = [];
  const pm = new Map(pr.map((r) => [key(r.metric), r]));
  const hm = new Map(hr.map((r) => [key(r.metric), r]));
  for (const k of hm.keys()) if (!pm.has(k)) problems.push(`herd has a series prometheus has not: ${k}`);
  for (const k of pm.keys()) if (!hm.has(k)) problems.push(`prometheus has a series herd has not: ${k}`);
  for (const [k, r] of hm) {
    const o = pm.get(k);
    if (!o) continue;
    const a = points(r);
    const b = points(o);
    const same =
      a.length === b.length &&
      a.every((x, i) => {
        const [ta, va] = x.split("=") as [string, string];
        const [tb, vb] = (b[i] as string).split("=") as [string, string];
        return ta === tb && sameValue(va, vb);
      });
    if (!same) problems.push(`${k}: herd ${a.join(" ")}; prometheus ${b.join(" ")}`);
  }
  if (ordered && problems.length === 0) {
    const ho = hr.map((r) => key(r.metric)).join(" ");
    const po = pr.map((r) => key(r.metric)).join(" ");
    if (ho !== po) problems.push(`order ${ho}; prometheus ${po}`);
  }
  return problems;
}

test("herd answers a corpus of PromQL like the real Prometheus on the same scraped samples", async () => {
  const started = Date.now();
  // Let both collect, then ask at instants both have certainly scraped (two quanta back).
  await waitFor(
    "samples to collect",
    async () => (Date.now() - started > COLLECT_MS ? true : undefined),
    COLLECT_MS + 5000,
  );
  const t = (Math.floor(Date.now() / Q) - 2) * Q;
  // The raw samples first: a difference here is a scrape that missed a quantum, not a PromQL difference.
  const raw = 'parity_temperature{job="parity"}[3m]';
  const rawDiff = compare(
    await askHerd("/query", { query: raw, time: String(t / 1000) }),
    await askProm("/query", { query: raw, time: String(t / 1000) }),
    false,
  );
  assert.deepEqual(rawDiff, [], "both stores hold the same samples");

  const failures: string[] = [];
  let asked = 0;
  for (const at of [t, t - Q / 2]) {
    const sec = String(at / 1000);
    for (const q of CORPUS) {
      const query = q.replaceAll("$T", String(t / 1000 - 20));
      const [h, p] = await Promise.all([
        askHerd("/query", { query, time: sec }),
        askProm("/query", { query, time: sec }),
      ]);
      const diff = compare(h, p, /^sort/.test(query));
      asked++;
      if (diff.length > 0) failures.push(`${query} @ ${sec}:\n    ${diff.slice(0, 4).join("\n    ")}`);
    }
  }
  for (const q of RANGE_CORPUS) {
    const params = { query: q, start: String((t - 60_000) / 1000), end: String(t / 1000), step: "7" };
    const [h, p] = await Promise.all([askHerd("/query_range", params), askProm("/query_range", params)]);
    const diff = compare(h, p, false);
    asked++;
    if (diff.length > 0) failures.push(`range ${q}:\n    ${diff.slice(0, 4).join("\n    ")}`);
  }
  assert.equal(failures.length, 0, `${failures.length} of ${asked} queries differ:\n${failures.join("\n")}`);
});

test("series, labels, label values and metadata answer like Prometheus'", async () => {
  const t = Math.floor(Date.now() / 1000);
  const sets = (j: Json) => JSON.stringify((j.data as unknown as Record<string, string>[]).map(key).sort());
  for (const match of [
    "parity_temperature",
    '{job="parity",__name__=~"parity_.*"}',
    'parity_requests_total{code!="500"}',
  ]) {
    const params = { "match[]": match, start: String(t - 60), end: String(t) };
    assert.equal(
      sets(await askHerd("/series", params)),
      sets(await askProm("/series", params)),
      `series ${match}`,
    );
  }
  const names = async (ask: typeof askHerd, path: string, params: Record<string, string>) => {
    const j = await ask(path, params);
    assert.equal(j.status, "success", `${path} ${JSON.stringify(params)}: ${JSON.stringify(j)}`);
    return JSON.stringify((j.data as unknown as string[]).slice().sort());
  };
  for (const params of [{ "match[]": '{job="parity"}' }, { "match[]": "parity_info" }]) {
    assert.equal(
      await names(askHerd, "/labels", params),
      await names(askProm, "/labels", params),
      `labels ${params["match[]"]}`,
    );
    for (const label of ["room", "route", "__name__"]) {
      assert.equal(
        await names(askHerd, `/label/${label}/values`, params),
        await names(askProm, `/label/${label}/values`, params),
        `values of ${label} for ${params["match[]"]}`,
      );
    }
  }
  const meta = async (ask: typeof askHerd) => (await ask("/metadata", { metric: "parity_temperature" })).data;
  assert.deepEqual(await meta(askHerd), await meta(askProm));
  const all = async (ask: typeof askHerd) => {
    const data = (await ask("/metadata", {})).data as unknown as Record<string, unknown>;
    return Object.fromEntries(Object.entries(data).filter(([k]) => k.startsWith("parity_")));
  };
  assert.deepEqual(await all(askHerd), await all(askProm));
  const ex = { query: "parity_requests_total", start: String(t - 60), end: String(t) };
  assert.deepEqual(
    (await askHerd("/query_exemplars", ex)).data,
    (await askProm("/query_exemplars", ex)).data,
  );
});
