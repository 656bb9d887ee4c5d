// Containers across machines (root only): a control plane and a gateway on the
// host and two agents, each in its own network namespace (cluster.ts), each
// with an engine of its own started in that namespace the way a machine's
// `docker.io` service runs (iptables on, so it routes and masquerades what
// its containers send to other machines), given to the agent with
// `--docker-socket`. Every instance is a container (`runtime: docker`). A
// container of tenant ta on node-1 reaches ta's container on node-2 and not
// tenant tb's there, nor the control plane's API: the firewall of
// src/agent/docker-firewall.ts, on the forward hook, with the other nodes'
// endpoints from the heartbeat reply (controllers/peers.ts).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, type TestContext, test } from "node:test";
import { type Dockerd, startDockerd } from "../../src/agent/docker-daemon.ts";
import { ensureDebianPackages } from "../../src/common/debian-packages.ts";
import { type Cluster, startCluster, tenantsAcrossNodes } from "./cluster.ts";
import { waitFor } from "./harness.ts";

const root = process.getuid?.() === 0;
const work = mkdtempSync(join(tmpdir(), "herd-containers-nodes-"));
const engines: Dockerd[] = [];
let cluster: Cluster | undefined;
const ZONES = ["a", "b"];
const flags = (zone: string, socket?: string) => [
  "--cpu",
  "2",
  "--memory",
  "2Gi",
  "--label",
  `zone=${zone}`,
  ...(socket ? ["--docker-socket", socket] : []),
];

before(async () => {
  if (!root) return;
  const tools = await ensureDebianPackages({
    dockerd: "docker.io",
    busybox: "busybox-static",
    nft: "nftables",
  });
  cluster = await startCluster({ agents: ZONES.map((zone) => ({ args: flags(zone) })) });
  if (!cluster.partitioned) return;
  // Each machine's engine runs in its namespace; its agent is restarted with it.
  for (const [k, node] of cluster.nodes.entries()) {
    const engine = await startDockerd(join(work, `engine-${k + 1}`), tools.dockerd, 60_000, {
      netns: node.netns as string,
      iptables: true,
    });
    engines.push(engine);
    await node.stop();
    await node.start(flags(ZONES[k], engine.socket));
  }
});

after(async () => {
  try {
    // Each engine first: its containers stop with it, and its mounts go.
    for (const engine of engines) await engine.stop();
    await cluster?.stop();
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test("containers across nodes: one reaches its own tenant's container on another node, not another tenant's nor the API", async (t: TestContext) => {
  if (!root || !cluster?.partitioned) {
    t.skip("needs root for network namespaces and an engine in each");
    return;
  }
  const c = cluster;
  const { body: nodes } = await c.api<{
    items: { name: string; drivers?: string[]; isolation: { network: string } }[];
  }>("GET", "/nodes");
  for (const n of nodes.items) assert.ok(n.drivers?.includes("docker"), `${n.name}: ${JSON.stringify(n)}`);
  const { connector, sibling, target, connect } = await tenantsAcrossNodes(c, t, work, [
    "runtime: docker",
    "resources: { cpu: 0.1, memory: 128Mi }",
  ]);
  assert.deepEqual([connector.node, sibling.node, target.node], ["node-1", "node-2", "node-2"]);
  // Each a container of its node's engine.
  for (const i of [connector, sibling, target]) {
    const engine = engines[c.nodes.findIndex((n) => n.name === i.node)];
    assert.ok(engine, `${i.id} is on ${i.node}, which has no engine`);
    const [box] = await engine.api.call<{ State: string }[]>({
      path: "/containers/json",
      query: { filters: JSON.stringify({ label: [`herd.id=${i.id}`] }) },
    });
    assert.equal(box?.State, "running", `${i.id} has no running container on ${i.node}`);
  }
  // The target's container serves: the gateway (on the host) reaches it, so a refusal below is the firewall's.
  assert.equal((await c.request("target.localhost", "/")).body, "ok");
  // Node-1's agent learns the other nodes' ports at its next heartbeat (about a second).
  await waitFor(
    "node-1 to let ta's container reach its sibling's on node-2",
    async () => (await connect(sibling)) === "allowed",
  );
  await waitFor("node-1 to keep ta's container from tb's on node-2", async () =>
    /^(ECONNREFUSED|timeout)$/.test(await connect(target)),
  );
  const api = new URL(c.url);
  assert.match(await connect({ address: api.hostname, port: Number(api.port) }), /^(ECONNREFUSED|timeout)$/);
  assert.equal(await connect(sibling), "allowed", "still allowed");
});
