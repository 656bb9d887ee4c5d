import assert from "node:assert/strict";
import { test } from "node:test";
import type { Token } from "../model/identity.ts";
import type { MachineRequest } from "../model/machines.ts";
import type { Instance, Node, Service } from "../model/objects.ts";
import {
  DEFAULT_MACHINE_SETTINGS,
  idleNodes,
  joinTokenOf,
  type MachineWorld,
  machineNeeds,
  planMachines,
  since,
} from "./machine-plan.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const iso = (ms: number) => new Date(ms).toISOString();
const MiB = 1024 * 1024;

function service(
  name: string,
  placement?: Service["spec"]["placement"],
  state: Service["state"] = "scaling",
): Service {
  return {
    tenant: "default",
    app: "shop",
    name,
    release: 1,
    spec: {
      resources: { cpu: 0.5, memory: 256 * MiB },
      ...(placement ? { placement } : {}),
    } as Service["spec"],
    instances: 3,
    state,
    message: "",
    crashes: 0,
  };
}

function instance(id: string, over: Partial<Instance> = {}): Instance {
  return {
    id,
    tenant: "default",
    app: "shop",
    service: "web",
    release: 1,
    mode: "cattle",
    node: null,
    desired: "running",
    generation: 1,
    state: "pending",
    reason: "Unschedulable",
    message: "1 node: 1 insufficient cpu",
    run: { resources: { cpu: 0.5, memory: 256 * MiB } } as Instance["run"],
    restarts: 0,
    createdAt: iso(T0),
    ...over,
  };
}

const node = (name: string, state: Node["state"] = "ready"): Node =>
  ({ name, state, schedulable: true, labels: {} }) as Node;

function request(over: Partial<MachineRequest> = {}): MachineRequest {
  return {
    id: "m-1",
    state: "requested",
    requestedAt: iso(T0),
    joinToken: "jt1",
    joinBy: iso(T0 + 600_000),
    machines: 2,
    needs: [],
    nodes: [],
    message: "",
    ...over,
  };
}

const agentToken = (node: string, joinToken: string): Token => ({
  id: `a-${node}`,
  name: `node ${node}`,
  kind: "agent",
  node,
  createdAt: iso(T0),
  createdBy: `join ${joinToken}`,
});

/** A world at `now` with two unschedulable instances of web waiting since T0, and nothing else. */
function world(over: Partial<MachineWorld> = {}): MachineWorld {
  const instances = over.instances ?? [instance("i1"), instance("i2")];
  return {
    now: T0 + 60_000,
    settings: DEFAULT_MACHINE_SETTINGS,
    requests: [],
    nodes: [node("small")],
    instances,
    services: new Map([["default/shop/web", service("web")]]),
    agentTokens: [],
    pendingSince: new Map(instances.map((i) => [i.id, T0])),
    idleSince: new Map(),
    ...over,
  };
}

test("asks once for what fits nowhere: one machine per instance at most, with the shortfall in numbers", () => {
  const plan = planMachines(world());
  assert.deepEqual(plan.ask, {
    machines: 2,
    needs: [
      {
        instances: 2,
        cpu: 1,
        memory: 512 * MiB,
        largest: { cpu: 0.5, memory: 256 * MiB },
        labels: {},
        tolerations: [],
        services: [
          {
            tenant: "default",
            app: "shop",
            service: "web",
            instances: 2,
            message: "1 node: 1 insufficient cpu",
          },
        ],
      },
    ],
  });
});

test("waits out the debounce: instances that just failed to place are not a shortfall yet", () => {
  const w = world();
  assert.equal(planMachines({ ...w, now: T0 + 9_999 }).ask, undefined);
  assert.ok(planMachines({ ...w, now: T0 + 10_000 }).ask);
  // The controller keeps first-seen times: a new instance starts its own wait.
  const seen = since(new Map([["i1", T0]]), ["i1", "i3"], T0 + 5000);
  assert.deepEqual(
    [...seen],
    [
      ["i1", T0],
      ["i3", T0 + 5000],
    ],
  );
});

test("never a storm: no second ask while one is open, within the cooldown, or past the budget", () => {
  // Open (no machine joined yet): wait for it.
  assert.equal(planMachines(world({ requests: [request()], now: T0 + 300_000 })).ask, undefined);
  // A failed one: asked again only once the cooldown since its ask is over.
  const failed = request({ state: "failed", failedAt: iso(T0 + 1000) });
  assert.equal(planMachines(world({ requests: [failed], now: T0 + 59_000 })).ask, undefined);
  assert.ok(planMachines(world({ requests: [failed], now: T0 + 61_000 })).ask);
  // Budget: 10 machines at most; 9 joined and live leave room for one.
  const nine = request({
    state: "joined",
    requestedAt: iso(T0 - 3_600_000),
    joinBy: iso(T0 - 3_000_000),
    nodes: Array.from({ length: 9 }, (_, n) => ({
      name: `p${n}`,
      joinedAt: iso(T0),
      state: "joined" as const,
    })),
  });
  const busy = Array.from({ length: 9 }, (_, n) => instance(`busy${n}`, { node: `p${n}`, state: "running" }));
  const pending = [instance("i1"), instance("i2")];
  const w = world({
    requests: [nine],
    instances: [...busy, ...pending],
    pendingSince: new Map(pending.map((i) => [i.id, T0])),
  });
  assert.equal(planMachines(w).ask?.machines, 1);
  assert.equal(
    planMachines({ ...w, settings: { ...DEFAULT_MACHINE_SETTINGS, maxMachines: 9 } }).ask,
    undefined,
    "the budget is spent",
  );
});

test("asks nothing for instances a machine cannot help: placed, stopping, a failed service, a pet bound to its node", () => {
  const services = new Map([
    ["default/shop/web", service("web")],
    ["default/shop/db", service("db", undefined, "failed")],
  ]);
  const instances = [
    instance("placed", { node: "small", state: "provisioning" }),
    instance("stopping", { desired: "stopped" }),
    instance("waiting", { reason: "Created", message: "" }),
    instance("db-1", { service: "db" }),
    instance("pet", { mode: "pet", moving: { to: "small" } }),
    instance("gone", { service: "nosuch" }),
  ];
  const w = world({ instances, services, pendingSince: new Map(instances.map((i) => [i.id, T0])) });
  assert.equal(planMachines(w).ask, undefined);
});

test("needs are grouped by the labels and tolerations a machine must offer", () => {
  const services = new Map([
    ["default/shop/web", service("web")],
    [
      "default/shop/gpu",
      service("gpu", {
        strategy: "spread",
        nodeSelector: { gpu: "yes" },
        tolerations: [{ key: "dedicated" }],
      }),
    ],
  ]);
  const big = { resources: { cpu: 2, memory: 1024 * MiB } } as Instance["run"];
  const needs = machineNeeds(
    [instance("w1"), instance("g1", { service: "gpu", run: big }), instance("g2", { service: "gpu" })],
    services,
  );
  assert.equal(needs.length, 2);
  const gpu = needs.find((n) => n.labels.gpu === "yes")!;
  assert.equal(gpu.instances, 2);
  assert.equal(gpu.cpu, 2.5);
  assert.deepEqual(gpu.largest, { cpu: 2, memory: 1024 * MiB });
  assert.deepEqual(gpu.tolerations, [{ key: "dedicated" }]);
  assert.deepEqual(
    needs.find((n) => Object.keys(n.labels).length === 0)!.services.map((s) => s.service),
    ["web"],
  );
});

test("a node joined with a request's join token is the request's; one joined otherwise is not", () => {
  const w = world({
    requests: [request()],
    agentTokens: [
      agentToken("p1", "jt1"),
      agentToken("manual", "other"),
      { ...agentToken("admin", "x"), createdBy: "user admin" },
    ],
  });
  const plan = planMachines(w);
  assert.deepEqual(plan.joined, [{ request: "m-1", node: "p1" }]);
  assert.equal(joinTokenOf(w.agentTokens[2]), undefined);
  // The machine that just joined gets its chance to take the instances before more are asked for.
  assert.equal(plan.ask, undefined);
  const p1 = { name: "p1", joinedAt: iso(T0 + 60_000), state: "joined" as const };
  const settled = request({ state: "joined", nodes: [p1] });
  assert.equal(planMachines({ ...w, agentTokens: [], requests: [settled], now: T0 + 69_000 }).ask, undefined);
  assert.ok(planMachines({ ...w, agentTokens: [], requests: [settled], now: T0 + 70_000 }).ask);
  // Recorded already: not joined twice.
  const recorded = request({ state: "joined", nodes: [{ name: "p1", joinedAt: iso(T0), state: "joined" }] });
  assert.deepEqual(planMachines({ ...w, requests: [recorded] }).joined, []);
});

test("a request no machine joined by its deadline expires, and is forgotten after the cooldown", () => {
  const r = request({ joinBy: iso(T0 + 30_000) });
  assert.deepEqual(planMachines(world({ requests: [r], now: T0 + 29_000 })).expired, []);
  assert.deepEqual(planMachines(world({ requests: [r], now: T0 + 30_000 })).expired, ["m-1"]);
  const failed = request({ state: "failed", failedAt: iso(T0 + 30_000), joinBy: iso(T0 + 30_000) });
  assert.deepEqual(planMachines(world({ requests: [failed], now: T0 + 60_000 })).forget, []);
  assert.deepEqual(planMachines(world({ requests: [failed], now: T0 + 90_000 })).forget, ["m-1"]);
});

test("hands back only the provider's idle nodes: idle long enough → cordon → settle → release → agent gone → remove", () => {
  const s = { ...DEFAULT_MACHINE_SETTINGS, idleMs: 30_000 };
  const joined = request({
    state: "joined",
    nodes: [
      { name: "p1", joinedAt: iso(T0), state: "joined" },
      { name: "p2", joinedAt: iso(T0), state: "joined" },
    ],
  });
  const instances = [instance("on-p2", { node: "p2", state: "running" })];
  // A node the provider did not make, idle for ages, is never in any list.
  const nodes = [node("small"), node("p1"), node("p2"), node("mine")];
  assert.deepEqual(idleNodes([joined], instances, nodes), ["p1"]);
  assert.deepEqual(idleNodes([joined], [], [node("p2")]), ["p2"], "idle only once registered");
  const idleSince = new Map([
    ["p1", T0],
    ["mine", T0 - 10_000_000],
  ]);
  const base = world({
    settings: s,
    requests: [joined],
    nodes,
    instances,
    idleSince,
    pendingSince: new Map(),
  });
  assert.deepEqual(planMachines({ ...base, now: T0 + 29_000 }).cordon, []);
  assert.deepEqual(planMachines({ ...base, now: T0 + 30_000 }).cordon, [{ request: "m-1", node: "p1" }]);

  const cordoned = request({
    ...joined,
    nodes: [{ name: "p1", joinedAt: iso(T0), state: "releasing", cordonedAt: iso(T0 + 30_000) }],
  });
  const after = world({ settings: s, requests: [cordoned], nodes, instances: [], pendingSince: new Map() });
  assert.deepEqual(
    planMachines({ ...after, now: T0 + 31_000 }).release,
    [],
    "a placement in flight may land first",
  );
  assert.deepEqual(planMachines({ ...after, now: T0 + 32_000 }).release, [{ request: "m-1", node: "p1" }]);
  // An instance landed on it meanwhile: kept, never released with an instance on it.
  const landed = planMachines({
    ...after,
    now: T0 + 40_000,
    instances: [instance("late", { node: "p1", state: "provisioning" })],
  });
  assert.deepEqual(landed.release, []);
  assert.deepEqual(landed.uncordon, [{ request: "m-1", node: "p1" }]);
  // A failed release is tried again after the cooldown.
  const refused = request({
    ...cordoned,
    nodes: [{ ...cordoned.nodes[0], releaseFailedAt: iso(T0 + 32_000) }],
  });
  assert.deepEqual(planMachines({ ...after, requests: [refused], now: T0 + 60_000 }).release, []);
  assert.equal(planMachines({ ...after, requests: [refused], now: T0 + 92_000 }).release.length, 1);

  const released = request({ ...joined, nodes: [{ name: "p1", joinedAt: iso(T0), state: "released" }] });
  const gone = world({ settings: s, requests: [released], instances: [], pendingSince: new Map() });
  assert.deepEqual(
    planMachines({ ...gone, nodes: [node("p1", "ready")] }).remove,
    [],
    "its agent still heartbeats",
  );
  assert.deepEqual(planMachines({ ...gone, nodes: [node("p1", "lost")] }).remove, [
    { request: "m-1", node: "p1" },
  ]);
  // A machine whose agent joined but never registered is handed back after the join timeout.
  const ghost = world({
    settings: s,
    requests: [joined],
    nodes: [node("small")],
    instances: [],
    pendingSince: new Map(),
  });
  assert.deepEqual(planMachines({ ...ghost, now: T0 + s.joinTimeoutMs - 1 }).cordon, []);
  assert.equal(planMachines({ ...ghost, now: T0 + s.joinTimeoutMs }).cordon.length, 2);
  // All machines gone and no more joins: forgotten.
  const empty = request({ state: "joined", joinBy: iso(T0), nodes: [] });
  assert.deepEqual(planMachines({ ...gone, requests: [empty] }).forget, ["m-1"]);
});
