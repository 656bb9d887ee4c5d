// Telemetry separated by tenant, through the real API: PromQL (every selector
// trick), pushed points and spans stamped with the writer's tenant, trace
// reads, alert rule limits, and the query limits (timeout, concurrency, max
// samples, /healthz answering during a heavy query).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { toOtlpJson } from "../observe/traces/otlp.ts";
import { hexId, makeSpan } from "../observe/traces/testing.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-telemetry-tenancy-"));
/** Tokens: a viewer and a deployer of tenant a, a viewer of b, a's ingest token. */
const tok: Record<"aViewer" | "aDeployer" | "bViewer" | "aIngest", string> = {
  aViewer: "",
  aDeployer: "",
  bViewer: "",
  aIngest: "",
};

// biome-ignore lint/suspicious/noExplicitAny: tests read whatever the API answered
type Reply = { status: number; headers: Headers; body: any };
const call = (
  method: string,
  path: string,
  body?: unknown,
  token?: string,
  contentType?: string,
): Promise<Reply> =>
  apiCall(server, method, path, body, {
    ...(token ? { token } : {}),
    ...(contentType ? { contentType } : {}),
  });

before(async () => {
  server = await startServer({
    dataDir: dir,
    port: 0,
    logger: silentLogger,
    metrics: { scrapeIntervalMs: 3600_000, query: { concurrency: 1, queue: 1, maxSamples: 2_000_000 } },
    traces: { flushMs: 0 },
  });
  for (const t of ["a", "b"]) assert.equal((await call("POST", "/tenants", { name: t })).status, 201);
  const account = async (tenant: string, name: string, role: string) => {
    assert.equal((await call("POST", `/tenants/${tenant}/service-accounts`, { name, role })).status, 201);
    const r = await call("POST", "/tokens", { name: "test", user: name });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.token as string;
  };
  tok.aViewer = await account("a", "a-viewer", "viewer");
  tok.aDeployer = await account("a", "a-deployer", "deployer");
  tok.bViewer = await account("b", "b-viewer", "viewer");
  const ingest = await call("POST", "/tokens", { name: "a's apps", kind: "ingest", tenant: "a" });
  assert.equal(ingest.status, 201, JSON.stringify(ingest.body));
  tok.aIngest = ingest.body.token;
  // The admin writes as given: two tenants' series and a platform series (no tenant label).
  const now = Date.now();
  const series = [
    { metric: "secret_metric", labels: { tenant: "a", k: "a1" }, samples: [[now, 1]] },
    { metric: "secret_metric", labels: { tenant: "b", k: "b1" }, samples: [[now, 100]] },
    { metric: "b_only_metric", labels: { tenant: "b" }, samples: [[now, 5]] },
    { metric: "platform_secret", labels: { component: "api" }, samples: [[now, 7]] },
  ];
  assert.equal((await call("POST", "/metrics/write", { series })).status, 200);
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const prom = (path: string, params: Record<string, string | string[]>, token?: string) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) for (const one of [v].flat()) q.append(k, one);
  return call("GET", `/prom/api/v1/${path}?${q}`, undefined, token);
};
/** An instant query's result as [labels, value] pairs. */
const instant = async (query: string, token?: string, extra: Record<string, string> = {}) => {
  const r = await prom("query", { query, ...extra }, token);
  assert.equal(r.status, 200, `${query}: ${JSON.stringify(r.body)}`);
  return (r.body.data.result as { metric: Record<string, string>; value: [number, string] }[]).map(
    (x) => [x.metric, x.value[1]] as const,
  );
};

test("a tenant's PromQL sees only its series, whatever selector it writes", async () => {
  const a = tok.aViewer;
  const onlyA = (rows: readonly (readonly [Record<string, string>, string])[], what: string) => {
    assert.ok(rows.length > 0, `${what}: A sees its own series`);
    for (const [m] of rows) assert.equal(m.tenant, "a", `${what}: ${JSON.stringify(m)}`);
  };
  onlyA(await instant('{__name__=~".+"}', a), "every name");
  assert.deepEqual(await instant('secret_metric{tenant="b"}', a), [
    [{ __name__: "secret_metric", tenant: "a", k: "a1" }, "1"],
  ]);
  onlyA(await instant('secret_metric{tenant=~".*"}', a), "a tenant regex");
  onlyA(await instant('secret_metric{tenant!="a"}', a), "a negative tenant matcher");
  onlyA(await instant('b_only_metric or platform_secret or secret_metric{tenant="b"}', a), "or");
  assert.deepEqual(await instant('sum(secret_metric{tenant="b"})', a), [[{}, "1"]]);
  assert.deepEqual(await instant('label_replace(secret_metric, "tenant", "b", "", "")', a), [
    [{ __name__: "secret_metric", tenant: "b", k: "a1" }, "1"],
  ]);
  // absent() of another tenant's metric: absent for A.
  assert.deepEqual(await instant('absent(b_only_metric{tenant="b"})', a), [[{ tenant: "a" }, "1"]]);
  assert.deepEqual(await instant("count(platform_secret)", a), []);
  // A subquery's selectors are the tenant's too.
  assert.deepEqual(await instant("max_over_time(b_only_metric[5m:1m])", a), []);
  // Metadata: the admin sees herd's own families, a tenant only the families of its series.
  let adminMeta: Record<string, unknown> = {};
  for (let i = 0; i < 100 && !adminMeta.herd_api_requests_total; i++) {
    adminMeta = (await prom("metadata", {})).body.data;
    if (!adminMeta.herd_api_requests_total) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(adminMeta.herd_api_requests_total, "herd's own metadata");
  assert.deepEqual((await prom("metadata", {}, a)).body.data, {});
  // (Asked a minute later, so a step of the subquery comes after the samples.)
  const later = { time: String(Date.now() / 1000 + 60) };
  onlyA(await instant('last_over_time({__name__=~".+"}[5m:10s])', a, later), "a subquery");
  const now = Date.now() / 1000;
  const range = await prom(
    "query_range",
    { query: '{__name__=~".+"} or vector(1)', start: String(now - 60), end: String(now), step: "15" },
    a,
  );
  assert.equal(range.status, 200);
  for (const s of range.body.data.result)
    assert.ok(s.metric.tenant === "a" || Object.keys(s.metric).length === 0);
  // The metadata APIs too.
  const series = await prom("series", { "match[]": ['{__name__=~".+"}', 'b_only_metric{tenant="b"}'] }, a);
  assert.equal(series.status, 200);
  assert.ok(series.body.data.length > 0);
  for (const m of series.body.data) assert.equal(m.tenant, "a");
  const labels = await prom("labels", {}, a);
  assert.ok(labels.body.data.includes("k"));
  assert.ok(!labels.body.data.includes("component"), "a platform series' label");
  const names = await prom("label/__name__/values", {}, a);
  assert.ok(names.body.data.includes("secret_metric"));
  assert.ok(!names.body.data.includes("b_only_metric") && !names.body.data.includes("platform_secret"));
  assert.deepEqual((await prom("label/tenant/values", { "match[]": 'up{tenant="b"}' }, a)).body.data, []);
  assert.deepEqual((await prom("label/tenant/values", {}, a)).body.data, ["a"]);
  // Naming another tenant is refused; B sees B's; the platform admin sees all, or one tenant's.
  assert.equal((await prom("query", { query: "secret_metric", tenant: "b" }, a)).status, 403);
  assert.deepEqual(
    (await instant("secret_metric", tok.bViewer)).map(([m]) => m.k),
    ["b1"],
  );
  const all = await instant('{__name__=~"secret_metric|b_only_metric|platform_secret"}');
  assert.equal(all.length, 4);
  const onlyB = await instant('{__name__=~"secret_metric|b_only_metric|platform_secret"}', undefined, {
    tenant: "b",
  });
  assert.deepEqual(onlyB.map(([m]) => m.__name__).sort(), ["b_only_metric", "secret_metric"]);
});

test("points pushed with a tenant's credential carry that tenant, whatever the body says", async () => {
  const now = Date.now();
  const forged = {
    series: [{ metric: "pushed", labels: { tenant: "b", k: "deployer" }, samples: [[now, 1]] }],
  };
  assert.equal(
    (await call("POST", "/metrics/write", forged, tok.aViewer)).status,
    403,
    "a viewer writes nothing",
  );
  assert.equal((await call("POST", "/metrics/write", forged, tok.aDeployer)).status, 200);
  const text = 'pushed{tenant="b",k="ingest"} 3\n';
  assert.equal((await call("POST", "/metrics/write", text, tok.aIngest, "text/plain")).status, 200);
  assert.equal((await call("POST", "/metrics/write?tenant=b", text, tok.aIngest, "text/plain")).status, 403);
  const rows = await instant("pushed");
  assert.deepEqual(rows.map(([m]) => [m.k, m.tenant]).sort(), [
    ["deployer", "a"],
    ["ingest", "a"],
  ]);
  assert.deepEqual(await instant("pushed", tok.bViewer), []);
});

test("spans sent with a tenant's credential carry that tenant; a tenant reads only its own spans", async () => {
  const t = Date.now() * 1000 - 1e6;
  const shared = 0x5eed;
  const onlyB = 0xb0b;
  // a's app claims to be b: stamped a.
  const fromA = toOtlpJson([makeSpan({ trace: shared, id: 1, service: "pay", tenant: "b", start: t })]);
  assert.equal((await call("POST", "/traces/otlp/v1/traces", fromA, tok.aIngest)).status, 200);
  // The platform admin sends as given: b's spans, one in the same trace.
  const fromB = toOtlpJson([
    makeSpan({ trace: shared, id: 2, parent: 1, service: "ledger", tenant: "b", start: t + 10 }),
    makeSpan({ trace: onlyB, id: 3, service: "ledger", tenant: "b", start: t + 20 }),
  ]);
  assert.equal((await call("POST", "/traces/otlp/v1/traces", fromB)).status, 200);
  // Zipkin too: a's token, stamped a (Zipkin spans carry no tenant of their own).
  const zipkin = [
    {
      traceId: hexId(0x21b, 32),
      id: hexId(9),
      name: "get /z",
      kind: "SERVER",
      timestamp: t,
      duration: 10,
      localEndpoint: { serviceName: "zpay" },
    },
  ];
  assert.equal((await call("POST", "/traces/zipkin/api/v2/spans", zipkin, tok.aIngest)).status, 202);
  server.traces.store.flush();
  assert.equal((await call("GET", `/traces/${hexId(0x21b, 32)}`, undefined, tok.aViewer)).status, 200);
  assert.equal((await call("GET", `/traces/${hexId(0x21b, 32)}`, undefined, tok.bViewer)).status, 404);
  const sharedId = hexId(shared, 32);
  const bId = hexId(onlyB, 32);
  const aTrace = await call("GET", `/traces/${sharedId}`, undefined, tok.aViewer);
  assert.equal(aTrace.status, 200);
  assert.deepEqual([aTrace.body.spans, aTrace.body.roots[0].service], [1, "pay"]);
  assert.equal((await call("GET", `/traces/${sharedId}`, undefined, tok.bViewer)).body.spans, 1);
  assert.equal((await call("GET", `/traces/${sharedId}`)).body.spans, 2, "the platform admin sees both");
  assert.equal((await call("GET", `/traces/${bId}`, undefined, tok.aViewer)).status, 404);
  const search = await call("GET", "/traces?since=1h", undefined, tok.aViewer);
  assert.deepEqual(
    search.body.items.map((i: { traceId: string }) => i.traceId).sort(),
    [hexId(0x21b, 32), sharedId].sort(),
  );
  assert.equal((await call("GET", "/traces?since=1h", undefined, tok.bViewer)).body.items.length, 2);
  for (const path of ["/traces/map?window=1h", "/traces/top?window=1h"]) {
    const r = await call("GET", path, undefined, tok.aViewer);
    assert.equal(r.status, 200);
    assert.match(JSON.stringify(r.body), /"pay"/);
    assert.doesNotMatch(JSON.stringify(r.body), /ledger/, `${path} shows nothing of b`);
  }
});

test("a tenant may have 100 alert rules; the 101st is a 409 saying so", async () => {
  for (let i = 0; i < 100; i++) {
    const r = await call("PUT", `/alerts/rules/r${i}`, { expr: "secret_metric" }, tok.aDeployer);
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  const over = await call("PUT", "/alerts/rules/r100", { expr: "secret_metric" }, tok.aDeployer);
  assert.equal(over.status, 409);
  assert.match(over.body.message, /tenant a has 100 alert rules, the most a tenant may have \(100\)/);
  // Changing an existing rule is still fine; another tenant is not affected.
  assert.equal((await call("PUT", "/alerts/rules/r5", { expr: "up" }, tok.aDeployer)).status, 200);
  assert.equal((await call("PUT", "/alerts/rules/r100", { expr: "up" }, undefined)).status, 201);
});

test("queries run off the event loop with a timeout, a concurrency limit and a sample limit", async () => {
  // 2,000 series × 360 samples (an hour every 10 s) of tenant a, written straight into the storage.
  const now = Date.now();
  const start = now - 3600_000;
  for (let i = 0; i < 2000; i += 100) {
    const batch = [];
    for (let j = i; j < i + 100; j++) {
      const samples: [number, number][] = [];
      for (let k = 0; k < 360; k++) samples.push([start + k * 10_000, (j * 7 + k) % 200]);
      batch.push({ labels: { __name__: "heavy", tenant: "a", g: String(j % 10), i: String(j) }, samples });
    }
    server.metrics.tsdb.append(batch);
  }
  const heavy = {
    query: "count by (g) (heavy > 100) / count by (g) (heavy)",
    start: String(start / 1000),
    end: String(now / 1000),
    step: "10",
  };
  // /healthz answers while a heavy query works.
  const began = performance.now();
  let done = false;
  const running = prom("query_range", heavy, tok.aViewer).finally(() => {
    done = true;
  });
  const pings: number[] = [];
  while (!done) {
    const t0 = performance.now();
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    pings.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 10));
  }
  const res = await running;
  const queryMs = performance.now() - began;
  assert.equal(res.status, 200, JSON.stringify(res.body).slice(0, 300));
  assert.equal(res.body.data.result.length, 10);
  const worst = Math.max(...pings);
  console.log(
    `heavy query ${queryMs.toFixed(0)} ms; /healthz during it: ${pings.length} answers, worst ${worst.toFixed(1)} ms (${((worst / queryMs) * 100).toFixed(1)}% of the query's time)`,
  );
  assert.ok(queryMs > 300, `the query must be heavy enough to tell (took ${queryMs.toFixed(0)} ms)`);
  assert.ok(pings.length >= 5 && worst < queryMs / 4, `/healthz waited ${worst.toFixed(0)} ms`);

  // A timeout (?timeout= lowers the server's limit): 503 errorType timeout; the next query works.
  const slow = await prom("query_range", { ...heavy, timeout: "200ms" }, tok.aViewer);
  assert.equal(slow.status, 503);
  assert.equal(slow.body.errorType, "timeout");
  assert.match(slow.body.error, /query timed out after 0.2s/);
  assert.deepEqual(await instant("secret_metric", tok.aViewer), [
    [{ __name__: "secret_metric", tenant: "a", k: "a1" }, "1"],
  ]);
  assert.equal((await prom("query", { query: "up", timeout: "soon" }, tok.aViewer)).status, 400);

  // One running, one waiting, the third refused with 503 and Retry-After.
  const together = await Promise.all(
    [0, 1, 2].map((i) =>
      new Promise((r) => setTimeout(r, i * 20)).then(() =>
        prom("query_range", { ...heavy, timeout: "1s" }, tok.aViewer),
      ),
    ),
  );
  const busy = together.filter((r) => r.status === 503 && r.body.errorType === "unavailable");
  assert.equal(busy.length, 1, JSON.stringify(together.map((r) => [r.status, r.body.error])));
  assert.match(busy[0]?.body.error, /too many queries at once \(1 running, 1 waiting\)/);
  assert.equal(busy[0]?.headers.get("retry-after"), "1");

  // More samples than the server allows (3 × 720,000 > 2,000,000): 422, in Prometheus' words.
  const three = "count_over_time(heavy[1h]) + count_over_time(heavy[1h]) + count_over_time(heavy[1h])";
  const big = await prom("query", { query: three, time: String(now / 1000) }, tok.aViewer);
  assert.equal(big.status, 422);
  assert.equal(big.body.errorType, "execution");
  assert.match(big.body.error, /query processing would load too many samples into memory/);
  // The platform admin's queries have the same limits; another tenant's query reads none of a's samples.
  assert.equal((await prom("query", { query: three, time: String(now / 1000) })).status, 422);
  assert.equal((await prom("query", { query: three, time: String(now / 1000) }, tok.bViewer)).status, 200);
});
