// The machine controller against a real in-memory store and the real join
// path (Authenticator + joinNode), with a recording provider in place of a
// command or webhook (those are tested in machine-provider.test.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Authenticator, createToken } from "../api/auth.ts";
import { joinNode } from "../api/credentials.ts";
import { ManualClock } from "../common/clock.ts";
import { silentLogger } from "../common/log.ts";
import type { Token } from "../model/identity.ts";
import type { MachineRequest, ProviderRequest } from "../model/machines.ts";
import type { Event, Instance, Node, Service } from "../model/objects.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { type Context, DEFAULT_SETTINGS } from "./context.ts";
import { EventRecorder } from "./events.ts";
import { MachineController } from "./machine-controller.ts";
import { DEFAULT_MACHINE_SETTINGS } from "./machine-plan.ts";
import type { MachineProvider } from "./machine-provider.ts";

const MiB = 1024 * 1024;

function setup(fail?: (r: ProviderRequest) => string | undefined) {
  const store = new MemoryStore();
  const clock = new ManualClock(Date.now());
  const events = new EventRecorder(store, clock, silentLogger);
  const ctx = {
    store,
    clock,
    logger: silentLogger,
    events,
    settings: { ...DEFAULT_SETTINGS },
  } as unknown as Context;
  const calls: { request: ProviderRequest; stored: MachineRequest[] }[] = [];
  const provider: MachineProvider = {
    name: "test-provider",
    call: async (request) => {
      // What was stored when the provider was called: the request must be there first (crash safety).
      calls.push({
        request,
        stored: (await store.list<MachineRequest>("machine")).items.map((o) => o.value),
      });
      const why = fail?.(request);
      if (why) throw new Error(why);
      return { message: `ok ${request.action}` };
    },
  };
  const settings = { ...DEFAULT_MACHINE_SETTINGS, idleMs: 30_000, debounceMs: 5_000 };
  const controller = () =>
    new MachineController(ctx, {
      provider,
      settings,
      server: "http://cp:7070",
      createJoinToken: async ({ name, uses, expiresAt }) => {
        const { secret, token } = await createToken(store, {
          name,
          kind: "join",
          usesLeft: uses,
          expiresAt,
          createdBy: "machine provider",
        });
        return { secret, id: token.id };
      },
    });
  return { store, clock, calls, controller, settings };
}

type H = ReturnType<typeof setup>;

async function seed(h: H, pending: number): Promise<void> {
  const svc = {
    tenant: "default",
    app: "shop",
    name: "web",
    release: 1,
    spec: { resources: { cpu: 1, memory: 256 * MiB }, placement: { nodeSelector: { pool: "burst" } } },
    instances: pending,
    state: "scaling",
    message: "",
    crashes: 0,
  } as unknown as Service;
  await h.store.put("service", "default/shop/web", svc);
  for (let n = 0; n < pending; n++) {
    await h.store.put("instance", `web-${n}`, {
      id: `web-${n}`,
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
      message: "1 node: 1 node selector",
      run: { resources: { cpu: 1, memory: 256 * MiB } },
      restarts: 0,
      createdAt: new Date(h.clock.now()).toISOString(),
    } as unknown as Instance);
  }
  await h.store.put("node", "small", {
    name: "small",
    state: "ready",
    schedulable: true,
    labels: {},
  } as unknown as Node);
}

const reasons = async (h: H) => (await h.store.list<Event>("event")).items.map((o) => o.value.reason);
const requests = async (h: H) => (await h.store.list<MachineRequest>("machine")).items.map((o) => o.value);
const tokens = async (h: H) => (await h.store.list<Token>("token")).items.map((o) => o.value);

/** What an agent does with the join token it was given: trade it for its node's credential, then heartbeat. */
async function agentJoins(h: H, secret: string, node: string): Promise<void> {
  const auth = new Authenticator(h.store, { logger: silentLogger });
  const principal = await auth.check(`Bearer ${secret}`);
  await joinNode(h.store, node, principal);
  await h.store.put("node", node, {
    name: node,
    state: "ready",
    schedulable: true,
    labels: { pool: "burst" },
  } as unknown as Node);
}

test("asks once for the shortfall with a join token; the machine that joins with it is the request's, and is handed back when idle", async () => {
  const h = setup();
  await seed(h, 2);
  const c = h.controller();
  await c.tick();
  assert.equal(h.calls.length, 0, "not before the instances waited the debounce");
  h.clock.advance(5_000);
  await c.tick();
  await c.tick();
  assert.equal(h.calls.length, 1, "asked once, not on every tick");
  const [{ request: asked, stored }] = h.calls;
  assert.equal(asked.action, "request");
  if (asked.action !== "request") return;
  assert.equal(stored.length, 1, "the request was stored before the provider was called");
  assert.equal(stored[0].state, "requested");
  assert.equal(asked.server, "http://cp:7070");
  assert.equal(asked.machines, 2);
  assert.deepEqual(asked.needs[0].labels, { pool: "burst" });
  assert.equal(asked.needs[0].cpu, 2);
  const joinToken = (await tokens(h)).find((t) => t.kind === "join")!;
  assert.equal(joinToken.usesLeft, 2);
  assert.equal(joinToken.id, stored[0].joinToken);
  assert.ok(asked.joinToken.startsWith(`herd_jnt_${joinToken.id}_`));
  assert.ok((await reasons(h)).includes("MachineRequested"));

  // A restarted controller finds the open request and does not ask again.
  const restarted = h.controller();
  h.clock.advance(120_000);
  await restarted.tick();
  h.clock.advance(6_000);
  await restarted.tick();
  assert.equal(h.calls.length, 1);

  // The provider's machine joins with the token; a node joined by hand is not the provider's.
  await agentJoins(h, asked.joinToken, "burst-1");
  const admin = await createToken(h.store, { name: "admin", kind: "join", createdBy: "user admin" });
  await agentJoins(h, admin.secret, "manual-1");
  await restarted.tick();
  const [r] = await requests(h);
  assert.equal(r.state, "joined");
  assert.deepEqual(
    r.nodes.map((n) => n.name),
    ["burst-1"],
  );
  assert.ok((await reasons(h)).includes("MachineJoined"));

  // The instances run there, then the service scales down: the node is idle.
  for (const o of (await h.store.list<Instance>("instance")).items)
    await h.store.put("instance", o.key, {
      ...o.value,
      node: "burst-1",
      state: "running",
      reason: "Started",
    });
  h.clock.advance(60_000);
  await restarted.tick();
  assert.equal((await requests(h))[0].nodes[0].state, "joined", "busy: kept");
  for (const o of (await h.store.list<Instance>("instance")).items) await h.store.delete("instance", o.key);
  await restarted.tick(); // idle from now
  h.clock.advance(29_000);
  await restarted.tick();
  assert.equal(
    (await h.store.get<Node>("node", "burst-1"))!.value.schedulable,
    true,
    "not idle long enough yet",
  );
  h.clock.advance(1_000);
  await restarted.tick();
  assert.equal((await h.store.get<Node>("node", "burst-1"))!.value.schedulable, false, "cordoned");
  assert.equal((await requests(h))[0].nodes[0].state, "releasing");
  assert.equal(h.calls.length, 1, "not handed back in the same tick it was cordoned");
  h.clock.advance(2_000);
  await restarted.tick();
  assert.equal(h.calls.length, 2);
  assert.deepEqual(h.calls[1].request, {
    version: 1,
    action: "release",
    id: r.id,
    server: "http://cp:7070",
    node: "burst-1",
  });
  const credentials = (await tokens(h)).filter((t) => t.kind === "agent");
  assert.ok(credentials.find((t) => t.node === "burst-1")?.revokedAt, "its credential is revoked");
  assert.equal(credentials.find((t) => t.node === "manual-1")?.revokedAt, undefined);
  assert.ok((await reasons(h)).includes("MachineReleased"));

  // The agent is gone once the node is lost: the node object goes; the hand-joined node stays, idle or not.
  await restarted.tick();
  assert.ok(await h.store.get("node", "burst-1"), "still heartbeating");
  const n = (await h.store.get<Node>("node", "burst-1"))!;
  await h.store.put("node", "burst-1", { ...n.value, state: "lost" });
  await restarted.tick();
  assert.equal(await h.store.get("node", "burst-1"), undefined);
  assert.ok(await h.store.get("node", "manual-1"));
  assert.ok((await reasons(h)).includes("NodeRemoved"));
  // Once no more machine can join with its token, the request is forgotten.
  h.clock.advance(DEFAULT_MACHINE_SETTINGS.joinTimeoutMs);
  await restarted.tick();
  assert.deepEqual(await requests(h), []);
  assert.equal(h.calls.length, 2, "and nothing more was asked");
});

test("a provider that fails: the event says why, the join token is revoked, and the ask waits the cooldown", async () => {
  const h = setup((r) => (r.action === "request" ? "quota exceeded in eu-1" : undefined));
  await seed(h, 1);
  const c = h.controller();
  await c.tick();
  h.clock.advance(5_000);
  await c.tick();
  assert.equal(h.calls.length, 1);
  const [r] = await requests(h);
  assert.equal(r.state, "failed");
  assert.equal(r.message, "quota exceeded in eu-1");
  assert.ok((await tokens(h)).find((t) => t.id === r.joinToken)?.revokedAt);
  const failed = (await h.store.list<Event>("event")).items.find(
    (o) => o.value.reason === "MachineRequestFailed",
  );
  assert.match(failed!.value.message, /quota exceeded in eu-1; asked again after 60 s/);
  h.clock.advance(30_000);
  await c.tick();
  assert.equal(h.calls.length, 1, "within the cooldown");
  h.clock.advance(30_000);
  await c.tick(); // the failed request is forgotten …
  await c.tick(); // … and the shortfall asked for again
  assert.equal(h.calls.length, 2);
});

test("a request no machine joins by its deadline fails and its token is revoked", async () => {
  const h = setup();
  await seed(h, 1);
  const c = h.controller();
  await c.tick();
  h.clock.advance(5_000);
  await c.tick();
  const [asked] = await requests(h);
  h.clock.advance(h.settings.joinTimeoutMs);
  await c.tick();
  const r = (await requests(h)).find((x) => x.id === asked.id)!;
  assert.equal(r.state, "failed");
  assert.match(r.message, /no machine joined by/);
  assert.ok((await tokens(h)).find((t) => t.id === r.joinToken)?.revokedAt);
  // The cooldown since that ask is long over: the shortfall is asked for again, once.
  assert.equal(h.calls.length, 2);
  assert.equal((await requests(h)).filter((x) => x.state === "requested").length, 1);
});
