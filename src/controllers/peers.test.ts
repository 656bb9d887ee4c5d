import assert from "node:assert/strict";
import { test } from "node:test";
import { controlPlaneInformer } from "../store/informer-kinds.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { PeerDirectory } from "./peers.ts";

async function cluster() {
  const store = new MemoryStore();
  const informer = controlPlaneInformer(store);
  let now = 0;
  const peers = new PeerDirectory(informer, () => now);
  const node = (name: string, address: string, ports?: { min: number; max: number }) =>
    store.put("node", name, { name, address, ...(ports ? { instancePorts: ports } : {}) });
  const service = (tenant: string, app: string) =>
    store.put("service", `${tenant}/${app}/web`, { tenant, app, name: "web" });
  const instance = (id: string, tenant: string, app: string, node: string, port: number, state = "running") =>
    store.put("instance", id, { id, tenant, app, service: "web", node, port, state });
  const ask = async (name: string, tenants: string[], applied?: string) => {
    await informer.sync();
    return peers.forNode(name, tenants, applied);
  };
  const later = () => {
    now += 1000;
  };
  return { store, informer, node, service, instance, ask, later };
}

test("one tenant in the cluster: open, no lists, and nothing sent once applied", async (t) => {
  const c = await cluster();
  t.after(() => c.informer.stop());
  await c.node("n1", "10.0.0.1");
  await c.node("n2", "10.0.0.2");
  await c.service("acme", "shop");
  await c.instance("i1", "acme", "shop", "n2", 20001);
  assert.deepEqual(await c.ask("n1", ["acme"]), { version: "open", closed: false, nodes: [], tenants: {} });
  assert.equal(await c.ask("n1", ["acme"], "open"), undefined);
});

test("two tenants: the other nodes' ranges closed, each tenant's own endpoints elsewhere open", async (t) => {
  const c = await cluster();
  t.after(() => c.informer.stop());
  await c.node("n1", "10.0.0.1", { min: 21000, max: 21999 });
  await c.node("n2", "10.0.0.2", { min: 22000, max: 22999 });
  await c.node("n3", "fd00::3");
  await c.service("acme", "shop");
  await c.service("rival", "blog");
  await c.instance("a1", "acme", "shop", "n1", 21001);
  await c.instance("a2", "acme", "shop", "n2", 22001);
  await c.instance("a3", "acme", "shop", "n3", 20003);
  await c.instance("a4", "acme", "shop", "n2", 22004, "stopped");
  await c.instance("r1", "rival", "blog", "n2", 22002);
  const peers = await c.ask("n1", ["acme", "acme"]);
  assert.ok(peers);
  assert.equal(peers.closed, true);
  assert.deepEqual(peers.nodes, [
    { address: "10.0.0.2", ports: { min: 22000, max: 22999 } },
    // An agent that did not say its range: the default.
    { address: "fd00::3", ports: { min: 20000, max: 29999 } },
  ]);
  // Its own node's endpoint and the stopped instance's are not there, nor the rival's.
  assert.deepEqual(peers.tenants, { acme: ["10.0.0.2:22001", "[fd00::3]:20003"] });
  assert.equal(await c.ask("n1", ["acme"], peers.version), undefined, "applied: nothing sent");

  // Another node's view: its own range is not closed to itself.
  const other = await c.ask("n2", ["acme", "rival"]);
  assert.deepEqual(
    other?.nodes.map((n) => n.address),
    ["10.0.0.1", "fd00::3"],
  );
  assert.deepEqual(other?.tenants, { acme: ["10.0.0.1:21001", "[fd00::3]:20003"], rival: [] });

  // A new instance of the tenant elsewhere: a new version with it, once the half-second has passed.
  await c.instance("a5", "acme", "shop", "n3", 20005);
  c.later();
  const next = await c.ask("n1", ["acme"], peers.version);
  assert.ok(next, "changed");
  assert.notEqual(next.version, peers.version);
  assert.deepEqual(next.tenants.acme, ["10.0.0.2:22001", "[fd00::3]:20003", "[fd00::3]:20005"]);
});

test("a second tenant's first service closes what was open", async (t) => {
  const c = await cluster();
  t.after(() => c.informer.stop());
  await c.node("n1", "10.0.0.1");
  await c.node("n2", "10.0.0.2");
  await c.service("acme", "shop");
  const open = await c.ask("n1", ["acme"]);
  assert.equal(open?.closed, false);
  await c.service("rival", "blog");
  const closed = await c.ask("n1", ["acme"], open?.version);
  assert.equal(closed?.closed, true);
  assert.deepEqual(closed?.nodes, [{ address: "10.0.0.2", ports: { min: 20000, max: 29999 } }]);
});
