import assert from "node:assert/strict";
import { test } from "node:test";
import { testInstance, testNode } from "../gateway/testing.ts";
import type { Instance, Node, Service } from "../model/objects.ts";
import { ClusterState } from "../scheduler/cluster-state.ts";
import { schedulerNode } from "../scheduler/scheduler.ts";
import { controlPlaneInformer } from "../store/informer-kinds.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { placedInstances } from "./capacity-check.ts";
import { ClusterView } from "./cluster-view.ts";

const GiB = 2 ** 30;

/** A ready node with `cpu` cores and 8 GiB. */
function node(name: string, cpu = 4, extra: Partial<Node> = {}): Node {
  const capacity = { cpu, memory: 8 * GiB };
  return { ...testNode(name, "127.0.0.1"), capacity, allocatable: capacity, ...extra };
}

/** An instance of t/a/web holding 0.5 CPU and 1 GiB on `at` (running), or pending. */
function instance(id: string, at: string | null, extra: Partial<Instance> = {}): Instance {
  const i = testInstance(
    id,
    { tenant: "t", app: "a", service: "web" },
    at,
    undefined,
    at ? "running" : "pending",
  );
  return { ...i, run: { ...i.run, resources: { cpu: 0.5, memory: GiB } }, ...extra };
}

/** What a ClusterState says, as plain data to compare. */
function describe(s: ClusterState) {
  return s.nodes.map((n, i) => ({
    name: n.name,
    cpuFree: s.cpuFree[i],
    memoryFree: s.memoryFree[i],
    open: s.open[i],
    held: s
      .instancesOn(i)
      .map((p) => `${p.id} ${p.criticality}`)
      .sort(),
    replicas: s.replicas("t/a/web").get(i) ?? 0,
  }));
}

test("cluster view: after every kind of change it says what a state built afresh says", async () => {
  const store = new MemoryStore();
  const informer = controlPlaneInformer(store);
  const view = new ClusterView(informer);
  const fresh = () =>
    new ClusterState(
      informer.list<Node>("node").map((o) => schedulerNode(o.value)),
      placedInstances(
        informer.list<Instance>("instance").map((o) => o.value),
        new Map(informer.list<Service>("service").map((o) => [o.key, o.value])),
      ),
    );
  const same = async (what: string) => {
    await informer.sync();
    assert.deepEqual(describe(view.state()), describe(fresh()), what);
  };
  const update = async <T>(kind: "instance" | "node" | "service", key: string, change: (v: T) => T) => {
    const o = await store.get<T>(kind, key);
    assert.ok(o, `${kind} ${key}`);
    await store.put(kind, key, change(o.value), { expectRevision: o.revision });
  };
  try {
    await store.put("node", "n1", node("n1"));
    await store.put("node", "n2", node("n2"));
    await store.put("instance", "i1", instance("i1", "n1"));
    await store.put("service", "t/a/web", { tenant: "t", app: "a", name: "web", spec: {} });
    await same("the first build");
    await store.put("instance", "i2", instance("i2", null));
    await same("a pending instance holds nothing");
    await update<Instance>("instance", "i2", (i) => ({ ...i, node: "n2", state: "provisioning" }));
    await same("placed");
    await update<Instance>("instance", "i1", (i) => ({ ...i, node: "n2" }));
    await same("moved to another node");
    await update<Instance>("instance", "i1", (i) => ({ ...i, state: "stopped" }));
    await same("stopped: frees its share");
    await store.delete("instance", "i2");
    await same("deleted");
    await store.put("instance", "i3", instance("i3", "n1"));
    await update<Node>("node", "n1", (n) => ({ ...n, allocatable: { cpu: 2, memory: 4 * GiB } }));
    await same("a node's allocatable shrinks: what is held stays held");
    await update<Node>("node", "n2", (n) => ({ ...n, state: "not_ready" }));
    await same("a node not ready is closed");
    await update<Node>("node", "n2", (n) => ({ ...n, lastHeartbeat: "2026-01-01T00:01:00.000Z" }));
    await same("a change the scheduler does not see");
    await store.put("node", "n3", node("n3", 8));
    await same("a node joins");
    await store.delete("node", "n1");
    await same("a node leaves");
    await update<Service>(
      "service",
      "t/a/web",
      (s) => ({ ...s, spec: { criticality: "critical" } }) as Service,
    );
    await store.put("instance", "i4", instance("i4", "n3"));
    await same("a service's criticality changes");
  } finally {
    view.stop();
    informer.stop();
  }
});

test("cluster view: a placement is seen at once; a placement whose write failed is forgotten", async () => {
  const store = new MemoryStore();
  const informer = controlPlaneInformer(store);
  const view = new ClusterView(informer);
  try {
    await store.put("node", "n1", node("n1"));
    await informer.sync();
    const state = view.state();
    state.add({
      id: "p1",
      service: "t/a/web",
      node: "n1",
      resources: { cpu: 1, memory: GiB },
      criticality: "normal",
    });
    assert.equal(view.state().cpuFree[0], 3, "the next pass sees the placement before its write lands");
    // The write landed: the store's copy replaces it (held once, not twice).
    await store.put(
      "instance",
      "p1",
      instance("p1", "n1", { run: { ...instance("x", null).run, resources: { cpu: 1, memory: GiB } } }),
    );
    await informer.sync();
    assert.equal(view.state().cpuFree[0], 3);
    // Another placement whose write fails: the view puts it back as the store has it (nowhere).
    view.state().add({
      id: "p2",
      service: "t/a/web",
      node: "n1",
      resources: { cpu: 2, memory: GiB },
      criticality: "normal",
    });
    assert.equal(view.state().cpuFree[0], 1);
    view.refresh("p2");
    assert.equal(view.state().cpuFree[0], 3);
    assert.equal(view.state().holds("p1"), true);
  } finally {
    view.stop();
    informer.stop();
  }
});
