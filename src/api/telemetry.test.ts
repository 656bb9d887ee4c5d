// The fleet's telemetry through the real control plane: an agent's heartbeat
// with node stats and instance usage shows in /metrics with the labels that
// link an instance to its app and node (and reaches the TSDB with them); a
// real gateway that reports its metrics URL is scraped until it says goodbye.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { Agent } from "../agent/agent.ts";
import { silentLogger } from "../common/log.ts";
import type { RunningServer } from "../daemons/control-plane.ts";
import { startGateway } from "../gateway/gateway.ts";
import { normalizeService } from "../model/manifest.ts";
import type { App, Instance } from "../model/objects.ts";
import type { Heartbeat, HeartbeatReply } from "../model/protocol.ts";
import { apiCall, waitFor as poll, testServer } from "./testing.ts";

const fixture = testServer("herd-telemetry-api-", {
  // Test receivers, targets and collectors listen on 127.0.0.1.
  allowFetch: ["127.0.0.0/8"],
  metrics: { scrapeIntervalMs: 200 },
});
let server: RunningServer;
before(async () => {
  server = await fixture.started;
});

const call = (method: string, path: string, body?: unknown) => apiCall(server, method, path, body);

const heartbeat = (instances: Heartbeat["instances"], stats?: Heartbeat["stats"]): Heartbeat => ({
  address: "127.0.0.1",
  labels: {},
  capacity: { cpu: 2, memory: 4 * 1024 ** 3 },
  agentVersion: "test",
  isolation: { cgroups: "none", reason: "test" },
  instances,
  ...(stats ? { stats } : {}),
});

const query = async (q: string) =>
  (await call("GET", `/prom/api/v1/query?query=${encodeURIComponent(q)}`)).body.data.result as {
    metric: Record<string, string>;
    value: [number, string];
  }[];

test("a heartbeat's node stats and instance usage are exported with linking labels and stored", async () => {
  // A real deploy through the controllers (the build is skipped: the agent never runs it here).
  const app: App = { tenant: "default", name: "shop", createdAt: "", release: null, latestVersion: 0 };
  await server.store.put("app", "default/shop", app);
  assert.equal((await call("POST", "/nodes/n1/heartbeat", heartbeat([]))).status, 200);
  await server.controllers.deploys.startDeploy("default", "shop", async () => ({
    source: "b".repeat(64),
    slug: "a".repeat(64),
    services: {
      web: normalizeService("shop", "web", { command: "node server.js", instances: 1 }, undefined),
    },
    description: "test",
  }));
  const inst = await waitFor("the instance placed on n1", async () => {
    const items = (await server.store.list<Instance>("instance")).items.map((o) => o.value);
    return items.find((i) => i.node === "n1");
  });

  const stats: Heartbeat["stats"] = {
    cpuSeconds: { user: 120.5, system: 30, idle: 900 },
    memory: { totalBytes: 4e9, availableBytes: 3e9 },
    disk: { totalBytes: 1e11, freeBytes: 4e10 },
    network: { receiveBytes: 12345, transmitBytes: 678 },
  };
  const status = { id: inst.id, generation: inst.generation, pid: 4242, port: 20001 };
  const usage = { cpuSeconds: 1.25, cpuWaitShare: 0.25, memoryBytes: 50_000_000 };
  const res = await call(
    "POST",
    "/nodes/n1/heartbeat",
    heartbeat([{ ...status, state: "healthy", usage }], stats),
  );
  assert.equal(res.status, 200);
  // The reply carries the instance's tenant's write-only ingest token for its OTEL defaults.
  const tokens = (res.body as HeartbeatReply).ingestTokens ?? {};
  assert.deepEqual(Object.keys(tokens), [inst.tenant]);
  assert.match(tokens[inst.tenant] as string, /^herd_/);
  const again = await call(
    "POST",
    "/nodes/n1/heartbeat",
    heartbeat([{ ...status, state: "healthy", usage }], stats),
  );
  assert.equal((again.body as HeartbeatReply).ingestTokens?.[inst.tenant], tokens[inst.tenant], "kept");

  const text = await waitFor("the instance's usage in /metrics", async () => {
    const t = await (await fetch(`${server.url}/metrics`)).text();
    return t.includes("herd_instance_memory_bytes{") ? t : undefined;
  });
  const link = `tenant="default",app="shop",service="web",instance="${inst.id}",node="n1"`;
  assert.match(text, new RegExp(`^herd_instance_cpu_seconds_total\\{${link}\\} 1.25$`, "m"));
  assert.match(text, new RegExp(`^herd_instance_memory_bytes\\{${link}\\} 50000000$`, "m"));
  assert.match(text, new RegExp(`^herd_instance_cpu_wait_ratio\\{${link}\\} 0.25$`, "m"));
  assert.match(text, new RegExp(`^herd_instance_restarts_total\\{${link}\\} 0$`, "m"));
  assert.match(text, /^herd_node_up\{node="n1"\} 1$/m);
  assert.match(text, /^herd_node_state\{node="n1",state="ready"\} 1$/m);
  assert.match(text, /^herd_node_state\{node="n1",state="lost"\} 0$/m);
  assert.match(text, /^herd_node_cpu_seconds_total\{node="n1",mode="user"\} 120.5$/m);
  assert.match(text, /^herd_node_memory_bytes\{node="n1",kind="available"\} 3000000000$/m);
  assert.match(text, /^herd_node_disk_bytes\{node="n1",kind="free"\} 40000000000$/m);
  assert.match(text, /^herd_node_network_bytes_total\{node="n1",direction="receive"\} 12345$/m);
  assert.match(text, /^process_cpu_user_seconds_total \d/m, "the API's own metrics are still there");

  // Scraped into the TSDB with the herd instance id kept in `instance` (not replaced by host:port).
  const stored = await waitFor("the series in the TSDB", async () => {
    const r = await query(`herd_instance_memory_bytes{app="shop"}`);
    return r.length > 0 ? r : undefined;
  });
  assert.equal(stored[0]?.metric.instance, inst.id);
  assert.equal(stored[0]?.metric.node, "n1");
  assert.equal(stored[0]?.metric.job, "herd-api");

  // Bad stats are refused naming the field.
  const bad = await call(
    "POST",
    "/nodes/n1/heartbeat",
    heartbeat([], { memory: { totalBytes: -1, availableBytes: 0 } } as Heartbeat["stats"]),
  );
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /body\.stats\.memory\.totalBytes/);
});

test("a gateway that reports its metrics URL is scraped, and dropped when it says goodbye; its spans reach the ingest", async () => {
  const gwDir = mkdtempSync(join(tmpdir(), "herd-telemetry-gw-"));
  const gateway = await startGateway({
    server: server.url,
    token: server.adminToken,
    port: 0,
    host: "127.0.0.1",
    dataDir: gwDir,
    logger: silentLogger,
    id: "gw-test",
    metricsPort: 0,
    traceSample: 1,
  });
  try {
    assert.ok(gateway.metricsUrl);
    const target = await waitFor("the gateway's scrape target, up", async () => {
      const items = (await call("GET", "/metrics/targets")).body.items as {
        name: string;
        url: string;
        health: string;
      }[];
      const t = items.find((i) => i.name === "herd-gateway/gw-test");
      return t?.health === "up" ? t : undefined;
    });
    assert.equal(target.url, gateway.metricsUrl);
    const version = await waitFor("the gateway's series in the TSDB", async () => {
      const r = await query(`herd_gateway_table_version{job="herd-gateway",gateway="gw-test"}`);
      return r.length > 0 ? r : undefined;
    });
    assert.equal(version[0]?.metric.component, "gateway");
    const gateways = (await call("GET", "/gateways")).body.items as { id: string; metricsUrl?: string }[];
    assert.equal(gateways.find((g) => g.id === "gw-test")?.metricsUrl, gateway.metricsUrl);
    // A request no route takes still gets the gateway's span, shipped in a batch to the real ingest.
    const res = await fetch(`${gateway.url}/nothing-here`, { headers: { host: "nowhere.test" } });
    assert.equal(res.status, 404);
    await res.text();
  } finally {
    await gateway.close();
    rmSync(gwDir, { recursive: true, force: true });
  }
  const items = (await call("GET", "/metrics/targets")).body.items as { name: string }[];
  assert.ok(!items.some((i) => i.name === "herd-gateway/gw-test"), "goodbye drops the target");
  // Closing flushed the batch; the ingest stores it within its flush interval.
  const span = await waitFor("the gateway's span in the store", async () => {
    server.traces.store.flush();
    const found = await call("GET", "/traces?service=gateway");
    return found.body?.items?.length > 0 ? found.body.items[0] : undefined;
  });
  assert.ok(span);
});

test("an agent that serves its metrics is scraped as herd-agent and listed in service discovery", async () => {
  const agentDir = mkdtempSync(join(tmpdir(), "herd-telemetry-agent-"));
  const agent = new Agent({
    server: server.url,
    token: server.adminToken,
    name: "metrics-node",
    dataDir: agentDir,
    heartbeatMs: 200,
    metricsPort: 0,
  });
  try {
    await agent.start();
    assert.match(agent.metricsUrl ?? "", /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const own = await waitFor("a heartbeat counted on the agent's /metrics", async () => {
      const text = await (await fetch(agent.metricsUrl as string)).text();
      return /herd_agent_heartbeats_total\{result="ok",node="metrics-node"\} [1-9]/.test(text)
        ? text
        : undefined;
    });
    assert.match(own, /herd_agent_instances\{state="healthy",node="metrics-node"\} 0/);
    assert.match(own, /process_cpu_seconds_total\{node="metrics-node"\}/, "the process's own figures");
    const node = await waitFor("the node's metrics URL", async () => {
      const n = (await call("GET", "/nodes")).body.items.find(
        (i: { name: string }) => i.name === "metrics-node",
      );
      return n?.metricsUrl ? n : undefined;
    });
    assert.equal(node.metricsUrl, agent.metricsUrl);
    await waitFor("the agent's target, up", async () => {
      const items = (await call("GET", "/metrics/targets")).body.items as { name: string; health: string }[];
      return items.find((i) => i.name === "herd-agent/metrics-node" && i.health === "up");
    });
    const stored = await waitFor("the agent's series in the TSDB", async () => {
      const r = await query(`herd_agent_heartbeats_total{job="herd-agent",node="metrics-node",result="ok"}`);
      return r.length > 0 ? r : undefined;
    });
    assert.equal(stored[0]?.metric.component, "agent");
    const sd = (await call("GET", "/prom/sd")).body as {
      targets: string[];
      labels: Record<string, string>;
    }[];
    const group = sd.find((g) => g.labels.component === "agent");
    assert.deepEqual(group?.targets, [new URL(agent.metricsUrl as string).host]);
  } finally {
    await agent.stop();
    rmSync(agentDir, { recursive: true, force: true });
  }
});

function waitFor<T>(what: string, f: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  return poll(what, f, ms, 50);
}
