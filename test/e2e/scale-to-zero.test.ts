// Scale to zero, end to end on a real `herd up` (server, agent, gateway): a service with
// `autoscale: {min: 0}` scaled to 0 is woken by the requests that arrive for it; a burst of
// requests, an SSE stream and a WebSocket upgrade all wait and are answered by the woken
// instance, none lost; with no instance able to start, a full queue and a timeout answer 503
// with Retry-After. The service is scaled to 0 with POST /scale, not by the autoscaler's idle rule.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Event, Instance, Node, Service } from "../../src/model/objects.ts";
import { cleanupHerd, type Herd, sleep, startHerd, waitFor } from "./harness.ts";

const HOST = "zero.localhost";
const HOLD_MAX = 20;
const HOLD_TIMEOUT_S = 10;
let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-zero-"));
const app = join(work, "zero");

before(async () => {
  herd = await startHerd({
    extraArgs: [
      "--gateway-workers",
      "1",
      "--gateway-hold-max",
      String(HOLD_MAX),
      "--gateway-hold-timeout",
      `${HOLD_TIMEOUT_S}s`,
    ],
  });
  mkdirSync(app);
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({ name: "zero", private: true, type: "module", scripts: { start: "node server.js" } }),
  );
  // Plain HTTP, an SSE stream (/events) and a raw upgrade that echoes (a WebSocket handshake's shape).
  writeFileSync(
    join(app, "server.js"),
    [
      'import { createServer } from "node:http";',
      "const id = process.env.HERD_INSTANCE;",
      "const server = createServer((req, res) => {",
      '  if (req.url === "/events") {',
      '    res.writeHead(200, { "content-type": "text/event-stream" });',
      '    res.end("data: from " + id + "\\n\\n");',
      "    return;",
      "  }",
      '  res.end("hello " + req.url + " from " + id);',
      "});",
      'server.on("upgrade", (req, socket) => {',
      '  socket.write("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n");',
      '  socket.on("data", (d) => socket.write(d + " from " + id));',
      "});",
      "server.listen(Number(process.env.PORT));",
    ].join("\n"),
  );
  writeFileSync(
    join(app, "herd.yaml"),
    [
      "app: zero",
      "services:",
      "  web:",
      "    command: node server.js",
      "    instances: 1",
      "    resources: { cpu: 0.25, memory: 64Mi }",
      "    health: { path: /healthz }",
      // One-second windows: a count set by hand (POST /scale to 0) is not undone by the autoscaler
      // for requests it saw a minute ago (at zero, any demand in its windows wakes the service).
      "    autoscale: { min: 0, max: 2, target: { rps: 100 }, stableWindow: 1s, panicWindow: 1s }",
      `    routes: [{ host: ${HOST} }]`,
      "  plain:",
      "    command: node server.js",
      "    instances: 1",
      "    resources: { cpu: 0.25, memory: 64Mi }",
      "",
    ].join("\n"),
  );
  const deployed = await herd.cli(["deploy", app]);
  assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
});

after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

async function scaleToZero(): Promise<void> {
  // After the autoscaler's windows have no request left in them (else it wakes the service again).
  await sleep(2500);
  const r = await herd.api("POST", "/apps/zero/scale", { services: { web: 0 } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await waitFor("no instance of zero/web", async () => {
    return (await webInstances()).length === 0;
  });
  assert.equal((await webService()).instances, 0, "still at 0: nothing woke it meanwhile");
  // Instances leave the gateway's table when they stop, before they are deleted: a request now is held.
}

async function webInstances(): Promise<Instance[]> {
  const { body } = await herd.api<{ items: Instance[] }>("GET", "/apps/zero/instances");
  return body.items.filter((i) => i.service === "web");
}

async function webService(): Promise<Service> {
  const { body } = await herd.api<{ items: { name: string; services: Service[] }[] }>("GET", "/apps");
  const web = body.items.find((a) => a.name === "zero")?.services.find((s) => s.name === "web");
  assert.ok(web, "zero/web exists");
  return web;
}

/** A request through the gateway with a long timeout (held requests wait). */
function hold(path: string): Promise<{ status: number; body: string; retryAfter?: string }> {
  const u = new URL(herd.gatewayUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path, headers: { host: HOST }, agent: false },
      (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            ...(res.headers["retry-after"] ? { retryAfter: String(res.headers["retry-after"]) } : {}),
          }),
        );
      },
    );
    req.setTimeout(60_000, () => req.destroy(new Error("no answer in 60 s")));
    req.on("error", reject);
    req.end();
  });
}

/** A raw upgrade through the gateway: the 101's status and the echo of one message. */
function upgrade(): Promise<string> {
  const u = new URL(herd.gatewayUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path: "/ws",
      headers: { host: HOST, connection: "Upgrade", upgrade: "websocket" },
      agent: false,
    });
    req.on("upgrade", (res, socket: Socket) => {
      socket.once("data", (echo) => {
        socket.destroy();
        resolve(`${res.statusCode} ${echo}`);
      });
      socket.write("ping");
    });
    req.on("response", (res) => reject(new Error(`the upgrade was answered ${res.statusCode}`)));
    req.setTimeout(60_000, () => req.destroy(new Error("no upgrade in 60 s")));
    req.on("error", reject);
    req.end();
  });
}

test("the wake route: only for a service that scales to zero, 404 for an unknown one, a no-op while it runs", async () => {
  const web = await webService();
  assert.equal(web.spec.autoscale?.min, 0, "herd.yaml's autoscale reached the spec");
  const running = await herd.api<{ woken: boolean; instances: number }>(
    "POST",
    "/apps/zero/services/web/wake?tenant=default",
  );
  assert.equal(running.status, 200);
  assert.deepEqual([running.body.woken, running.body.instances], [false, 1]);
  const unknown = await herd.api<{ code: string }>("POST", "/apps/zero/services/nope/wake?tenant=default");
  assert.equal(unknown.status, 404);
  const bad = await herd.api<{ code: string; details: { field: string }[] }>(
    "POST",
    "/apps/zero/services/Web!/wake",
  );
  assert.equal(bad.status, 400);
  // A service without autoscale min 0 is not woken by requests: refused, saying why.
  const plain = await herd.api<{ code: string; message: string }>(
    "POST",
    "/apps/zero/services/plain/wake?tenant=default",
  );
  assert.equal(plain.status, 409, JSON.stringify(plain.body));
  assert.match(plain.body.message, /does not scale to zero/);
});

test("no instance can start: a full queue answers 503 at once, the held ones 503 after the timeout, both with Retry-After", {
  timeout: 120_000,
}, async () => {
  await scaleToZero();
  const [node] = (await herd.api<{ items: Node[] }>("GET", "/nodes")).body.items;
  assert.equal((await herd.api("POST", `/nodes/${node.name}/cordon`)).status, 200);
  try {
    const started = Date.now();
    const held = Array.from({ length: HOLD_MAX }, (_, i) => hold(`/held${i}`));
    // The gateway woke the service (instances 1), which cannot be placed on the cordoned node.
    await waitFor("the wake", async () => (await webService()).instances === 1);
    const full = await hold("/one-too-many");
    assert.equal(full.status, 503, full.body);
    assert.equal(full.retryAfter, "1");
    const answers = await Promise.all(held);
    const waited = (Date.now() - started) / 1000;
    for (const r of answers) {
      assert.equal(r.status, 503, r.body);
      assert.equal(r.retryAfter, "5");
      assert.match(r.body, /none started within 10s/);
    }
    assert.ok(waited >= HOLD_TIMEOUT_S - 0.5, `held for the timeout (${waited} s)`);
  } finally {
    await herd.api("POST", `/nodes/${node.name}/uncordon`);
  }
  // Uncordoned, the woken instance is placed and serves.
  await waitFor("the woken instance", async () => (await herd.request(HOST, "/")).status === 200, 60_000);
});

test("a burst, an SSE stream and a WebSocket upgrade wake a service scaled to zero; every one is answered by the woken instance", {
  timeout: 120_000,
}, async () => {
  await scaleToZero();
  const since = Date.now();
  const started = performance.now();
  const burst = Array.from({ length: 10 }, (_, i) => hold(`/burst${i}`));
  const sse = hold("/events");
  const ws = upgrade();
  const answers = await Promise.all(burst);
  const coldMs = performance.now() - started;
  const live = (await webInstances()).filter((i) => i.state === "running");
  assert.equal(live.length, 1, "one instance woken for the whole burst");
  const id = live[0].id;
  for (const [i, r] of answers.entries()) {
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, `hello /burst${i} from ${id}`);
  }
  const events = await sse;
  assert.equal(events.status, 200);
  assert.equal(events.body, `data: from ${id}\n\n`);
  assert.equal(await ws, `101 ping from ${id}`);
  const woken = (await herd.api<{ items: Event[] }>("GET", "/events?app=zero")).body.items.filter(
    (e) => e.reason === "Woken" && Date.parse(e.time) >= since - 1000,
  );
  assert.equal(woken.length, 1, "one Woken event");
  assert.equal((await webService()).instances, 1);
  console.log(`cold start through the gateway: ${Math.round(coldMs)} ms to the last of 10 answers`);
});
