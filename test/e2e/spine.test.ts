// The spine, end to end with real processes: deploy examples/hello, traffic
// through the gateway, kill -9 an instance, scale, deploy v2 under traffic
// with zero failed requests, roll back.

import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Instance } from "../../src/model/objects.ts";
import {
  cleanupHerd,
  gatewaysInSync,
  type Herd,
  ROOT,
  served,
  sleep,
  startHerd,
  waitFor,
} from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-spine-"));

before(async () => {
  herd = await startHerd();
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

const running = async (): Promise<Instance[]> => {
  const { body } = await herd.api<{ items: Instance[] }>("GET", "/apps/hello/instances");
  return body.items.filter((i) => i.state === "running" && i.desired === "running");
};

test("deploy examples/hello: the CLI shows progress, exits 0 and prints the URL", async () => {
  const r = await herd.cli(["deploy", join(ROOT, "examples/hello")]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /Packing/);
  assert.match(r.stdout, /Release v1/);
  assert.match(r.stdout, /http:\/\/hello\.localhost:\d+\//);
  // The gateway has the route a moment after the deploy is done.
  await served(herd, "hello.localhost", /^hi from hello-web-/);
  assert.equal((await running()).length, 2);
});

test("ps, releases, events, nodes and apps answer as tables and as JSON", async () => {
  const ps = await herd.cli(["ps", "--app", "hello"]);
  assert.equal(ps.code, 0, ps.stderr);
  assert.match(ps.stdout, /ID\s+SERVICE\s+RELEASE\s+STATE/);
  assert.equal(ps.stdout.match(/running/g)?.length, 2);
  const rel = await herd.cli(["releases", "--app", "hello", "--json"]);
  assert.equal(JSON.parse(rel.stdout).items[0].version, 1);
  const ev = await herd.cli(["events", "--app", "hello"]);
  assert.match(ev.stdout, /Healthy/);
  assert.match(ev.stdout, /DeploySucceeded/);
  const nodes = await herd.cli(["nodes", "--json"]);
  assert.equal(JSON.parse(nodes.stdout).items[0].state, "ready");
  const apps = await herd.cli(["apps"]);
  assert.match(apps.stdout, /hello/);
});

test("the gateway round-robins, and answers 404 JSON for an unknown host", async () => {
  const seen = new Set<string>();
  for (let n = 0; n < 10; n++) seen.add((await herd.request("hello.localhost")).body.split(" ")[2]);
  assert.equal(seen.size, 2);
  const res = await herd.request("nobody.localhost");
  assert.equal(res.status, 404);
  assert.equal(JSON.parse(res.body).code, "not_found");
});

test("the gateway's spans: herd map draws gateway → hello/web, herd traces finds the requests", async () => {
  const map = await waitFor("the gateway → hello/web edge", async () => {
    const r = await herd.cli(["map", "--window", "5m", "--json"]);
    const edges = JSON.parse(r.stdout).edges as { from: string; to: string; calls: number }[];
    return edges.find((e) => e.from === "gateway" && e.to === "hello/web" && e.calls >= 10);
  });
  assert.ok(map);
  const traces = await herd.cli(["traces", "--service", "gateway", "--since", "5m", "--json"]);
  assert.equal(traces.code, 0, traces.stderr);
  const items = JSON.parse(traces.stdout).items as { traceId: string; rootName: string }[];
  assert.ok(
    items.some((t) => t.rootName === "GET hello.localhost/"),
    traces.stdout,
  );
  const one = await herd.cli(["trace", items[0]?.traceId ?? ""]);
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stdout, /gateway GET /);
  // By the app and service the requests were routed to; SERVICES and herd top name the upstream.
  for (const filter of [
    ["--app", "hello"],
    ["--service", "hello/web"],
  ]) {
    const r = await herd.cli(["traces", ...filter, "--since", "5m", "--json"]);
    const found = JSON.parse(r.stdout).items as { rootName: string; services: string[] }[];
    assert.ok(
      found.some((t) => t.rootName === "GET hello.localhost/" && t.services.includes("hello/web")),
      `${filter.join(" ")}: ${r.stdout}`,
    );
  }
  const top = JSON.parse((await herd.cli(["top", "--window", "5m", "--json"])).stdout);
  assert.ok(
    top.services.some((s: { service: string; calls: number }) => s.service === "hello/web" && s.calls > 0),
    JSON.stringify(top.services),
  );
});

test("herd up's /metrics carries the API server's, the fleet's and its agent's figures", async () => {
  const text = await (await fetch(`${herd.url}/metrics`)).text();
  assert.match(text, /^herd_api_requests_total\{/m);
  assert.match(text, /^herd_instance_memory_bytes\{/m);
  assert.match(text, /^herd_agent_heartbeats_total\{result="ok",node="[^"]+"\} [1-9]/m);
  assert.match(text, /^herd_agent_instances\{state="healthy",node="[^"]+"\} 2$/m);
});

test("kill -9 of an instance: it is replaced and traffic keeps flowing", async () => {
  const [victim] = await running();
  process.kill(victim.pid!, "SIGKILL");
  const replaced = await waitFor(
    "a replacement to be running",
    async () => {
      const r = await running();
      return r.length === 2 && !r.some((i) => i.id === victim.id) ? r : undefined;
    },
    20_000,
  );
  assert.equal(replaced.length, 2);
  // Heartbeats' transitions are recorded within half a second (settings.eventBatchMs).
  await waitFor("the Exited event", async () => {
    const { body } = await herd.api<{ items: { reason: string; instance?: string }[] }>(
      "GET",
      "/events?app=hello&limit=500",
    );
    return body.items.some((e) => e.reason === "Exited" && e.instance === victim.id);
  });
  assert.equal((await herd.request("hello.localhost")).status, 200);
});

test("scale 1 → 3 → 1", async () => {
  for (const n of [1, 3, 1]) {
    const r = await herd.cli(["scale", `web=${n}`, "--app", "hello"]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(`${n} running instances`, async () => {
      const { body } = await herd.api<{ items: Instance[] }>("GET", "/apps/hello/instances");
      const live = body.items.filter((i) => i.desired === "running");
      return live.length === n && live.every((i) => i.state === "running");
    });
  }
});

test("deploy v2 under continuous traffic fails no request; rollback to v1", async () => {
  await herd.cli(["scale", "web=2", "--app", "hello"]);
  await waitFor("2 running", async () => (await running()).length === 2);
  const dir = join(work, "hello-v2");
  cpSync(join(ROOT, "examples/hello"), dir, { recursive: true });
  writeFileSync(
    join(dir, "herd.yaml"),
    readFileSync(join(dir, "herd.yaml"), "utf8").replace("GREETING: hi", "GREETING: howdy"),
  );

  let stop = false;
  const results = { ok: 0, failed: [] as string[] };
  const traffic = (async () => {
    while (!stop) {
      try {
        const r = await herd.request("hello.localhost");
        if (r.status === 200) results.ok++;
        else results.failed.push(`${r.status} ${r.body}`);
      } catch (err) {
        results.failed.push((err as Error).message);
      }
    }
  })();
  const deploy = await herd.cli(["deploy", dir]);
  await sleep(3000); // keep the traffic going through the drain of the old instances
  stop = true;
  await traffic;
  assert.equal(deploy.code, 0, deploy.stdout + deploy.stderr);
  assert.deepEqual(
    results.failed,
    [],
    `${results.failed.length} failed of ${results.ok + results.failed.length}`,
  );
  assert.ok(results.ok > 50, `only ${results.ok} requests went through`);
  // The deploy is done in the store; each gateway applies it a moment later.
  await gatewaysInSync(herd);
  assert.match((await herd.request("hello.localhost")).body, /^howdy/);

  const rb = await herd.cli(["rollback", "v1", "--app", "hello"]);
  assert.equal(rb.code, 0, rb.stdout + rb.stderr);
  await waitFor("v1 greeting", async () => /^hi from/.test((await herd.request("hello.localhost")).body));
  const rel = await herd.api<{ items: { version: number; description: string; current: boolean }[] }>(
    "GET",
    "/apps/hello/releases",
  );
  assert.equal(rel.body.items[0].version, 3);
  assert.match(rel.body.items[0].description, /Rollback to v1/);
  assert.ok(rel.body.items[0].current);
});

test("logs: instance output reaches herd logs", async () => {
  const r = await waitFor("log lines", async () => {
    const l = await herd.cli(["logs", "--app", "hello", "--tail", "50"]);
    return /hello listening on \d+/.test(l.stdout) ? l : undefined;
  });
  assert.equal(r.code, 0);
});

test("a pet is restarted in place: same id, same node, its data dir kept", async () => {
  const dir = join(work, "pet");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "herd.yaml"),
    "app: counter\nservices:\n  web:\n    command: node server.js\n    mode: pet\n    health: { path: /healthz }\n",
  );
  writeFileSync(
    join(dir, "server.js"),
    // The app's source, written as text: its template strings are the app's, not this test's.
    [
      'const fs = require("node:fs");',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: source text of the app
      "const file = `${process.env.HERD_DATA_DIR}/starts`;",
      'const starts = (fs.existsSync(file) ? Number(fs.readFileSync(file, "utf8")) : 0) + 1;',
      "fs.writeFileSync(file, String(starts));",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: source text of the app
      'require("node:http").createServer((req, res) => res.end(`${process.env.HERD_INSTANCE} starts=${starts}`)).listen(process.env.PORT);',
    ].join("\n"),
  );
  const d = await herd.cli(["deploy", dir]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  await served(herd, "counter.localhost", "counter-web-0 starts=1");
  const pets = async () =>
    (await herd.api<{ items: Instance[] }>("GET", "/apps/counter/instances")).body.items;
  const [pet] = await pets();
  process.kill(pet.pid!, "SIGKILL");
  await waitFor("the pet to be back", async () => {
    const [p] = await pets();
    return p?.state === "running" && p.restarts === 1 ? p : undefined;
  });
  const [back] = await pets();
  assert.equal(back.id, pet.id);
  assert.equal(back.node, pet.node);
  // Out of the gateway while it restarted: back in its table a moment after the store says running.
  await served(herd, "counter.localhost", "counter-web-0 starts=2");
});

test("a static site (index.html, no herd.yaml) is detected, built and served", async () => {
  const dir = join(work, "site");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "index.html"), "<h1>static hello</h1>\n");
  const d = await herd.cli(["deploy", dir]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  assert.match(d.stdout, /Static site detected/);
  await served(herd, "site.localhost", /static hello/);
  assert.equal((await herd.request("site.localhost", "/missing.txt")).status, 404);
});
