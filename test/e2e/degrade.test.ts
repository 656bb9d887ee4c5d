// The remediation engine's degrade against real processes: `herd up`, an app
// whose `front` service calls its `deps` service through the gateway and sends
// a client span per call (OTLP/HTTP JSON to the ingest herd gives it). When
// deps fails (told so through its own route), the engine sees front's failing calls in the spans and switches
// front's route to its fallback: real gateway traffic gets the fallback
// answer. When deps answers again (the gateway's probe requests reach front,
// whose calls succeed in the spans), the engine switches it back and traffic
// gets front's own answer again.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Event, Service } from "../../src/model/objects.ts";
import type { RemediationPolicy } from "../../src/model/remediation.ts";
import { cleanupHerd, type Herd, served, startHerd, steadyTraffic, waitFor } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-degrade-"));
const dir = join(work, "shop");
const FRONT = "front.shop.localhost";
const DEPS = "deps.shop.localhost";
const FALLBACK = "recommendations are resting";

before(async () => {
  herd = await startHerd();
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

/** front: GET / calls deps through the gateway, answers `front: <deps' answer>` or 502; one client span per call. */
const FRONT_JS = `
import { createServer, get } from "node:http";
import { randomBytes } from "node:crypto";
const gateway = new URL(process.env.GATEWAY);
const spans = [];
const hex = (n) => randomBytes(n).toString("hex");
function flush() {
  const url = process.env.OTEL_EXPORTER_OTLP_ENDPOINT && process.env.OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces";
  if (!url || spans.length === 0) return;
  const headers = { "content-type": "application/json" };
  for (const pair of (process.env.OTEL_EXPORTER_OTLP_HEADERS ?? "").split(",")) {
    const i = pair.indexOf("=");
    if (i > 0) headers[pair.slice(0, i).trim()] = decodeURIComponent(pair.slice(i + 1).trim());
  }
  const body = JSON.stringify({ resourceSpans: [{
    resource: { attributes: [{ key: "service.name", value: { stringValue: process.env.OTEL_SERVICE_NAME } }] },
    scopeSpans: [{ spans: spans.splice(0) }],
  }] });
  fetch(url, { method: "POST", headers, body }).catch(() => {});
}
setInterval(flush, 300);
createServer((req, res) => {
  if (req.url === "/health") return res.end("ok");
  const start = Date.now();
  const done = (ok, text) => {
    spans.push({
      traceId: hex(16), spanId: hex(8), name: "GET deps", kind: 3,
      startTimeUnixNano: String(start * 1e6), endTimeUnixNano: String(Date.now() * 1e6),
      attributes: [{ key: "peer.service", value: { stringValue: "shop/deps" } }],
      status: { code: ok ? 1 : 2 },
    });
    res.statusCode = ok ? 200 : 502;
    res.end(ok ? "front: " + text : "deps failed");
  };
  get({ host: gateway.hostname, port: gateway.port, path: "/", headers: { host: "deps.shop.localhost" } }, (r) => {
    let text = "";
    r.on("data", (c) => (text += c));
    r.on("end", () => done(r.statusCode === 200, text));
  }).on("error", () => done(false, ""));
}).listen(Number(process.env.PORT));
`;

/** deps: answers, or 500 between GET /_fail and GET /_heal. */
const DEPS_JS = `
import { createServer } from "node:http";
let failing = false;
createServer((req, res) => {
  if (req.url === "/health") return res.end("ok");
  if (req.url === "/_fail" || req.url === "/_heal") { failing = req.url === "/_fail"; return res.end(req.url); }
  if (failing) { res.statusCode = 500; return res.end("broken"); }
  res.end("three recommendations");
}).listen(Number(process.env.PORT));
`;

test("a failing dependency seen in spans switches the caller's route to its fallback, and back when it answers again", async () => {
  mkdirSync(dir);
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: "shop", private: true, type: "module", scripts: { start: "node front.js" } }),
  );
  writeFileSync(join(dir, "front.js"), FRONT_JS);
  writeFileSync(join(dir, "deps.js"), DEPS_JS);
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      "app: shop",
      "services:",
      "  front:",
      "    command: node front.js",
      "    instances: 1",
      "    resources: { cpu: 0.1, memory: 96Mi }",
      "    health: { path: /health }",
      `    env: { GATEWAY: "${herd.gatewayUrl}" }`,
      "    routes:",
      `      - host: ${FRONT}`,
      `        fallback: { status: 200, body: "${FALLBACK}" }`,
      "  deps:",
      "    command: node deps.js",
      "    instances: 1",
      "    resources: { cpu: 0.1, memory: 32Mi }",
      "    health: { path: /health }",
      "    routes: [{ host: deps.shop.localhost }]",
      "",
    ].join("\n"),
  );
  const d = await herd.cli(["deploy", dir]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const set = await herd.api("PUT", "/apps/shop/remediation", {
    rules: [{ name: "deps", symptom: "error-rate", service: "front", windowS: 5, actions: ["degrade"] }],
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  const answer = async () => (await herd.request(FRONT, "/")).body;
  const events = async () =>
    (await herd.api<{ items: Event[] }>("GET", "/events?app=shop&limit=500")).body.items;
  const front = async () =>
    (await herd.api<{ services: Service[] }>("GET", "/apps/shop")).body.services.find(
      (s) => s.name === "front",
    )!;
  const explain = async (err: Error): Promise<never> => {
    const policy = (await herd.api<RemediationPolicy>("GET", "/apps/shop/remediation")).body;
    const map = (await herd.api("GET", "/traces/map?window=2m")).body;
    throw new Error(
      `${err.message}\nevents: ${(await events()).map((e) => `${e.reason}: ${e.message} ${JSON.stringify(e.details ?? [])}`).join("\n  ")}\npolicy: ${JSON.stringify(policy).slice(0, 3000)}\nspans' map: ${JSON.stringify(map).slice(0, 3000)}`,
    );
  };
  // front's routes (and deps', which front calls through the gateway) reach the gateway a moment after the deploy.
  await served(herd, FRONT, "front: three recommendations");

  const traffic = steadyTraffic(herd.gatewayUrl, FRONT, { connections: 4, rate: 30, maxSeconds: 150 });
  try {
    assert.equal((await herd.request(DEPS, "/_fail")).body, "/_fail");
    const decided = await waitFor(
      "the engine's degrade decision",
      async () => (await events()).find((e) => e.reason === "Remediation" && /degrade front/.test(e.message)),
      60_000,
    ).catch(explain);
    assert.match(decided.message, /^deps: degrade front: front's calls to shop\/deps fail/);
    assert.ok(
      decided.details?.some((l) => /^spans shop\/front → shop\/deps: \d+ of \d+ calls failed/.test(l)),
      String(decided.details),
    );
    assert.equal((await front()).traffic?.fallback, true);
    // Real gateway traffic gets the fallback (the gateway's table follows within a moment).
    await waitFor("the fallback answer", async () => (await answer()) === FALLBACK, 10_000);
    const during = traffic.counts();
    // The switch holds while deps still fails (front's probe calls keep failing in the spans).
    await new Promise((r) => setTimeout(r, 4000));
    assert.equal((await front()).traffic?.fallback, true, "still switched while deps fails");
    const fallbackShare = traffic.counts().ok - during.ok;
    assert.ok(fallbackShare > 0, "requests answered while degraded");

    assert.equal((await herd.request(DEPS, "/_heal")).body, "/_heal");
    const restored = await waitFor(
      "the switch back",
      async () => (await events()).find((e) => e.reason === "RemediationRestored"),
      60_000,
    ).catch(explain);
    assert.match(
      restored.message,
      /^front's routes are served by front again, no longer their fallback: its calls succeed again: \d+ of \d+ calls to shop\/deps failed/,
    );
    console.log([decided.message, ...(decided.details ?? []), restored.message].join("\n  "));
    assert.equal((await front()).traffic, undefined);
    await waitFor(
      "front's own answer",
      async () => (await answer()) === "front: three recommendations",
      10_000,
    );
    const policy = (await herd.api<RemediationPolicy>("GET", "/apps/shop/remediation")).body;
    assert.equal(policy.degraded, undefined);
  } finally {
    await herd.request(DEPS, "/_heal").catch(() => {});
    const counts = await traffic.stop();
    console.log(
      `traffic while failing, degraded and back: ${JSON.stringify(counts.failures)} of ${counts.total}`,
    );
  }
});
