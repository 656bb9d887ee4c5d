import assert from "node:assert/strict";
import { test } from "node:test";
import type { Node } from "../model/objects.ts";
import { placeInstance } from "./scheduler.ts";

const GiB = 1024 ** 3;
const node = (name: string, over: Partial<Node> = {}): Node => ({
  name,
  address: "127.0.0.1",
  labels: {},
  capacity: { cpu: 2, memory: 4 * GiB },
  allocatable: { cpu: 2, memory: 4 * GiB },
  state: "ready",
  lastHeartbeat: "",
  registeredAt: "",
  agentVersion: "t",
  isolation: { cgroups: "none" },
  schedulable: true,
  ...over,
});

test("new instances go to the node with the most free capacity", () => {
  const used = new Map([["a", { cpu: 1, memory: 2 * GiB }]]);
  const p = placeInstance({ cpu: 0.25, memory: 256 * 1024 ** 2 }, [node("a"), node("b")], used);
  assert.deepEqual(p, { node: "b" });
  // Placing updates the usage, so a batch spreads.
  const q = placeInstance({ cpu: 0.25, memory: 256 * 1024 ** 2 }, [node("a"), node("b")], used);
  assert.equal(q.node, "b");
  assert.equal(used.get("b")?.cpu, 0.5);
});

test("memory is never overcommitted, and a refusal explains itself per reason", () => {
  const nodes = [
    node("a"),
    node("b", { state: "lost" }),
    node("c", { allocatable: { cpu: 2, memory: GiB } }),
    node("d", { schedulable: false }),
  ];
  const p = placeInstance(
    { cpu: 0.25, memory: 2 * GiB },
    nodes,
    new Map([["a", { cpu: 0, memory: 3 * GiB }]]),
  );
  assert.equal(p.node, null);
  if (p.node === null) {
    assert.deepEqual(p.reasons, { "not ready": 1, "insufficient memory": 2, cordoned: 1 });
    assert.equal(p.message, "4 nodes: 2 insufficient memory, 1 not ready, 1 cordoned");
  }
  const none = placeInstance({ cpu: 0.25, memory: 1 }, [], new Map());
  assert.match(none.node === null ? none.message : "", /no nodes/);
});
