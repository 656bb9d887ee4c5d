import assert from "node:assert/strict";
import { test } from "node:test";
import type { CapacityReport, NodeCapacity } from "../api/capacity.ts";
import type { Node } from "../model/objects.ts";
import { capacityText } from "./capacity.ts";
import { nodesTable } from "./format.ts";

const MiB = 1024 ** 2;
const n1: NodeCapacity = {
  name: "n1",
  state: "ready",
  schedulable: true,
  capacity: { cpu: 2, memory: 2048 * MiB },
  allocatable: { cpu: 1.9, memory: 1792 * MiB },
  cpuOvercommit: 2,
  requested: { cpu: 0.75, memory: 384 * MiB },
  free: { cpu: 3.05, memory: 1408 * MiB },
  used: { cpu: 0.02, memory: 95 * MiB },
  machine: { cpu: 1.2, memory: 1024 * MiB },
  instances: 3,
};
const n2: NodeCapacity = {
  ...n1,
  name: "n2",
  state: "lost",
  schedulable: false,
  cpuOvercommit: 1,
  requested: { cpu: 2, memory: 128 * MiB },
  free: { cpu: -0.1, memory: 1664 * MiB },
  used: {},
  machine: undefined,
  instances: 1,
};

test("herd capacity: nodes with a total of the ready ones, then tenants with units and quota", () => {
  const report: CapacityReport = {
    nodes: [n1, n2],
    tenants: [
      {
        name: "acme",
        instances: 3,
        requested: { cpu: 0.75, memory: 384 * MiB },
        used: { cpu: 0.02, memory: 95 * MiB },
        units: 3,
        quota: 10,
        nodes: [{ node: "n1", instances: 3, requested: n1.requested, used: n1.used }],
      },
      { name: "idle", instances: 0, requested: { cpu: 0, memory: 0 }, used: {}, units: 0, nodes: [] },
    ],
    total: { allocatable: n1.allocatable, requested: n1.requested, free: n1.free, used: n1.used },
  };
  assert.equal(
    capacityText(report),
    [
      "NODE            STATE   INSTANCES   CPU ALLOC   CPU REQ   CPU FREE   CPU USED   MEM ALLOC   MEM REQ   MEM FREE   MEM USED   MACHINE USED",
      "n1              ready   3           1.9 ×2      0.75      3.05       0.02       1.8 GiB     384 MiB   1.4 GiB    95 MiB     cpu 1.2, 1 GiB",
      "n2              lost    1           1.9         2         -0.1       -          1.8 GiB     128 MiB   1.6 GiB    -          -",
      "total (ready)           3           1.9         0.75      3.05       0.02       1.8 GiB     384 MiB   1.4 GiB    95 MiB",
      "",
      "TENANT   INSTANCES   CPU REQ   CPU USED   MEM REQ   MEM USED   UNITS     NODES",
      "acme     3           0.75      0.02       384 MiB   95 MiB     3 of 10   n1:3",
      "idle     0           0         -          0 B       -          0         -",
    ].join("\n"),
  );
});

test("a tenant's view adds its own share of each node", () => {
  const text = capacityText({
    tenant: "acme",
    nodes: [
      {
        ...n1,
        tenant: {
          instances: 2,
          requested: { cpu: 0.5, memory: 256 * MiB },
          used: { cpu: 0.01, memory: 40 * MiB },
        },
      },
    ],
    tenants: [],
    total: { allocatable: n1.allocatable, requested: n1.requested, free: n1.free, used: n1.used },
  });
  const [head, row] = text.split("\n");
  assert.match(head, /ACME REQ \/ USED$/);
  assert.match(row, /0\.5 cpu, 256 MiB \/ 0\.01 cpu, 40 MiB$/);
});

test("herd nodes: used/free/allocatable per node when the server has the figures", () => {
  const node = {
    name: "n1",
    address: "127.0.0.1",
    labels: {},
    capacity: n1.capacity,
    allocatable: n1.allocatable,
    state: "ready",
    lastHeartbeat: new Date(1000).toISOString(),
    registeredAt: new Date(0).toISOString(),
    agentVersion: "0.1.0",
    isolation: { cgroups: "v2" },
    schedulable: true,
  } as Node;
  const lines = nodesTable([node], 2000, new Map([["n1", n1]])).split("\n");
  assert.equal(
    lines[0],
    "NAME   STATE   ADDRESS     INSTANCES   CPU USED/FREE/ALLOC   MEMORY USED/FREE/ALLOC   ISOLATION    DRIVERS   LAST HEARTBEAT",
  );
  assert.equal(
    lines[1],
    "n1     ready   127.0.0.1   3           0.02/3.05/1.9 ×2      95 MiB/1.4 GiB/1.8 GiB   cgroups v2   process   1s ago",
  );
});
