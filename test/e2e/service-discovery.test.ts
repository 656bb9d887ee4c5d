// Service discovery end to end (docs/service-discovery.md): app front calls app
// hello of the same tenant by the URL its env names (HERD_SERVICE_HELLO_WEB_URL,
// through the node gateway's internal listener), and the call is an edge
// front/web → hello/web in the dependency map; an app of another tenant gets no
// such URL and cannot reach hello with its own token, nor without one; the
// registry lists hello's endpoints and a watch sees a scale change. The same
// through a gateway with workers (--gateway-workers 2): every worker serves the
// internal listener, the call is an edge, and /metrics counts it by caller.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { cleanupHerd, type Herd, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-discovery-"));

before(async () => {
  herd = await startHerd();
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

const HELLO_JS = `
import { createServer } from "node:http";
createServer((req, res) => res.end(req.url === "/healthz" ? "ok" : "hello " + req.url + " from " + process.env.HERD_INSTANCE)).listen(Number(process.env.PORT));
`;

// Calls hello every 300 ms by its env URL and logs each answer.
const FRONT_JS = `
import { createServer } from "node:http";
const url = process.env.HERD_SERVICE_HELLO_WEB_URL;
console.log("env " + JSON.stringify(Object.keys(process.env).filter((k) => k.startsWith("HERD_SERVICE_")).sort()));
setInterval(async () => {
  try {
    const res = await fetch(url + "/greet?from=front");
    console.log("called " + res.status + " " + (await res.text()));
  } catch (err) { console.log("failed " + err.message); }
}, 300);
createServer((req, res) => res.end("ok")).listen(Number(process.env.PORT));
`;

// Another tenant's app: its env names only its own tenant's services; it tries hello with its own
// token (the path of its own URL with hello's name) and with no token at all.
const SPY_JS = `
import { createServer } from "node:http";
const own = process.env.HERD_SERVICE_SPY_WEB_URL;
const keys = Object.keys(process.env).filter((k) => k.startsWith("HERD_SERVICE_")).sort();
const withToken = await fetch(own.replace(/\\/spy\\/web$/, "/hello/web") + "/greet");
const base = new URL(own);
const noToken = await fetch(base.origin + "/hello/web/greet");
console.log("spy " + JSON.stringify({ keys, withToken: withToken.status, noToken: noToken.status, body: await withToken.text() }));
createServer((req, res) => res.end("ok")).listen(Number(process.env.PORT));
`;

function app(name: string, js: string, instances = 1, base = work): string {
  const dir = join(base, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "herd.yaml"),
    `app: ${name}\nservices:\n  web:\n    command: node server.mjs\n    instances: ${instances}\n    health: { path: /healthz }\n`,
  );
  writeFileSync(join(dir, "server.mjs"), js);
  return dir;
}

async function logLine(app: string, tenant: string, prefix: string, on = herd): Promise<string> {
  return waitFor(`${app}'s "${prefix}" line`, async () => {
    const res = await on.api<{ items: { line: string }[] }>("GET", `/apps/${app}/logs?tenant=${tenant}`);
    return res.body.items?.find((l) => l.line.startsWith(prefix))?.line;
  });
}

test("two apps talk by internal name; the call is a map edge; another tenant cannot reach it; the registry watches a scale", async () => {
  for (const name of ["acme", "rival"])
    assert.equal((await herd.api("POST", "/tenants", { name })).status, 201);
  for (const [name, js, tenant] of [
    ["hello", HELLO_JS, "acme"],
    ["front", FRONT_JS, "acme"],
    ["spy", SPY_JS, "rival"],
  ] as const) {
    const r = await herd.cli(["deploy", "--tenant", tenant, app(name, js)], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
  }
  // front was deployed after hello: its env names both of acme's services (and not spy).
  const env = JSON.parse((await logLine("front", "acme", "env ")).slice(4));
  assert.deepEqual(env, ["HERD_SERVICE_FRONT_WEB_URL", "HERD_SERVICE_HELLO_WEB_URL"]);
  const called = await logLine("front", "acme", "called 200");
  assert.match(called, /^called 200 hello \/greet\?from=front from /);

  const spy = JSON.parse((await logLine("spy", "rival", "spy ")).slice(4));
  assert.deepEqual(spy.keys, ["HERD_SERVICE_SPY_WEB_URL"]);
  assert.equal(spy.withToken, 404, spy.body);
  assert.equal(spy.noToken, 403);

  // The gateway's spans of the internal calls name the caller: an edge front/web → hello/web.
  await waitFor("the edge front/web → hello/web in acme's map", async () => {
    const map = await herd.api<{ edges: { from: string; to: string }[] }>("GET", "/traces/map?tenant=acme");
    return map.body.edges?.some((e) => e.from === "front/web" && e.to === "hello/web");
  });
  const rivalMap = await herd.api<{ edges: { from: string; to: string }[] }>(
    "GET",
    "/traces/map?tenant=rival",
  );
  assert.ok(!rivalMap.body.edges.some((e) => e.to === "hello/web"), "acme's edge is not in rival's map");

  // The registry: hello's one endpoint, then a watch that returns when it scales to 2.
  type List = { version: number; endpoints: { instance: string; port: number; weight: number }[] };
  const path = "/apps/hello/services/web/endpoints?tenant=acme";
  const first = await herd.api<List>("GET", path);
  assert.equal(first.status, 200);
  assert.equal(first.body.endpoints.length, 1);
  assert.equal(first.body.endpoints[0].weight, 100);
  const scaled = herd.cli(["scale", "web=2", "--app", "hello", "--tenant", "acme"]);
  let list = first.body;
  while (list.endpoints.length < 2) {
    const next = await herd.api<List>("GET", `${path}&since=${list.version}`);
    assert.equal(next.status, 200);
    assert.ok(next.body.version >= list.version);
    list = next.body;
  }
  assert.equal((await scaled).code, 0);
  assert.deepEqual(
    list.endpoints.map((e) => e.weight),
    [50, 50],
  );
  assert.ok(list.version > first.body.version);
});

test("through a gateway with workers (--gateway-workers 2): two apps talk by internal name, an edge, counted by caller", async () => {
  const workers = await startHerd({ extraArgs: ["--gateway-workers", "2"] });
  try {
    const gateways = await workers.api<{ items: { workers?: number; metricsUrl?: string }[] }>(
      "GET",
      "/gateways",
    );
    assert.equal(gateways.body.items.length, 1);
    assert.equal(gateways.body.items[0].workers, 2, "herd up's gateway runs two workers");
    const base = join(work, "workers");
    for (const [name, js] of [
      ["hello", HELLO_JS],
      ["front", FRONT_JS],
    ] as const) {
      const r = await workers.cli(["deploy", app(name, js, 1, base)], { timeoutMs: 120_000 });
      assert.equal(r.code, 0, r.stdout + r.stderr);
    }
    const called = await logLine("front", "default", "called 200", workers);
    assert.match(called, /^called 200 hello \/greet\?from=front from /);
    await waitFor("the edge front/web → hello/web in the map", async () => {
      const map = await workers.api<{ edges: { from: string; to: string }[] }>("GET", "/traces/map");
      return map.body.edges?.some((e) => e.from === "front/web" && e.to === "hello/web");
    });
    // The primary's /metrics sums the workers' internal calls, labelled with the caller.
    const metricsUrl = /metrics: +(http:\S+)/.exec(workers.output())?.[1];
    assert.ok(metricsUrl, workers.output());
    const internal =
      /^herd_gateway_requests_total\{route="internal",tenant="default",app="hello",service="web",caller="front\/web",code="200",outcome="upstream"\} (\d+)$/m;
    await waitFor("internal calls in the gateway's /metrics", async () => {
      const count = Number(internal.exec(await (await fetch(metricsUrl)).text())?.[1] ?? 0);
      return count > 0;
    });
  } finally {
    await cleanupHerd(workers);
  }
});
