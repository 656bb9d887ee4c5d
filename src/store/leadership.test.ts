import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { createServer, type Server, type Socket } from "node:net";
import { after, before, test } from "node:test";
import { Etcd3, type ILeaseOptions, type Lease } from "etcd3";
import { isCode } from "../common/errors.ts";
import { silentLogger } from "../common/log.ts";
import { type EtcdCluster, startEtcdCluster } from "./etcd-cluster.ts";
import { EtcdStore } from "./etcd-store.ts";
import { EtcdLeadership, keepaliveOn, SoleLeadership, type Term } from "./leadership.ts";

let cluster: EtcdCluster;
before(async () => {
  cluster = await startEtcdCluster(3);
});
after(async () => {
  await cluster?.stop();
});

/**
 * A server's part: its store, its election, and a record of its terms.
 * `lostAnswers`: that many of its election's first transactions are committed
 * and then fail as if their answer had been lost on the way back.
 * `keepaliveThroughPool`: what a lease's own keepalive does, which goes
 * through the client's pool ("stuck": it never answers, as when the pool picked
 * a member cut off the network). `members`: the clients keepalives go to
 * (default: the store's one per member).
 */
async function server(
  root: string,
  member: number,
  options: { lostAnswers?: number; keepaliveThroughPool?: "stuck"; members?: Etcd3[] } = {},
) {
  let lostAnswers = options.lostAnswers ?? 0;
  const store = await EtcdStore.open({ endpoints: [cluster.endpoints[member]], root });
  const { client, members } = store.connection();
  const lease = (ttl: number, opts?: ILeaseOptions): Lease => {
    const l = client.lease(ttl, opts);
    if (options.keepaliveThroughPool === "stuck") l.keepaliveOnce = () => new Promise(() => {});
    return l;
  };
  const kv = new Proxy(client.kv, {
    get: (t, p) =>
      p === "txn"
        ? async (...args: Parameters<typeof t.txn>) => {
            const res = await t.txn(...args);
            if (lostAnswers-- > 0) throw new Error("the answer was lost (test)");
            return res;
          }
        : Reflect.get(t, p),
  });
  const wrapped = new Proxy(client, {
    get: (t, p) => (p === "kv" ? kv : p === "lease" ? lease : Reflect.get(t, p)),
  });
  const leadership = new EtcdLeadership({
    client: wrapped,
    members: options.members ?? members,
    root,
    ttlSeconds: 2,
    logger: silentLogger,
  });
  const terms: string[] = [];
  /** Runs work in the context of the last term this server began (its fence), as a controller's timer would. */
  let inTerm: (<R>(fn: () => R) => R) | undefined;
  const term: Term = {
    begin: async () => {
      terms.push("begin");
      inTerm = AsyncLocalStorage.snapshot();
    },
    end: async () => {
      terms.push("end");
    },
  };
  await leadership.start(`http://server-${member}`, term);
  return {
    store,
    leadership,
    terms,
    inTerm: <R>(fn: () => R): R => {
      assert.ok(inTerm, "this server never led");
      return inTerm(fn);
    },
    close: async () => {
      await leadership.close();
      await store.close();
    },
  };
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - start;
}

test("leadership: one of two servers leads; its fenced writes land", async () => {
  const root = `/lead-${process.pid}-1/`;
  const a = await server(root, 0);
  const b = await server(root, 1);
  try {
    await until("a leader", () => a.leadership.leading || b.leadership.leading);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(Number(a.leadership.leading) + Number(b.leadership.leading), 1, "exactly one leader");
    const [leader, follower] = a.leadership.leading ? [a, b] : [b, a];
    assert.deepEqual(follower.terms, []);
    const info = await follower.leadership.leader();
    assert.equal(info?.url, leader === a ? "http://server-0" : "http://server-1");
    const put = await leader.inTerm(() => leader.store.put("app", "t/x", { by: "leader" }));
    assert.equal((await follower.store.get("app", "t/x"))?.revision, put.revision);
  } finally {
    await a.close();
    await b.close();
  }
});

test("leadership: a deposed leader's write fails and writes nothing; the new leader's lands", async () => {
  const root = `/lead-${process.pid}-2/`;
  const a = await server(root, 0);
  await until("a leads", () => a.leadership.leading);
  const b = await server(root, 2);
  try {
    // What a lease expiry does while the leader is frozen (SIGSTOP): the key goes, b takes it.
    const admin = a.store.connection().client;
    const before = await a.store.put("app", "t/y", { v: 1 });
    await admin.delete().key(`${root}leader`);
    await until("b leads", () => b.leadership.leading);
    await assert.rejects(
      a.inTerm(() => a.store.put("app", "t/y", { v: "stale" }, { expectRevision: before.revision })),
      (err) => isCode(err, "unavailable") && /no longer the leader/.test((err as Error).message),
    );
    await assert.rejects(
      a.inTerm(() => a.store.delete("app", "t/y")),
      (err) => isCode(err, "unavailable"),
    );
    assert.deepEqual((await b.store.get("app", "t/y"))?.value, { v: 1 }, "the stale write changed nothing");
    // The refused write deposed a: its term ended.
    await until("a stepped down", () => !a.leadership.leading && a.terms.at(-1) === "end");
    const put = await b.inTerm(() =>
      b.store.put("app", "t/y", { v: 2 }, { expectRevision: before.revision }),
    );
    assert.deepEqual(put.value, { v: 2 });
    // Writes outside a term (API requests) are not fenced on any server.
    await a.store.put("app", "t/z", { by: "api" });
  } finally {
    await a.close();
    await b.close();
  }
});

test("leadership: a won election whose answer was lost leads at once, not after its own lease expires", async () => {
  const root = `/lead-${process.pid}-4/`;
  const a = await server(root, 0, { lostAnswers: 1 });
  try {
    const took = await until("a leads", () => a.leadership.leading, 5000);
    // Asking again would find the key its lost answer made, held by its own lease for 2 s.
    assert.ok(took < 1500, `leading took ${took} ms`);
    assert.deepEqual(a.terms, ["begin"]);
    assert.equal((await a.leadership.leader())?.url, "http://server-0");
    await a.inTerm(() => a.store.put("app", "t/w", { by: "leader" }));
  } finally {
    await a.close();
  }
});

test("leadership: a closing leader hands over at once; a dead one within the lease", async () => {
  const root = `/lead-${process.pid}-3/`;
  const a = await server(root, 0);
  await until("a leads", () => a.leadership.leading);
  const b = await server(root, 1);
  const c = await server(root, 2);
  try {
    await a.close();
    const handover = await until("b or c leads", () => b.leadership.leading || c.leadership.leading, 2000);
    assert.ok(handover < 1500, `handover took ${handover} ms`);
    const [leader, other] = b.leadership.leading ? [b, c] : [c, b];
    // Stop renewing without revoking: the lease (2 s) must expire first.
    await leader.store.close();
    const start = Date.now();
    await until("the other leads", () => other.leadership.leading, 8000);
    const took = Date.now() - start;
    assert.ok(took <= 4000, `takeover took ${took} ms, more than twice the 2 s lease`);
    await leader.leadership.close();
  } finally {
    await b.close().catch(() => {});
    await c.close().catch(() => {});
  }
});

/** A "member" that takes connections and never answers: one cut off the network, as a client sees it. */
async function silentMember(): Promise<{ client: Etcd3; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const srv: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as { port: number };
  const client = new Etcd3({ hosts: [`http://127.0.0.1:${port}`] });
  return {
    client,
    close: async () => {
      client.close();
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => srv.close(resolve));
    },
  };
}

test("leadership: a keepalive stuck on a member that does not answer renews through the others; the leader keeps leading", async () => {
  const root = `/lead-${process.pid}-5/`;
  const silent = await silentMember();
  const good = new Etcd3({ hosts: [cluster.endpoints[1] as string] });
  // The pool's keepalive never answers; a 2 s lease is gone in 2 s unless another way renews it.
  const a = await server(root, 0, { keepaliveThroughPool: "stuck", members: [silent.client, good] });
  try {
    await until("a leads", () => a.leadership.leading);
    const led = Date.now();
    await until("three leases long", () => Date.now() - led > 6000 || !a.leadership.leading, 8000);
    assert.deepEqual(a.terms, ["begin"], "the leader stepped down");
    assert.equal(a.leadership.leading, true);
    // One keepalive: answered within its deadline by the member that answers, not held by the one that does not.
    const lease = good.lease(5, { autoKeepAlive: false });
    const id = await lease.grant();
    const start = Date.now();
    const ttl = await Promise.any([keepaliveOn(silent.client, id, 1000), keepaliveOn(good, id, 1000)]);
    assert.ok(ttl > 0 && Date.now() - start < 500, `ttl ${ttl} after ${Date.now() - start} ms`);
    await assert.rejects(keepaliveOn(silent.client, id, 300), /deadline/i);
    await lease.revoke();
    assert.equal(await keepaliveOn(good, id, 1000), 0, "a revoked lease answers TTL 0");
  } finally {
    await a.close();
    good.close();
    await silent.close();
  }
});

test("leadership: on SQLite the one server leads from start to close", async () => {
  const sole = new SoleLeadership();
  const terms: string[] = [];
  await sole.start("http://x", {
    begin: async () => void terms.push("begin"),
    end: async () => void terms.push("end"),
  });
  assert.equal(sole.leading, true);
  assert.equal((await sole.leader())?.url, "http://x");
  await sole.close();
  assert.deepEqual(terms, ["begin", "end"]);
  assert.equal(sole.leading, false);
});
