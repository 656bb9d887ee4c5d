import assert from "node:assert/strict";
import { connect, createServer, type Socket } from "node:net";
import { after, before, test } from "node:test";
import { isCode } from "../common/errors.ts";
import { type EtcdCluster, startEtcdCluster } from "./etcd-cluster.ts";
import { EtcdStore, parseEtcdUrl } from "./etcd-store.ts";
import { runStoreConformance } from "./store.case.test.ts";

// The suite wants an empty store at revision 0 each time, and etcd's revision
// is the cluster's: every test gets a fresh three-member cluster.
runStoreConformance("etcd", async (options) => {
  const cluster = await startEtcdCluster(3);
  try {
    const store = await EtcdStore.open({ endpoints: cluster.endpoints, ...options });
    return {
      store,
      cleanup: async () => {
        await store.close();
        await cluster.stop();
      },
    };
  } catch (err) {
    await cluster.stop();
    throw err;
  }
});

test("etcd: parseEtcdUrl takes a member list and an optional root", () => {
  assert.deepEqual(parseEtcdUrl("etcd://10.0.0.1:2379,10.0.0.2:2379"), {
    endpoints: ["http://10.0.0.1:2379", "http://10.0.0.2:2379"],
    root: "/herd/",
  });
  assert.deepEqual(parseEtcdUrl("etcd://localhost:2379/prod"), {
    endpoints: ["http://localhost:2379"],
    root: "/prod/",
  });
  for (const bad of ["etcd://", "http://a:1", "etcd://a", "etcd://a:1,b"]) {
    assert.throws(
      () => parseEtcdUrl(bad),
      (err) => isCode(err, "invalid"),
      bad,
    );
  }
});

let shared: EtcdCluster;
before(async () => {
  shared = await startEtcdCluster(3);
});
after(async () => {
  await shared?.stop();
});

test("etcd: the member list names every member's client and peer URLs", async () => {
  const store = await EtcdStore.open({ endpoints: [shared.endpoints[0]] });
  try {
    const urls = await store.memberUrls();
    assert.deepEqual(urls.filter((u) => shared.endpoints.includes(u)).sort(), [...shared.endpoints].sort());
    assert.deepEqual(urls.filter((u) => shared.peers.includes(u)).sort(), [...shared.peers].sort());
    assert.equal(urls.length, 6);
  } finally {
    await store.close();
  }
});

test("etcd: two stores on one cluster see each other's writes live, and conflicts", async () => {
  const root = `/t${process.pid}-${Date.now()}/`;
  const a = await EtcdStore.open({ endpoints: [shared.endpoints[0]], root });
  const b = await EtcdStore.open({ endpoints: [shared.endpoints[2]], root });
  const controller = new AbortController();
  try {
    const events = b.watch({ signal: controller.signal })[Symbol.asyncIterator]();
    const put = await a.put("app", "t/a", { v: 1 });
    const seen = await events.next();
    assert.equal(seen.value?.key, "t/a");
    assert.equal(seen.value?.revision, put.revision);
    await assert.rejects(b.put("app", "t/a", { v: 2 }, { expectRevision: 0 }), (err) =>
      isCode(err, "conflict"),
    );
    assert.equal(
      (await b.put("app", "t/a", { v: 2 }, { expectRevision: put.revision })).createRevision,
      put.revision,
    );
  } finally {
    controller.abort();
    await a.close();
    await b.close();
  }
});

test("etcd: a store keeps working when one member of three is killed", async () => {
  const cluster = await startEtcdCluster(3);
  try {
    const store = await EtcdStore.open({ endpoints: cluster.endpoints });
    try {
      await store.put("node", "n1", { v: 1 });
      cluster.members[0].kill("SIGKILL");
      for (let n = 2; n <= 5; n++) await store.put("node", "n1", { v: n });
      assert.deepEqual((await store.get("node", "n1"))?.value, { v: 5 });
    } finally {
      await store.close();
    }
  } finally {
    await cluster.stop();
  }
});

test("etcd: open fails with unavailable when no member answers", async () => {
  await assert.rejects(EtcdStore.open({ endpoints: ["http://127.0.0.1:1"], timeoutMs: 1000 }), (err) =>
    isCode(err, "unavailable"),
  );
});

test("etcd: a watcher more than historyLimit changes behind ends with gone", async () => {
  const store = await EtcdStore.open({
    endpoints: shared.endpoints,
    root: `/slow${process.pid}-${Date.now()}/`,
    historyLimit: 5,
  });
  const controller = new AbortController();
  try {
    const events = store.watch({ signal: controller.signal })[Symbol.asyncIterator]();
    // The first change is read before the rest are written: etcd has the watch by then, so the
    // writes' compaction cannot cancel it before it starts (that is a different `gone`).
    const first = events.next();
    await store.put("event", "e0", { n: 0 });
    assert.equal((await first).value?.key, "e0");
    for (let n = 1; n < 12; n++) await store.put("event", `e${n}`, { n });
    // Let the rest arrive unread.
    await new Promise((resolve) => setTimeout(resolve, 500));
    let delivered = 0;
    await assert.rejects(
      async () => {
        for (;;) {
          const next = await Promise.race([
            events.next(),
            new Promise<never>((_, reject) =>
              setTimeout(() => reject(new Error("no gone within 5 s")), 5000),
            ),
          ]);
          assert.equal(next.done, false);
          delivered++;
        }
      },
      (err) => isCode(err, "gone"),
    );
    assert.ok(delivered <= 5, `delivered ${delivered}`);
  } finally {
    controller.abort();
    await store.close();
  }
});

/**
 * A TCP proxy to one etcd member that loses one answer: the connection that
 * sends `marker` gets nothing back, and is closed 300 ms later (the write
 * committed meanwhile), as when a member dies between commit and answer.
 */
async function answerLosingProxy(upstream: string) {
  const { hostname, port } = new URL(upstream);
  let marker: Buffer | undefined;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const member = connect(Number(port), hostname);
    sockets.add(client).add(member);
    let losing = false;
    client.on("data", (chunk: Buffer) => {
      if (marker && chunk.includes(marker)) {
        marker = undefined;
        losing = true;
        setTimeout(() => {
          client.destroy();
          member.destroy();
        }, 300);
      }
      member.write(chunk);
    });
    member.on("data", (chunk) => {
      if (!losing) client.write(chunk);
    });
    for (const s of [client, member]) {
      s.on("error", () => {});
      s.on("close", () => {
        sockets.delete(s);
        client.destroy();
        member.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    /** The next request carrying these bytes is committed, and its answer lost. */
    loseAnswerTo(bytes: string) {
      marker = Buffer.from(bytes);
    },
    get armed() {
      return marker !== undefined;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test("etcd: a conditioned write committed while its answer was lost is no conflict when the client sends it again", async () => {
  const proxy = await answerLosingProxy(shared.endpoints[0]);
  const store = await EtcdStore.open({
    endpoints: [proxy.endpoint],
    root: `/lost${process.pid}-${Date.now()}/`,
  });
  try {
    const first = await store.put("app", "t/a", { v: "first" });
    proxy.loseAnswerTo("second-value");
    const second = await store.put("app", "t/a", { v: "second-value" }, { expectRevision: first.revision });
    assert.equal(proxy.armed, false, "the proxy lost no answer: the test did not test");
    assert.equal(second.revision, first.revision + 1, "applied once");
    assert.equal(second.createRevision, first.createRevision);
    assert.deepEqual((await store.get("app", "t/a"))?.value, { v: "second-value" });

    // Someone else's write is still a conflict.
    await assert.rejects(store.put("app", "t/a", { v: "third" }, { expectRevision: first.revision }), (err) =>
      isCode(err, "conflict"),
    );

    // A delete whose answer was lost is a delete.
    await store.put("app", "t/gone-key", { v: 1 });
    const doomed = await store.get("app", "t/gone-key");
    proxy.loseAnswerTo("t/gone-key");
    assert.equal(await store.delete("app", "t/gone-key", { expectRevision: doomed?.revision }), true);
    assert.equal(proxy.armed, false);
    assert.equal(await store.get("app", "t/gone-key"), undefined);
  } finally {
    await store.close();
    await proxy.close();
  }
});
