import assert from "node:assert/strict";
import { test } from "node:test";
import { controlPlaneInformer } from "../store/informer-kinds.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { PeerDirectory } from "./peers.ts";

async function cluster() {
  const store = new MemoryStore();
  const informer = controlPlaneInformer(store);
  let now = 0;
  let platform: string[] = [];
  const peers = new PeerDirectory(
    informer,
    () => platform,
    () => now,
  );
  const node = (name: string, address: string, ports?: { min: number; max: number }, metricsUrl?: string) =>
    store.put("node", name, {
      name,
      address,
      ...(ports ? { instancePorts: ports } : {}),
      ...(metricsUrl ? { metricsUrl } : {}),
    });
  const service = (tenant: string, app: string) =>
    store.put("service", `${tenant}/${app}/web`, { tenant, app, name: "web" });
  const instance = (id: string, tenant: string, app: string, node: string, port: number, state = "running") =>
    store.put("instance", id, { id, tenant, app, service: "web", node, port, state });
  const ask = async (tenants: string[], applied?: string) => {
    await informer.sync();
    return peers.forNode(tenants, applied);
  };
  const later = (ms = 1000) => {
    now += ms;
  };
  const setPlatform = (list: string[]) => {
    platform = list;
  };
  return { store, informer, peers, node, service, instance, ask, later, setPlatform };
}

test("one tenant in the cluster: open, no lists, and nothing sent once applied", async (t) => {
  const c = await cluster();
  t.after(() => c.informer.stop());
  await c.node("n1", "10.0.0.1");
  await c.node("n2", "10.0.0.2");
  await c.service("acme", "shop");
  await c.instance("i1", "acme", "shop", "n2", 20001);
  assert.deepEqual(await c.ask(["acme"]), {
    version: "open",
    closed: false,
    nodes: [],
    tenants: {},
    platform: [],
  });
  assert.equal(await c.ask(["acme"], "open"), undefined);
  // The platform's endpoints elsewhere (an etcd member, a gateway's metrics) are closed with one tenant too.
  c.setPlatform(["10.0.0.9:2379", "10.0.0.2:9180", "10.0.0.9:2379"]);
  const withEtcd = await c.ask(["acme"], "open");
  assert.equal(withEtcd?.closed, false);
  assert.deepEqual(withEtcd?.platform, ["10.0.0.2:9180", "10.0.0.9:2379"]);
  assert.equal(await c.ask(["acme"], withEtcd?.version), undefined);
});

test("two tenants: the other nodes' ranges closed, each tenant's own endpoints elsewhere open", async (t) => {
  const c = await cluster();
  t.after(() => c.informer.stop());
  await c.node("n1", "10.0.0.1", { min: 21000, max: 21999 });
  await c.node("n2", "10.0.0.2", { min: 22000, max: 22999 }, "http://10.0.0.2:9181/metrics");
  await c.node("n3", "fd00::3");
  await c.service("acme", "shop");
  await c.service("rival", "blog");
  await c.instance("a1", "acme", "shop", "n1", 21001);
  await c.instance("a2", "acme", "shop", "n2", 22001);
  await c.instance("a3", "acme", "shop", "n3", 20003);
  await c.instance("a4", "acme", "shop", "n2", 22004, "stopped");
  await c.instance("r1", "rival", "blog", "n2", 22002);
  const peers = await c.ask(["acme", "acme"]);
  assert.ok(peers);
  assert.equal(peers.closed, true);
  // Every node, the receiver's own too (its instances reach it through lo, whose rules come first).
  assert.deepEqual(peers.nodes, [
    { address: "10.0.0.1", ports: { min: 21000, max: 21999 } },
    // Its agent's metrics name every tenant's instances there: closed too.
    { address: "10.0.0.2", ports: { min: 22000, max: 22999 }, metricsPort: 9181 },
    // An agent that did not say its range: the default.
    { address: "fd00::3", ports: { min: 20000, max: 29999 } },
  ]);
  // Not the stopped instance's, nor the rival's.
  assert.deepEqual(peers.tenants, { acme: ["10.0.0.1:21001", "10.0.0.2:22001", "[fd00::3]:20003"] });
  assert.equal(await c.ask(["acme"], peers.version), undefined, "applied: nothing sent");
  // Encoded once per version: every node with these tenants gets the same bytes.
  assert.deepEqual(JSON.parse(c.peers.encode(peers).toString()), peers);
  assert.equal(c.peers.encode({ ...peers }), c.peers.encode(peers));
  assert.deepEqual((await c.ask(["acme", "rival"]))?.tenants.rival, ["10.0.0.2:22002"]);

  // A new instance of the tenant: a new version with it, once the half-second has passed.
  await c.instance("a5", "acme", "shop", "n3", 20005);
  assert.equal(await c.ask(["acme"], peers.version), undefined, "not yet: within the half-second");
  c.later();
  const next = await c.ask(["acme"], peers.version);
  assert.ok(next, "changed");
  assert.notEqual(next.version, peers.version);
  assert.deepEqual(next.tenants.acme, [
    "10.0.0.1:21001",
    "10.0.0.2:22001",
    "[fd00::3]:20003",
    "[fd00::3]:20005",
  ]);
});

test("a tenant with thousands of endpoints gets a new list less often (0.2 ms each, up to 5 s)", async (t) => {
  const c = await cluster();
  t.after(() => c.informer.stop());
  await c.node("n1", "10.0.0.1");
  await c.service("acme", "shop");
  await c.service("rival", "blog");
  for (let i = 0; i < 10_000; i++) await c.instance(`a${i}`, "acme", "shop", "n1", 20000 + (i % 10_000));
  const first = await c.ask(["acme"]);
  assert.equal(first?.tenants.acme?.length, 10_000);
  await c.instance("late", "acme", "shop", "n1", 29999);
  c.later(1500);
  assert.equal(await c.ask(["acme"], first?.version), undefined, "10,000 endpoints: 2 s between lists");
  c.later(600);
  assert.ok(await c.ask(["acme"], first?.version), "after 2 s the new list");
});

test("a second tenant's first service closes what was open", async (t) => {
  const c = await cluster();
  t.after(() => c.informer.stop());
  await c.node("n1", "10.0.0.1");
  await c.node("n2", "10.0.0.2");
  await c.service("acme", "shop");
  const open = await c.ask(["acme"]);
  assert.equal(open?.closed, false);
  await c.service("rival", "blog");
  const closed = await c.ask(["acme"], open?.version);
  assert.equal(closed?.closed, true);
  assert.deepEqual(closed?.nodes, [
    { address: "10.0.0.1", ports: { min: 20000, max: 29999 } },
    { address: "10.0.0.2", ports: { min: 20000, max: 29999 } },
  ]);
});
