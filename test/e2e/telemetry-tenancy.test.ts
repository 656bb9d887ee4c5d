// Telemetry by tenant, end to end: an app deployed in tenant acme gets acme's
// ingest token from its agent (OTEL_* env), sends a span and a metric point
// claiming to be tenant default, and both land as acme's; the token reads nothing.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { cleanupHerd, type Herd, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-telemetry-tenancy-"));

before(async () => {
  herd = await startHerd();
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

// The app: sends one span and one point with the OTEL_* settings the agent gave it, then serves /healthz.
const SERVER_JS = `
import { createServer } from "node:http";
const endpoint = process.env.OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces";
const auth = decodeURIComponent(process.env.OTEL_EXPORTER_OTLP_HEADERS.split("=").slice(1).join("="));
const headers = { authorization: auth, "content-type": "application/json" };
const api = endpoint.slice(0, endpoint.indexOf("/api/v1/") + 8);
const now = Date.now();
const span = {
  resourceSpans: [{
    resource: { attributes: [
      { key: "service.name", value: { stringValue: "claims/web" } },
      { key: "herd.tenant", value: { stringValue: "default" } },
    ] },
    scopeSpans: [{ spans: [{
      traceId: process.env.TRACE_ID, spanId: "00000000000000a1", name: "GET /", kind: 2,
      startTimeUnixNano: String(now * 1e6), endTimeUnixNano: String((now + 2) * 1e6),
    }] }],
  }],
};
const point = { series: [{ metric: "app_pushed", labels: { tenant: "default" }, samples: [[now, 42]] }] };
const results = {};
for (const [name, url, body] of [["span", endpoint, span], ["point", api + "metrics/write", point]]) {
  const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  results[name] = res.status;
}
results.read = (await fetch(api + "traces", { headers })).status;
console.log("sent " + JSON.stringify(results));
createServer((req, res) => res.end("ok\\n")).listen(Number(process.env.PORT));
`;

test("an app's spans and points carry its tenant, whatever it claims; its token reads nothing", async () => {
  assert.equal((await herd.api("POST", "/tenants", { name: "acme" })).status, 201);
  const dir = join(work, "claims");
  mkdirSync(dir);
  const traceId = `${Math.floor(Date.now() / 1000).toString(16)}${"ab".repeat(12)}`;
  writeFileSync(
    join(dir, "herd.yaml"),
    `app: claims
services:
  web:
    command: node server.mjs
    instances: 1
    health: { path: /healthz }
    env: { TRACE_ID: "${traceId}" }
`,
  );
  writeFileSync(join(dir, "server.mjs"), SERVER_JS);
  const r = await herd.cli(["deploy", "--tenant", "acme", dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);

  const logs = await waitFor("the app's report in its logs", async () => {
    const res = await herd.api<{ items: { line: string }[] }>("GET", "/apps/claims/logs?tenant=acme");
    return res.body.items.find((l) => l.line.startsWith("sent "))?.line;
  });
  assert.deepEqual(JSON.parse(logs.slice(5)), { span: 200, point: 200, read: 403 });

  const trace = await waitFor("the span, as acme's", async () => {
    const res = await herd.api<{ spans: number }>("GET", `/traces/${traceId}?tenant=acme`);
    return res.status === 200 ? res : undefined;
  });
  assert.equal(trace.body.spans, 1);
  assert.equal((await herd.api("GET", `/traces/${traceId}?tenant=default`)).status, 404, "not default's");
  const q = await herd.api<{ data: { result: { metric: Record<string, string> }[] } }>(
    "GET",
    "/prom/api/v1/query?query=app_pushed",
  );
  assert.deepEqual(
    q.body.data.result.map((s) => s.metric.tenant),
    ["acme"],
  );
});
