// Capacity figures: the pure report (requested, free, used per node and
// tenant), and GET /capacity over a real socket with real heartbeats: what a
// platform admin sees, what a tenant's viewer sees. Also: an instance whose
// exit status is unknown is not reported as "exited with code 0".

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { Instance, Node, Service } from "../model/objects.ts";
import type { Heartbeat, InstanceUsage } from "../model/protocol.ts";
import { type CapacityReport, capacityReport } from "./capacity.ts";
import { createTestTokens, type TestTokens } from "./principals-testing.ts";
import { apiCall, waitFor } from "./testing.ts";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function node(name: string, extra: Partial<Node> = {}): Node {
  return {
    name,
    address: "127.0.0.1",
    labels: {},
    capacity: { cpu: 2, memory: 4 * GiB },
    allocatable: { cpu: 1.9, memory: 4 * GiB - 256 * MiB },
    state: "ready",
    lastHeartbeat: "2026-01-01T00:00:00Z",
    registeredAt: "2026-01-01T00:00:00Z",
    agentVersion: "test",
    isolation: { cgroups: "none" },
    schedulable: true,
    ...extra,
  } as Node;
}

function instance(
  id: string,
  tenant: string,
  nodeName: string | null,
  extra: Partial<Instance> = {},
): Instance {
  return {
    id,
    tenant,
    app: "shop",
    service: "web",
    release: 1,
    mode: "cattle",
    node: nodeName,
    desired: "running",
    generation: 1,
    state: "running",
    reason: "",
    message: "",
    run: {
      slug: "x",
      command: "true",
      env: {},
      resources: { cpu: 0.25, memory: 128 * MiB },
      health: { kind: "tcp", intervalMs: 1000, timeoutMs: 1000, failures: 3, startupMs: 30_000 },
    },
    restarts: 0,
    createdAt: "2026-01-01T00:00:00Z",
    ...extra,
  } as Instance;
}

const service = (tenant: string, instances: number): Service =>
  ({
    tenant,
    app: "shop",
    name: "web",
    release: 1,
    instances,
    state: "running",
    message: "",
    crashes: 0,
    spec: { resources: { cpu: 0.25, memory: 128 * MiB } },
  }) as unknown as Service;

test("requested counts the instances that hold resources; free is allocatable minus requested; used is measured", () => {
  const usage = new Map<string, InstanceUsage>([
    ["a1", { cpuCores: 0.05, memoryBytes: 40 * MiB }],
    ["a2", { memoryBytes: 30 * MiB }],
    ["b1", { cpuCores: 0.5, memoryBytes: 100 * MiB }],
    ["gone", { cpuCores: 9, memoryBytes: 9 * GiB }],
  ]);
  const input = {
    nodes: [node("n2", { state: "lost" }), node("n1", { draining: true })],
    instances: [
      instance("a1", "acme", "n1"),
      instance("a2", "acme", "n1", {
        state: "ready",
        run: { ...instance("", "", null).run, resources: { cpu: 1, memory: GiB } },
      }),
      instance("b1", "beta", "n1"),
      instance("gone", "beta", "n1", { state: "stopped", desired: "stopped" }),
      instance("pending", "beta", null, { state: "pending" }),
      instance("far", "beta", "n2", { mode: "pet", state: "lost" }),
    ],
    services: [service("acme", 2), service("beta", 3)],
    tenants: [
      { name: "acme", createdAt: "", quota: { units: 10 } },
      { name: "idle", createdAt: "" },
    ],
    unit: { cpu: 0.25, memory: 256 * MiB },
    report: (n: string) =>
      n === "n1"
        ? { stats: { cpuBusyCores: 1.2, memory: { totalBytes: 4 * GiB, availableBytes: 3 * GiB } }, usage }
        : { usage: new Map([["far", { cpuCores: 1, memoryBytes: GiB }]]) },
  };
  const r = capacityReport(input);
  assert.equal(r.tenant, undefined);
  assert.deepEqual(
    r.nodes.map((n) => n.name),
    ["n1", "n2"],
  );
  const [n1, n2] = r.nodes;
  assert.deepEqual(n1.requested, { cpu: 1.5, memory: GiB + 256 * MiB });
  assert.deepEqual(n1.free, { cpu: 0.4, memory: 4 * GiB - 256 * MiB - (GiB + 256 * MiB) });
  assert.deepEqual(
    n1.used,
    { cpu: 0.55, memory: 170 * MiB },
    "the stopped instance's last figures are not counted",
  );
  assert.deepEqual(n1.machine, { cpu: 1.2, memory: GiB });
  assert.equal(n1.instances, 3);
  assert.equal(n1.schedulable, false, "draining");
  assert.deepEqual(n2.requested, { cpu: 0.25, memory: 128 * MiB }, "a pet on a lost node keeps its place");
  assert.deepEqual(n2.used, {}, "a lost node's last report is not current");
  assert.equal(n2.machine, undefined);
  assert.deepEqual(
    r.tenants.map((t) => [t.name, t.instances, t.requested.cpu, t.used.cpu, t.units, t.quota]),
    [
      ["acme", 2, 1.25, 0.05, 2, 10],
      ["beta", 2, 0.5, 0.5, 3, undefined],
      ["idle", 0, 0, undefined, 0, undefined],
    ],
  );
  assert.deepEqual(
    r.tenants[1].nodes.map((s) => [s.node, s.instances, s.requested.cpu]),
    [
      ["n1", 1, 0.25],
      ["n2", 1, 0.25],
    ],
  );
  assert.deepEqual(r.total, {
    allocatable: n1.allocatable,
    requested: n1.requested,
    free: n1.free,
    used: n1.used,
  });

  const mine = capacityReport({ ...input, only: "acme" });
  assert.equal(mine.tenant, "acme");
  assert.deepEqual(
    mine.tenants.map((t) => t.name),
    ["acme"],
  );
  assert.deepEqual(mine.nodes[0].requested, n1.requested, "a node's totals are every tenant's");
  assert.deepEqual(mine.nodes[0].tenant, {
    instances: 2,
    requested: { cpu: 1.25, memory: GiB + 128 * MiB },
    used: { cpu: 0.05, memory: 70 * MiB },
  });
  assert.deepEqual(mine.nodes[1].tenant, { instances: 0, requested: { cpu: 0, memory: 0 }, used: {} });
});

let server: RunningServer;
let tokens: TestTokens;
const dir = mkdtempSync(join(tmpdir(), "herd-capacity-"));
before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  tokens = await createTestTokens(server.url, server.adminToken);
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const heartbeat = (instances: Heartbeat["instances"]): Heartbeat => ({
  address: "127.0.0.1",
  labels: {},
  capacity: { cpu: 2, memory: 4 * GiB },
  allocatable: { cpu: 1.9, memory: 4 * GiB - 256 * MiB },
  agentVersion: "test",
  isolation: { cgroups: "none", reason: "test" },
  instances,
  stats: { memory: { totalBytes: 4 * GiB, availableBytes: 3 * GiB }, cpuBusyCores: 0.3 },
});

/** An app `shop` in the tenant whose service web wants `count` instances (so the controllers keep them). */
async function shop(tenant: string, count: number): Promise<void> {
  await apiCall(server, "POST", `/apps?tenant=${tenant}`, { name: "shop" }, { token: server.adminToken });
  await server.store.put("service", `${tenant}/shop/web`, {
    tenant,
    app: "shop",
    name: "web",
    release: 1,
    spec: {
      command: "true",
      instances: count,
      resources: { cpu: 0.25, memory: 128 * MiB },
      health: { kind: "tcp", intervalMs: 1000, timeoutMs: 1000, failures: 3, startupMs: 30_000 },
      mode: "cattle",
      env: {},
      routes: [],
    },
    instances: count,
    state: "running",
    message: "",
    crashes: 0,
  } as Service);
}

test("GET /capacity: the admin sees every tenant; a tenant's viewer the nodes' totals and its own tenant", async () => {
  await shop("a", 1);
  await shop("b", 1);
  await server.store.put("instance", "a-web-1", instance("a-web-1", "a", "n1"));
  await server.store.put("instance", "b-web-1", instance("b-web-1", "b", "n1"));
  const hb = await apiCall(
    server,
    "POST",
    "/nodes/n1/heartbeat",
    heartbeat([
      {
        id: "a-web-1",
        generation: 1,
        state: "healthy",
        usage: { cpuSeconds: 3, cpuCores: 0.02, memoryBytes: 50 * MiB },
      },
      {
        id: "b-web-1",
        generation: 1,
        state: "healthy",
        usage: { cpuSeconds: 9, cpuCores: 0.1, memoryBytes: 70 * MiB },
      },
    ]),
    { token: tokens.agentN1 },
  );
  assert.equal(hb.status, 200, JSON.stringify(hb.body));

  const all = await apiCall(server, "GET", "/capacity", undefined, { token: server.adminToken });
  assert.equal(all.status, 200);
  const report = all.body as CapacityReport;
  assert.equal(report.tenant, undefined);
  const [n1] = report.nodes;
  assert.deepEqual(n1.requested, { cpu: 0.5, memory: 256 * MiB });
  assert.deepEqual(n1.free, { cpu: 1.4, memory: 4 * GiB - 512 * MiB });
  assert.deepEqual(n1.used, { cpu: 0.12, memory: 120 * MiB });
  assert.deepEqual(n1.machine, { cpu: 0.3, memory: GiB });
  assert.deepEqual(
    report.tenants.filter((t) => t.instances > 0).map((t) => [t.name, t.used.memory]),
    [
      ["a", 50 * MiB],
      ["b", 70 * MiB],
    ],
  );

  const viewer = await apiCall(server, "GET", "/capacity", undefined, { token: tokens.viewerA });
  assert.equal(viewer.status, 200);
  const seen = viewer.body as CapacityReport;
  assert.equal(seen.tenant, "a");
  assert.deepEqual(
    seen.tenants.map((t) => t.name),
    ["a"],
  );
  assert.deepEqual(seen.nodes[0].requested, n1.requested, "the node's totals");
  assert.deepEqual(seen.nodes[0].tenant?.used, { cpu: 0.02, memory: 50 * MiB });
  assert.ok(
    !JSON.stringify(seen).includes("b-web-1") && !JSON.stringify(seen).includes('"b"'),
    "nothing of b",
  );

  const other = await apiCall(server, "GET", "/capacity?tenant=b", undefined, { token: tokens.viewerA });
  assert.equal(other.status, 403);
  const agent = await apiCall(server, "GET", "/capacity", undefined, { token: tokens.agentN1 });
  assert.equal(agent.status, 403);
  const adminOne = await apiCall(server, "GET", "/capacity?tenant=b", undefined, {
    token: server.adminToken,
  });
  assert.deepEqual(
    (adminOne.body as CapacityReport).tenants.map((t) => t.name),
    ["b"],
  );
});

test("an exit whose status is unknown (an adopted process) is not reported as code 0", async () => {
  await server.store.put("instance", "a-web-2", instance("a-web-2", "a", "n1"));
  // Heartbeats' transitions are recorded together within settings.eventBatchMs (500 ms): wait for them.
  const exits = (id: string) =>
    waitFor(`the Exited event of ${id}`, async () => {
      const events = await apiCall(server, "GET", "/events?tenant=a&app=shop&limit=500", undefined, {
        token: server.adminToken,
      });
      const found = (events.body.items as { instance?: string; reason: string; message: string }[])
        .filter((e) => e.instance === id && e.reason === "Exited")
        .map((e) => e.message);
      return found.length > 0 ? found : undefined;
    });
  const message = "exit status unknown (adopted: started by an earlier agent, so not this agent's child)";
  const hb = await apiCall(
    server,
    "POST",
    "/nodes/n1/heartbeat",
    heartbeat([{ id: "a-web-2", generation: 1, state: "exited", exitCode: null, signal: null, message }]),
    { token: tokens.agentN1 },
  );
  assert.equal(hb.status, 200, JSON.stringify(hb.body));
  assert.deepEqual(await exits("a-web-2"), [`a-web-2: running → crashed (${message})`]);
  await server.store.put("instance", "a-web-3", instance("a-web-3", "a", "n1"));
  await apiCall(
    server,
    "POST",
    "/nodes/n1/heartbeat",
    heartbeat([{ id: "a-web-3", generation: 1, state: "exited", exitCode: 0, signal: null }]),
    { token: tokens.agentN1 },
  );
  assert.deepEqual(await exits("a-web-3"), ["a-web-3: running → crashed (exited with code 0)"]);
});
