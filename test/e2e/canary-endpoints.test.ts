// A canary's analysis per endpoint from traces, on a real herd: the app sends
// its own SERVER spans (OTLP/HTTP JSON to the endpoint herd gives it), v2 is
// slow on /search only — a third of the requests, so the service-wide p50
// does not see it — and the canary aborts at its first step naming the route,
// while v1 keeps serving.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Instance } from "../../src/model/objects.ts";
import {
  cleanupHerd,
  gatewaysInSync,
  type Herd,
  served,
  startHerd,
  steadyTraffic,
  waitFor,
} from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-canary-endpoints-"));
const app = join(work, "shop");
const HOST = "shop.localhost";

before(async () => {
  herd = await startHerd();
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "shop", private: true, type: "module" }));
  // Answers / and /search; SEARCH_MS delays /search. Each sampled request becomes a SERVER span, child of
  // the gateway's (traceparent), posted every 200 ms as OTLP JSON with herd's endpoint and token.
  writeFileSync(
    join(app, "server.js"),
    `import { createServer } from "node:http";
import { randomBytes } from "node:crypto";
const searchMs = Number(process.env.SEARCH_MS ?? 0);
const headers = { "content-type": "application/json" };
for (const pair of (process.env.OTEL_EXPORTER_OTLP_HEADERS ?? "").split(",")) {
  const at = pair.indexOf("=");
  if (at > 0) headers[pair.slice(0, at).trim()] = decodeURIComponent(pair.slice(at + 1).trim());
}
const resource = [["service.name", process.env.OTEL_SERVICE_NAME]];
for (const pair of (process.env.OTEL_RESOURCE_ATTRIBUTES ?? "").split(",")) {
  const at = pair.indexOf("=");
  if (at > 0) resource.push([pair.slice(0, at), decodeURIComponent(pair.slice(at + 1))]);
}
const attr = ([key, value]) => ({ key, value: { stringValue: String(value) } });
let spans = [];
setInterval(() => {
  if (spans.length === 0) return;
  const body = { resourceSpans: [{ resource: { attributes: resource.map(attr) }, scopeSpans: [{ spans }] }] };
  spans = [];
  fetch(process.env.OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces", { method: "POST", headers, body: JSON.stringify(body) }).catch(() => {});
}, 200);
createServer((req, res) => {
  if (req.url === "/healthz") return res.end("ok");
  const start = process.hrtime.bigint();
  const wall = BigInt(Date.now()) * 1000000n;
  const route = req.url.startsWith("/search") ? "/search" : "/";
  setTimeout(() => {
    res.end(route + " " + process.env.HERD_RELEASE);
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(req.headers.traceparent ?? "");
    if (!m) return;
    spans.push({
      traceId: m[1], spanId: randomBytes(8).toString("hex"), parentSpanId: m[2],
      name: "GET " + route, kind: 2,
      startTimeUnixNano: String(wall), endTimeUnixNano: String(wall + (process.hrtime.bigint() - start)),
      attributes: [attr(["http.route", route])], status: {},
    });
  }, route === "/search" ? searchMs : 0);
}).listen(Number(process.env.PORT));
`,
  );
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

function manifest(searchMs: number): void {
  writeFileSync(
    join(app, "herd.yaml"),
    [
      "app: shop",
      "services:",
      "  web:",
      "    command: node server.js",
      "    instances: 2",
      "    resources: { cpu: 0.1, memory: 48Mi }",
      "    health: { path: /healthz }",
      `    routes: [{ host: ${HOST} }]`,
      `    env: { SEARCH_MS: ${searchMs} }`,
      "    rollout:",
      "      strategy: canary",
      "      steps: [{ weight: 50, pause: 6s }, { weight: 100 }]",
      '      analysis: { interval: 3s, minRequests: 20, errorRate: "< 1%", p50: "< 2x baseline" }',
      "",
    ].join("\n"),
  );
}

test("a canary slow on one endpoint only aborts on its traces, naming the route; v1 keeps serving", async () => {
  manifest(0);
  const v1 = await herd.cli(["deploy", app]);
  assert.equal(v1.code, 0, v1.stdout + v1.stderr);
  await served(herd, HOST, "/search 1", "/search"); // the traffic starts once the gateway has v1's route

  manifest(150);
  const home = steadyTraffic(herd.gatewayUrl, HOST, { connections: 2, rate: 60, maxSeconds: 120 });
  const search = steadyTraffic(herd.gatewayUrl, HOST, {
    connections: 4,
    rate: 30,
    maxSeconds: 120,
    path: "/search",
  });
  const v2 = await herd.cli(["deploy", app], { timeoutMs: 150_000 });
  await Promise.all([home.stop(), search.stop()]);
  assert.equal(v2.code, 1, v2.stdout + v2.stderr);
  // /search's p50 is out of bounds (the service-wide p50 mostly stays within them, but a loaded machine may tip it).
  assert.match(
    v2.stdout,
    /web: step 1\/2 \(50%\): analysis FAILED: per endpoint from traces: \/search p50 \d+ms ≥ \d+ms \(baseline \d+ms\); service-wide: /,
  );
  assert.match(
    v2.stderr,
    /canary v2 failed its analysis at step 1\/2 \(50%\): per endpoint from traces: \/search p50/,
  );
  await waitFor("v2's instances to stop", async () =>
    ((await herd.api<{ items: Instance[] }>("GET", "/apps/shop/instances")).body.items ?? [])
      .filter((i) => i.desired === "running")
      .every((i) => i.release === 1),
  );
  // The gateway drops v2 from its table a moment after the store stops it; then only v1 answers.
  // (One v1 answer says nothing: v1 answered beside v2 during the canary.)
  await gatewaysInSync(herd);
  for (let i = 0; i < 5; i++) assert.equal((await herd.request(HOST, "/search")).body, "/search 1");
});
