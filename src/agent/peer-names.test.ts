import assert from "node:assert/strict";
import { test } from "node:test";
import type { Peers } from "../model/protocol.ts";
import { type Lookup, PeerNames } from "./peer-names.ts";

const peers: Peers = {
  version: "v1",
  closed: true,
  nodes: [
    { address: "10.0.0.2", ports: { min: 22000, max: 22999 } },
    { address: "node4.example", ports: { min: 20000, max: 29999 }, metricsPort: 9181 },
  ],
  tenants: { acme: ["node4.example:20001", "10.0.0.2:22001"] },
  platform: ["etcd1.example:2379", "etcd1.example:2380", "gone.example:2379", "10.0.0.9:9180"],
};

/** A resolver that answers from `table`, and counts the names asked. */
function resolver(table: Record<string, string[]>): { lookup: Lookup; asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    lookup: async (name) => {
      asked.push(name);
      const found = table[name];
      if (!found) throw Object.assign(new Error(`${name} not found`), { code: "ENOTFOUND" });
      return found;
    },
  };
}

test("names in peers are looked up once, then replaced by their addresses; one without any stays a name", async () => {
  const table: Record<string, string[]> = {
    "node4.example": ["10.0.0.4"],
    "etcd1.example": ["10.0.0.11", "fd00::11"],
  };
  const { lookup, asked } = resolver(table);
  let changes = 0;
  const names = new PeerNames(() => changes++, { lookup, againMs: 60_000 });
  try {
    // Nothing known yet: as given, and the names are asked for.
    assert.deepEqual(names.resolve(peers), peers);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(asked.sort(), ["etcd1.example", "gone.example", "node4.example"]);
    assert.equal(changes, 2, "one change for each name that resolved");
    const resolved = names.resolve(peers);
    assert.deepEqual(resolved.nodes, [
      { address: "10.0.0.2", ports: { min: 22000, max: 22999 } },
      { address: "10.0.0.4", ports: { min: 20000, max: 29999 }, metricsPort: 9181 },
    ]);
    assert.deepEqual(resolved.tenants, { acme: ["10.0.0.4:20001", "10.0.0.2:22001"] });
    assert.deepEqual(resolved.platform, [
      "10.0.0.11:2379",
      "[fd00::11]:2379",
      "10.0.0.11:2380",
      "[fd00::11]:2380",
      "gone.example:2379",
      "10.0.0.9:9180",
    ]);
    assert.equal(resolved.version, "v1", "the version is the reply's: the agent sends it back");
    await new Promise((r) => setImmediate(r));
    assert.equal(asked.length, 3, "each name asked once");
  } finally {
    names.stop();
  }
});

test("names are looked up again; a changed answer is a change", async () => {
  const table: Record<string, string[]> = { "etcd1.example": ["10.0.0.11"] };
  const { lookup } = resolver(table);
  let changes = 0;
  const names = new PeerNames(() => changes++, { lookup, againMs: 20 });
  try {
    const only = { ...peers, nodes: [], tenants: {}, platform: ["etcd1.example:2379"] };
    names.resolve(only);
    await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(names.resolve(only).platform, ["10.0.0.11:2379"]);
    const before = changes;
    table["etcd1.example"] = ["10.0.0.12"];
    await new Promise((r) => setTimeout(r, 60));
    assert.ok(changes > before, "the new address is a change");
    assert.deepEqual(names.resolve(only).platform, ["10.0.0.12:2379"]);
  } finally {
    names.stop();
  }
});

test("the machine's own resolver: localhost is loopback", async () => {
  let changed = false;
  const names = new PeerNames(() => {
    changed = true;
  });
  try {
    const only = { ...peers, nodes: [], tenants: {}, platform: ["localhost:2379"] };
    names.resolve(only);
    const deadline = Date.now() + 5000;
    while (!changed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const platform = names.resolve(only).platform;
    assert.ok(
      platform.includes("127.0.0.1:2379") || platform.includes("[::1]:2379"),
      `localhost as ${platform}`,
    );
  } finally {
    names.stop();
  }
});
