import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { Etcd3 } from "etcd3";
import { startEtcdCluster } from "./etcd-cluster.ts";

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
