import assert from "node:assert/strict";
import { test } from "node:test";
import { ClusterState, type PlacedInstance, type SchedulerNode } from "./cluster-state.ts";
import { copiesThatFit, type PlacementRequest, SAMPLE, Scheduler } from "./scheduler.ts";
import { findShortfall } from "./shortfall.ts";

const GiB = 1024 ** 3;
const QUARTER = { cpu: 0.25, memory: GiB / 4 };

const node = (name: string, over: Partial<SchedulerNode> = {}): SchedulerNode => ({
  name,
  labels: {},
  allocatable: { cpu: 2, memory: 4 * GiB },
  ready: true,
  schedulable: true,
  ...over,
});

let ids = 0;
const request = (over: Partial<PlacementRequest> = {}): PlacementRequest => ({
  id: `i-${++ids}`,
  service: "t/app/web",
  resources: QUARTER,
  ...over,
});

const placed = (node: string, over: Partial<PlacedInstance> = {}): PlacedInstance => ({
  id: `p-${++ids}`,
  service: "t/app/other",
  node,
  resources: QUARTER,
  criticality: "normal",
  ...over,
});

const where = (s: Scheduler, r: PlacementRequest) => s.place(r).node;

test("spread: a new instance goes to the node with the most free capacity, and a batch spreads", () => {
  const s = new Scheduler(
    new ClusterState([node("a"), node("b")], [placed("a", { resources: { cpu: 1, memory: 2 * GiB } })]),
  );
  assert.equal(where(s, request()), "b");
  assert.equal(where(s, request({ service: "t/app/worker" })), "b");
  assert.ok(Math.abs(s.state.cpuFree[1] - 1.5) < 1e-9);
});

test("memory is never overcommitted, and a refusal counts each node under the first filter it fails", () => {
  const state = new ClusterState(
    [
      node("a"),
      node("b", { ready: false }),
      node("c", { allocatable: { cpu: 2, memory: GiB } }),
      node("d", { schedulable: false }),
    ],
    [placed("a", { resources: { cpu: 0, memory: 3 * GiB } })],
  );
  const p = new Scheduler(state).place(request({ resources: { cpu: 0.25, memory: 2 * GiB } }));
  assert.equal(p.node, null);
  if (p.node === null) {
    assert.deepEqual(p.reasons, { "not ready": 1, "insufficient memory": 2, cordoned: 1 });
    assert.equal(p.message, "4 nodes: 2 insufficient memory, 1 not ready, 1 cordoned");
  }
  const none = new Scheduler(new ClusterState([])).place(request());
  assert.match(none.node === null ? none.message : "", /no nodes/);
});

test("CPU overcommit: requests may exceed allocatable CPU by the node's ratio, memory may not", () => {
  // 1.9 allocatable CPU at 2× takes 3.8 CPU of requests: 38 instances of 0.1 CPU, not 39.
  const tenth = { cpu: 0.1, memory: 64 * 1024 ** 2 };
  const s = new Scheduler(
    new ClusterState([node("vm", { allocatable: { cpu: 1.9, memory: 8 * GiB }, cpuOvercommit: 2 })]),
  );
  for (let i = 0; i < 38; i++)
    assert.equal(where(s, request({ resources: tenth })), "vm", `instance ${i + 1}`);
  const full = s.place(request({ resources: tenth }));
  assert.equal(full.node, null);
  if (full.node === null) assert.deepEqual(full.reasons, { "insufficient cpu": 1 });
  // The shortfall counts against the overcommitted total.
  const short = findShortfall(s.state, [request({ resources: tenth })]);
  assert.match(short?.message ?? "", /vm 0\.0 free of 3\.8/);
  // Without a ratio, 1: 19 fit.
  const plain = new Scheduler(new ClusterState([node("vm", { allocatable: { cpu: 1.9, memory: 8 * GiB } })]));
  let n = 0;
  while (plain.place(request({ resources: tenth })).node !== null) n++;
  assert.equal(n, 19);
  // Memory is never overcommitted, whatever the CPU ratio.
  const memory = new Scheduler(
    new ClusterState([node("m", { allocatable: { cpu: 2, memory: GiB }, cpuOvercommit: 4 })]),
  );
  assert.equal(where(memory, request({ resources: { cpu: 0.1, memory: GiB } })), "m");
  const over = memory.place(request({ resources: { cpu: 0.1, memory: 1 } }));
  assert.equal(over.node, null);
  if (over.node === null) assert.deepEqual(over.reasons, { "insufficient memory": 1 });
});

test("node selectors and taints: only matching labels, only tolerated taints", () => {
  const nodes = [
    node("plain"),
    node("ssd", { labels: { disk: "ssd" } }),
    node("gpu", { labels: { disk: "ssd" }, taints: [{ key: "gpu", value: "a100" }] }),
  ];
  const s = new Scheduler(new ClusterState(nodes));
  for (let n = 0; n < 4; n++) assert.equal(where(s, request({ nodeSelector: { disk: "ssd" } })), "ssd");
  // Tolerating the taint opens the gpu node; a toleration with the wrong value does not.
  assert.equal(where(s, request({ nodeSelector: { disk: "ssd" }, tolerations: [{ key: "gpu" }] })), "gpu");
  const wrong = new Scheduler(new ClusterState([nodes[2]])).place(
    request({ tolerations: [{ key: "gpu", value: "h100" }] }),
  );
  assert.equal(wrong.node === null && wrong.message, "1 node: 1 untolerated taint");
  const unlabeled = new Scheduler(new ClusterState([node("plain")])).place(
    request({ nodeSelector: { disk: "ssd" } }),
  );
  assert.equal(unlabeled.node === null && unlabeled.message, "1 node: 1 node selector");
});

test("required anti-affinity keeps replicas on different nodes and says so when it cannot", () => {
  const s = new Scheduler(new ClusterState([node("a"), node("b"), node("c")]));
  const apart = { antiAffinity: [{ service: "t/app/web", required: true }] };
  const nodes = new Set([where(s, request(apart)), where(s, request(apart)), where(s, request(apart))]);
  assert.equal(nodes.size, 3);
  const fourth = s.place(request(apart));
  assert.equal(fourth.node === null && fourth.message, "3 nodes: 3 anti-affinity");
});

test("required affinity places next to the named service; preferred affinity only scores", () => {
  const state = new ClusterState([node("a"), node("b"), node("c")], [placed("c", { service: "t/app/db" })]);
  const s = new Scheduler(state);
  assert.equal(where(s, request({ affinity: [{ service: "t/app/db", required: true }] })), "c");
  assert.equal(where(s, request({ affinity: [{ service: "t/app/db", required: false }] })), "c");
  const none = new Scheduler(new ClusterState([node("a")])).place(
    request({ affinity: [{ service: "t/app/db", required: true }] }),
  );
  assert.equal(none.node === null && none.message, "1 node: 1 affinity");
});

test("spreadBy spreads replicas over the zones before doubling up in one", () => {
  const nodes = ["a", "b", "c", "d", "e", "f"].map((n, i) => node(n, { labels: { zone: `z${i % 3}` } }));
  const s = new Scheduler(new ClusterState(nodes));
  const zones = [0, 1, 2].map(() => {
    const name = where(s, request({ spreadBy: "zone" }));
    return nodes.find((n) => n.name === name)?.labels.zone;
  });
  assert.deepEqual([...new Set(zones)].sort(), ["z0", "z1", "z2"]);
});

test("binpack fills the fullest node that fits before opening another", () => {
  const s = new Scheduler(new ClusterState([node("a"), node("b"), node("c")], [placed("b")]));
  const binpack = { strategy: "binpack" as const, resources: { cpu: 0.5, memory: GiB } };
  for (let n = 0; n < 3; n++) assert.equal(where(s, request(binpack)), "b");
  // b has 0.25 CPU left now: the next one opens another node.
  assert.notEqual(where(s, request(binpack)), "b");
});

test("a pet goes back to its own node, or waits with the reason", () => {
  const s = new Scheduler(new ClusterState([node("a"), node("b", { ready: false })]));
  assert.equal(where(s, request({ node: "a" })), "a");
  const p = s.place(request({ node: "b" }));
  assert.equal(p.node, null);
  if (p.node === null) assert.equal(p.message, "2 nodes: 1 not ready, 1 not the pet's node");
});

test("preemption: a critical instance evicts the fewest, least critical instances; never pets or peers", () => {
  const full = { cpu: 1, memory: 2 * GiB };
  const state = new ClusterState(
    [node("a"), node("b")],
    [
      placed("a", { id: "low-a1", criticality: "low", resources: full }),
      placed("a", { id: "normal-a", criticality: "normal", resources: full }),
      placed("b", { id: "low-b1", criticality: "low", resources: full }),
      placed("b", { id: "pet-b", criticality: "low", resources: full, pet: true }),
    ],
  );
  const s = new Scheduler(state);
  // Normal may preempt low; without the option nothing is evicted.
  assert.equal(s.place(request({ criticality: "critical", resources: full })).node, null);
  const p = s.place(request({ criticality: "critical", resources: full }), { preempt: true });
  assert.equal(p.node, "a");
  if (p.node !== null)
    assert.deepEqual(
      p.preempted.map((v) => v.id),
      ["low-a1"],
    );
  // Low never preempts; normal preempts low, but not normal or pets.
  assert.equal(s.place(request({ criticality: "low", resources: full }), { preempt: true }).node, null);
  const normal = s.place(request({ criticality: "normal", resources: full }), { preempt: true });
  assert.deepEqual(normal.node === "b" && normal.preempted.map((v) => v.id), ["low-b1"]);
  const again = s.place(request({ criticality: "normal", resources: full }), { preempt: true });
  assert.equal(again.node, null);
});

test("preemption: burstable instances go before guaranteed ones, then the least critical", () => {
  const half = { cpu: 0.5, memory: GiB };
  const guaranteed = { ...half, cpuLimit: 0.5 };
  const state = new ClusterState(
    [node("a", { allocatable: { cpu: 2, memory: 3 * GiB } })],
    [
      placed("a", { id: "low-guaranteed", criticality: "low", resources: guaranteed }),
      placed("a", { id: "normal-burstable", criticality: "normal", resources: half }),
      placed("a", { id: "low-burstable", criticality: "low", resources: half }),
    ],
  );
  const s = new Scheduler(state);
  // One victim is enough: the burstable low one, though a guaranteed low one is there too.
  const one = s.place(request({ criticality: "critical", resources: half }), { preempt: true });
  assert.deepEqual(one.node === "a" && one.preempted.map((v) => v.id), ["low-burstable"]);
  // Then the burstable normal one before the guaranteed low one.
  const two = s.place(request({ criticality: "critical", resources: half }), { preempt: true });
  assert.deepEqual(two.node === "a" && two.preempted.map((v) => v.id), ["normal-burstable"]);
  const three = s.place(request({ criticality: "critical", resources: half }), { preempt: true });
  assert.deepEqual(three.node === "a" && three.preempted.map((v) => v.id), ["low-guaranteed"]);
});

test("preemption: the node with the fewest guaranteed victims wins among equal counts", () => {
  const full = { cpu: 1, memory: 2 * GiB };
  const state = new ClusterState(
    [node("a"), node("b")],
    [
      placed("a", { id: "a-guaranteed", criticality: "low", resources: { ...full, cpuLimit: 1 } }),
      placed("a", { id: "a-fill", criticality: "critical", resources: full }),
      placed("b", { id: "b-burstable", criticality: "normal", resources: full }),
      placed("b", { id: "b-fill", criticality: "critical", resources: full }),
    ],
  );
  const p = new Scheduler(state).place(request({ criticality: "critical", resources: full }), {
    preempt: true,
  });
  assert.deepEqual(p.node === "b" && p.preempted.map((v) => v.id), ["b-burstable"]);
});

test("at scale a spread scan samples, and the cursor gives every node its turn", () => {
  const nodes = Array.from({ length: SAMPLE * 4 }, (_, i) => node(`n${i}`));
  const s = new Scheduler(new ClusterState(nodes));
  const used = new Set<string>();
  for (let n = 0; n < SAMPLE * 4; n++) {
    const name = where(s, request({ service: `t/app/s${n}` }));
    if (name) used.add(name);
  }
  assert.equal(used.size, SAMPLE * 4);
});

test("a shortfall is explained in numbers: what all the instances need, what is free, on which nodes", () => {
  // 12 × 0.5 CPU on a 1.9-CPU node where another service holds 0.5: 2 fit, 10 do not.
  const state = new ClusterState(
    [node("vm", { allocatable: { cpu: 1.9, memory: 8 * GiB } }), node("off", { ready: false })],
    [placed("vm", { resources: { cpu: 0.5, memory: GiB / 4 } })],
  );
  const requests = Array.from({ length: 12 }, () => request({ resources: { cpu: 0.5, memory: GiB / 4 } }));
  const short = findShortfall(state, requests);
  assert.deepEqual(short, {
    unplaced: 10,
    of: 12,
    message: "10 of 12 instances cannot be placed: needs 6.0 CPU, 1.4 free on 1 node: vm 1.4 free of 1.9",
  });
  // All fit: no shortfall.
  const roomy = new ClusterState([node("a"), node("b")]);
  assert.equal(findShortfall(roomy, [request(), request()]), undefined);
});

test("a shortfall of memory, of room on any one node, and of anything but resources each says so", () => {
  const memory = findShortfall(new ClusterState([node("a"), node("b")]), [
    request({ resources: { cpu: 0.25, memory: 3 * GiB } }),
    request({ resources: { cpu: 0.25, memory: 3 * GiB } }),
    request({ resources: { cpu: 0.25, memory: 3 * GiB } }),
  ]);
  assert.equal(
    memory?.message,
    "1 of 3 instances cannot be placed: needs 9.0 GiB memory, 8.0 GiB free on 2 nodes: a 4.0 GiB free of 4.0 GiB, b 4.0 GiB free of 4.0 GiB",
  );
  // 0.6 CPU free in all, 0.3 on each node: one instance of 0.5 fits on neither.
  const split = new ClusterState(
    [node("a"), node("b")],
    [
      placed("a", { resources: { cpu: 1.7, memory: 0 } }),
      placed("b", { resources: { cpu: 1.7, memory: 0 } }),
    ],
  );
  assert.equal(
    findShortfall(split, [request({ resources: { cpu: 0.5, memory: 0 } })])?.message,
    "1 of 1 instance cannot be placed: each needs 0.5 CPU, more than any of 2 nodes has free: a 0.3 free of 2.0, b 0.3 free of 2.0",
  );
  // Three replicas kept apart on two nodes: the third has nowhere to go, for no lack of resources.
  const apart = { antiAffinity: [{ service: "t/app/web", required: true }] };
  assert.equal(
    findShortfall(new ClusterState([node("a"), node("b")]), [request(apart), request(apart), request(apart)])
      ?.message,
    "1 of 3 instances cannot be placed: 2 nodes: 2 anti-affinity",
  );
});

test("warm slug: a node that holds the release's slug is preferred, but replicas still spread", () => {
  const slug = "a".repeat(64);
  const warm = new Set([slug]);
  // Equal nodes, no replica anywhere (a wake from zero): the warm one, wherever the scan starts.
  for (const cursor of [0, 1, 2]) {
    const s = new Scheduler(new ClusterState([node("a"), node("b", { slugs: warm }), node("c")]), cursor);
    assert.equal(where(s, request({ slug })), "b");
  }
  // Without a slug in the request the scorer has no say: the emptier node.
  const plain = new Scheduler(new ClusterState([node("a"), node("b", { slugs: warm })], [placed("b")]));
  assert.equal(where(plain, request()), "a");
  // A second replica goes to the other node even though only the first holds the slug.
  const s = new Scheduler(new ClusterState([node("a"), node("b", { slugs: warm })]));
  assert.equal(where(s, request({ slug })), "b");
  assert.equal(where(s, request({ slug })), "a", "replicas apart outweighs a warm slug");
});

test("runtime: a service that asks for docker goes only to nodes whose agent has it, and says why not", () => {
  const s = new Scheduler(new ClusterState([node("a"), node("b", { drivers: ["docker"] }), node("c")]));
  for (let i = 0; i < 3; i++) assert.equal(where(s, request({ runtime: "docker" })), "b");
  assert.equal(where(s, request()), "a", "the process driver is on every node");
  const none = new Scheduler(new ClusterState([node("a"), node("c")])).place(request({ runtime: "docker" }));
  assert.equal(none.node === null && none.message, "2 nodes: 2 runtime driver missing");
});

test("copiesThatFit counts what fits as it is, per node the scarcer of CPU and memory, and agrees with placing them", () => {
  const nodes = [
    node("a"), // 2 CPU, 4 GiB: 8 quarters
    node("b", { allocatable: { cpu: 2, memory: GiB } }), // memory for 4
    node("c", { taints: [{ key: "gpu" }] }), // untolerated
    node("d", { schedulable: false }),
    node("e", { ready: false }),
  ];
  const state = () => new ClusterState(nodes, [placed("a", { resources: { cpu: 0.7, memory: 0 } })]);
  // a: 1.3 CPU left → 5 quarters; b: 4; c, d, e: none.
  assert.equal(copiesThatFit(state(), request(), 100), 9);
  assert.equal(copiesThatFit(state(), request({ tolerations: [{ key: "gpu" }] }), 100), 17);
  assert.equal(copiesThatFit(state(), request(), 3), 5, "stops at the first node that reaches enough");
  assert.equal(copiesThatFit(state(), request({ nodeSelector: { disk: "ssd" } }), 100), 0);
  // The same as placing them one by one: the 10th finds no room.
  const s = new Scheduler(state());
  const placedCount = Array.from({ length: 10 }, () => where(s, request())).filter((n) => n !== null).length;
  assert.equal(placedCount, 9);
  // Exact quarters fill a node to the last one (the CPU filter's tolerance, k times over).
  assert.equal(
    copiesThatFit(new ClusterState([node("x")]), request({ resources: { cpu: 0.1, memory: 1 } }), 100),
    20,
  );
});

test("copiesThatFit does not answer where one copy changes where the next may go", () => {
  const state = new ClusterState([node("a"), node("b")]);
  assert.equal(
    copiesThatFit(state, request({ antiAffinity: [{ service: "t/app/web", required: true }] }), 5),
    undefined,
  );
  assert.equal(
    copiesThatFit(state, request({ affinity: [{ service: "t/app/db", required: true }] }), 5),
    undefined,
  );
  assert.equal(copiesThatFit(state, request({ node: "a" }), 5), undefined);
  // Preferred terms only score: copies stay independent.
  assert.equal(
    copiesThatFit(state, request({ antiAffinity: [{ service: "t/app/web", required: false }] }), 100),
    16,
  );
});
