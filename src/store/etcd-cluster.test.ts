import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { Etcd3 } from "etcd3";
import { type EtcdCluster, startEtcdCluster } from "./etcd-cluster.ts";
import { EtcdStore } from "./etcd-store.ts";

const namespaces = () => execFileSync("ip", ["netns", "list"], { encoding: "utf8" });

test("etcd cluster: a member in its own network namespace is cut off and comes back; stop removes the namespace", async () => {
  const cluster = await startEtcdCluster(3, { isolate: 1 });
  const ours = new RegExp(`herd-netns-${process.pid}-`);
  const clients: Etcd3[] = [];
  const client = (i: number) => {
    const c = new Etcd3({
      hosts: cluster.endpoints[i],
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + 1500 }),
    });
    clients.push(c);
    return c;
  };
  try {
    assert.match(namespaces(), ours);
    assert.ok(cluster.isolated);
    const outside = client(0);
    const inside = client(1);
    await outside.put("k").value("before");
    assert.equal(await inside.get("k").string(), "before");

    cluster.isolated.cut();
    // The others keep their quorum and write; the cut member answers nothing.
    await outside.put("k").value("during");
    await assert.rejects(inside.get("k").string());
    assert.equal(cluster.members[1].exitCode, null, "the member still runs: it is cut off, not stopped");

    cluster.isolated.heal();
    // Back on the network it catches up with what was written meanwhile.
    const deadline = Date.now() + 15_000;
    let seen: string | null = null;
    while (Date.now() < deadline) {
      seen = await inside
        .get("k")
        .string()
        .catch(() => null);
      if (seen === "during") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(seen, "during");
  } finally {
    for (const c of clients) c.close();
    await cluster.stop();
  }
  assert.doesNotMatch(namespaces(), ours);
});

test("etcd store: a watch on a member that is cut off moves to another and misses nothing", async () => {
  const cluster = await startEtcdCluster(3, { isolate: 1 });
  const root = `/cut-${process.pid}/`;
  // Six stores that may each watch through the member cut off (or the other): all must see the write.
  const stores = await Promise.all(
    Array.from({ length: 6 }, () =>
      EtcdStore.open({ endpoints: [cluster.endpoints[1], cluster.endpoints[0]], root }),
    ),
  );
  const writer = await EtcdStore.open({ endpoints: [cluster.endpoints[0]], root });
  const stop = new AbortController();
  try {
    const from = await writer.revision();
    const seen = stores.map(async (store) => {
      for await (const ev of store.watch({ kinds: ["tenant"], fromRevision: from, signal: stop.signal }))
        if (ev.key === "after-cut") return Date.now();
      return undefined;
    });
    await writer.put("tenant", "before-cut", { name: "before-cut" });
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(cluster.isolated);
    cluster.isolated.cut();
    const cutAt = Date.now();
    await writer.put("tenant", "after-cut", { name: "after-cut" });
    const within = 20_000;
    const timer = setTimeout(() => stop.abort(), within);
    const times = await Promise.all(seen.map((p) => p.catch(() => undefined)));
    clearTimeout(timer);
    const late = times.filter((t) => t === undefined).length;
    assert.equal(late, 0, `${late} of 6 watches saw nothing within ${within} ms of the cut`);
    console.log(
      `watches saw the write ${times.map((t) => (t as number) - cutAt).join(", ")} ms after the cut`,
    );
    // The member breaker (etcd-members.ts) cancels the watches on the member it finds cut off; the
    // gRPC pings alone took about 8 s.
    const slowest = Math.max(...times.map((t) => (t as number) - cutAt));
    assert.ok(slowest < 6000, `the slowest watch moved after ${slowest} ms`);
  } finally {
    stop.abort();
    for (const s of stores) await s.close();
    await writer.close();
    await cluster.stop();
  }
});

test("etcd store: calls keep off a member cut off the network once its probes go unanswered", async () => {
  const cluster = await startEtcdCluster(3, { isolate: 1 });
  const root = `/keep-off-${process.pid}/`;
  const store = await EtcdStore.open({ endpoints: cluster.endpoints, root });
  try {
    await store.put("tenant", "t", { n: 0 });
    assert.ok(cluster.isolated);
    cluster.isolated.cut();
    // One probe round (500 ms) and its timeout (1 s) later the member is out of the pool.
    await new Promise((r) => setTimeout(r, 2000));
    const times: number[] = [];
    for (let n = 1; n <= 30; n++) {
      const started = Date.now();
      await store.put("tenant", "t", { n });
      assert.deepEqual((await store.get("tenant", "t"))?.value, { n });
      times.push(Date.now() - started);
    }
    const slowest = Math.max(...times);
    console.log(`30 writes and reads with member 1 cut off: slowest ${slowest} ms`);
    // A call landing on the cut member would wait its 3 s deadline; without the breaker about a third do.
    assert.ok(slowest < 1500, `slowest write and read ${slowest} ms: some went to the cut member`);
    cluster.isolated.heal();
  } finally {
    await store.close();
    await cluster.stop();
  }
});

/** Makes member `n` etcd's raft leader: etcd moves leadership when its leader is asked to. */
async function makeRaftLeader(cluster: EtcdCluster, n: number): Promise<void> {
  const admin = new Etcd3({ hosts: cluster.endpoints[0] });
  try {
    const { members } = await admin.cluster.memberList({});
    const target = members.find((m) => m.clientURLs.includes(cluster.endpoints[n]));
    assert.ok(target);
    for (let tries = 0; ; tries++) {
      const leader = (await admin.maintenance.status()).leader;
      if (leader === target.ID) return;
      assert.ok(tries < 20, `member ${n} did not become the raft leader`);
      const url = members.find((m) => m.ID === leader)?.clientURLs[0];
      if (url) {
        const c = new Etcd3({ hosts: url });
        await c.maintenance.moveLeader({ targetID: target.ID }).catch(() => {});
        c.close();
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    admin.close();
  }
}

/**
 * Writes (each expecting the revision of the one before: one applied twice would fail as a conflict)
 * and reads, every 20 ms, while `fault` runs and 5 s after; the slowest of each, ms.
 */
async function across(
  store: EtcdStore,
  fault: () => void,
): Promise<{ write: number; read: number; count: number }> {
  const writes: number[] = [];
  const reads: number[] = [];
  let running = true;
  let revision = (await store.put("tenant", "t", { n: 0 })).revision;
  const loop = (async () => {
    for (let n = 1; running; n++) {
      let started = Date.now();
      revision = (await store.put("tenant", "t", { n }, { expectRevision: revision })).revision;
      writes.push(Date.now() - started);
      started = Date.now();
      assert.deepEqual((await store.get("tenant", "t"))?.value, { n });
      reads.push(Date.now() - started);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  fault();
  await new Promise((r) => setTimeout(r, 5000));
  running = false;
  await loop;
  return { write: Math.max(...writes), read: Math.max(...reads), count: writes.length };
}

test("etcd store: etcd's raft leader cut off: a write waits at most its deadline, none is applied twice", async () => {
  const cluster = await startEtcdCluster(3, { isolate: 1 });
  const store = await EtcdStore.open({ endpoints: cluster.endpoints, root: `/leader-cut-${process.pid}/` });
  try {
    await makeRaftLeader(cluster, 1);
    assert.ok(cluster.isolated);
    const slowest = await across(store, () => cluster.isolated?.cut());
    console.log(`raft leader cut off: ${JSON.stringify(slowest)} (slowest write and read, ms; writes)`);
    // A write in flight at the cut waits its 3 s deadline (and is sent again: its own conflict would throw).
    assert.ok(slowest.write < 4000, `slowest write ${slowest.write} ms`);
    assert.ok(slowest.read < 3000, `slowest read ${slowest.read} ms`);
    cluster.isolated.heal();
  } finally {
    await store.close();
    await cluster.stop();
  }
});

test("etcd store: etcd's raft leader killed: a write waits at most its deadline, none is applied twice", async () => {
  const cluster = await startEtcdCluster(3);
  const store = await EtcdStore.open({ endpoints: cluster.endpoints, root: `/leader-kill-${process.pid}/` });
  try {
    await makeRaftLeader(cluster, 2);
    const slowest = await across(store, () => cluster.members[2].kill("SIGKILL"));
    console.log(`raft leader killed: ${JSON.stringify(slowest)} (slowest write and read, ms; writes)`);
    assert.ok(slowest.write < 4000, `slowest write ${slowest.write} ms`);
    assert.ok(slowest.read < 3000, `slowest read ${slowest.read} ms`);
  } finally {
    await store.close();
    await cluster.stop();
  }
});

test("etcd store: a member's address taken over by another etcd cluster: none of its answers is taken", async () => {
  const cluster = await startEtcdCluster(3);
  const store = await EtcdStore.open({ endpoints: cluster.endpoints, root: `/taken-over-${process.pid}/` });
  let other: EtcdCluster | undefined;
  try {
    await store.put("tenant", "t", { n: 1 });
    const member = cluster.members[2];
    await new Promise((resolve) => {
      member.once("exit", resolve);
      member.kill("SIGKILL");
    });
    // Another etcd on the dead member's client port: it answers every read, without herd's keys.
    other = await startEtcdCluster(1, { clientPorts: [Number(new URL(cluster.endpoints[2]).port)] });
    const seen = new Map<string, number>();
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      const value = await store.get("tenant", "t").then(
        (o) => JSON.stringify(o?.value),
        (err: Error) => (/another etcd/.test(err.message) ? "refused" : err.message),
      );
      seen.set(value, (seen.get(value) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 10));
    }
    console.log(`reads with another etcd on member 2's address: ${JSON.stringify(Object.fromEntries(seen))}`);
    // Its probes find the other cluster and keep calls off it; one that gets through is refused.
    assert.deepEqual(
      [...seen.keys()].filter((v) => v !== JSON.stringify({ n: 1 }) && v !== "refused"),
      [],
    );
  } finally {
    await store.close();
    await other?.stop();
    await cluster.stop();
  }
});
