// Issue 13's stall: with hundreds of instances that no node fits, the
// controllers look at every waiting service again and again (every node
// heartbeat, every requeue). They read the informer's indexed view, so the API
// keeps answering: GET /apps and GET /apps/:app/instances stay well under a
// second while 500 instances of 50 apps wait for a node and one node
// heartbeats every second, and the waiting instances are not rewritten over
// and over (a write storm that starved the API and the heartbeats).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { startServer } from "../daemons/control-plane.ts";
import type { Instance } from "../model/objects.ts";
import type { Heartbeat } from "../model/protocol.ts";
import { apiCall } from "./testing.ts";

const GiB = 1024 ** 3;
const APPS = 50;
const PER_APP = 10;

test("500 pending instances that no node fits do not make the API slow", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-pending-load-"));
  const server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  let beating = true;
  t.after(async () => {
    beating = false;
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const { store } = server;
  const now = new Date().toISOString();
  // Each instance asks for more memory than the one node has: none is ever placed.
  const spec = {
    command: "node app.js",
    instances: PER_APP,
    resources: { cpu: 0.1, memory: 64 * GiB },
    health: { kind: "process", intervalMs: 1000, timeoutMs: 1000, failures: 3, startupMs: 60_000 },
    mode: "cattle",
    env: {},
    routes: [],
  };
  await store.put("tenant", "shop", { name: "shop", createdAt: now });
  for (let a = 0; a < APPS; a++) {
    const app = `app${a}`;
    await store.put("app", `shop/${app}`, {
      tenant: "shop",
      name: app,
      createdAt: now,
      release: 1,
      latestVersion: 1,
    });
    await store.put("release", `shop/${app}/00000001`, {
      tenant: "shop",
      app,
      version: 1,
      createdAt: now,
      description: "test",
      source: "0".repeat(64),
      slug: "1".repeat(64),
      services: { web: spec },
    });
    await store.put("service", `shop/${app}/web`, {
      tenant: "shop",
      app,
      name: "web",
      release: 1,
      spec,
      instances: PER_APP,
      state: "running",
      message: "",
      crashes: 0,
    });
  }
  const hb: Heartbeat = {
    address: "127.0.0.1",
    labels: {},
    capacity: { cpu: 4, memory: 8 * GiB },
    agentVersion: "test",
    isolation: { cgroups: "none", reason: "test" },
    instances: [],
  };
  const heartbeats = (async () => {
    while (beating) {
      const r = await apiCall(server, "POST", "/nodes/n1/heartbeat", hb).catch(() => undefined);
      if (beating) assert.equal(r?.status, 200);
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();

  // Wait until all 500 exist and wait for a node, each saying why.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const pending = (await store.list<Instance>("instance")).items.filter(
      (o) => o.value.state === "pending" && o.value.node === null && o.value.reason === "Unschedulable",
    );
    if (pending.length === APPS * PER_APP) break;
    assert.ok(
      Date.now() < deadline,
      `only ${pending.length} of ${APPS * PER_APP} instances pending after 60 s`,
    );
    await new Promise((r) => setTimeout(r, 250));
  }

  // Several seconds of heartbeats and requeues, with the API asked all along.
  // Also counted: instance writes meanwhile (a waiting instance is rewritten only when its message changes).
  let instanceWrites = 0;
  const ac = new AbortController();
  const watching = (async () => {
    for await (const ev of store.watch({ kinds: ["instance"], signal: ac.signal })) if (ev) instanceWrites++;
  })().catch(() => {});
  const took: number[] = [];
  for (let n = 0; n < 15; n++) {
    const t0 = performance.now();
    const apps = await apiCall(server, "GET", "/apps?tenant=shop");
    const instances = await apiCall(server, "GET", `/apps/app${n}/instances?tenant=shop`);
    took.push(performance.now() - t0);
    assert.equal(apps.status, 200);
    assert.equal(apps.body.items?.length ?? apps.body.length, APPS);
    assert.equal(instances.body.items.length, PER_APP);
    await new Promise((r) => setTimeout(r, 300));
  }
  ac.abort();
  await watching;
  took.sort((a, b) => a - b);
  const median = took[Math.floor(took.length / 2)] as number;
  // Before the informer this took 6-17 s. Generous bounds: the machine may be busy.
  assert.ok(median < 1000, `GET /apps + GET /apps/:app/instances: median ${median.toFixed(0)} ms`);
  assert.ok((took.at(-1) as number) < 3000, `slowest ${(took.at(-1) as number).toFixed(0)} ms`);
  // No write storm: the 500 are not rewritten over and over as the node's state is looked at.
  assert.ok(instanceWrites < APPS * PER_APP, `${instanceWrites} instance writes while nothing changed`);
  beating = false;
  await heartbeats;
});
