import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Peers } from "../model/protocol.ts";
import type { NetworkPolicy } from "./driver.ts";
import { protectedEndpoints } from "./firewall.ts";
import { InstanceNetworkPolicy } from "./network-policy.ts";

async function until<T>(what: string, f: () => T | undefined): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("the agent's own endpoints: a server by address, one by host name (closed here and at its addresses), the metrics port", async () => {
  const named: { host: string; port: number }[] = [];
  const protect = protectedEndpoints(
    ["http://10.0.0.1:7070", "https://localhost:7443", "https://api.example"],
    "http://0.0.0.0:9101",
    (host, port) => named.push({ host, port }),
  );
  assert.deepEqual(protect, [
    { address: "10.0.0.1", port: 7070 },
    { address: "localhost", port: 7443 },
    { port: 443 },
    { port: 9101 },
  ]);
  assert.deepEqual(named, [{ host: "api.example", port: 443 }]);

  // The policy the driver gets adds the addresses a name resolves to (localhost: loopback).
  const dir = mkdtempSync(join(tmpdir(), "herd-network-policy-"));
  const seen: NetworkPolicy[] = [];
  const policy = new InstanceNetworkPolicy({
    dataDir: dir,
    ports: { min: 20000, max: 20999 },
    protect: [{ port: 7070 }],
    named: [{ host: "localhost", port: 7070 }],
    driver: { setNetworkPolicy: (p) => void seen.push(p) },
    log: silentLogger,
  });
  try {
    assert.deepEqual(seen[0]?.protect, [{ port: 7070 }], "handed over at once, before the answer");
    const resolved = await until("localhost resolved", () =>
      seen.at(-1)?.protect.find((e) => e.address === "127.0.0.1" || e.address === "::1"),
    );
    assert.equal(resolved.port, 7070);
  } finally {
    policy.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("peers: applied, kept in peers.json for the next start, whose policy has them at once", () => {
  const dir = mkdtempSync(join(tmpdir(), "herd-network-policy-"));
  const peers: Peers = { version: "v3", closed: false, nodes: [], tenants: {}, platform: ["10.0.0.9:2379"] };
  const make = (seen: NetworkPolicy[]) =>
    new InstanceNetworkPolicy({
      dataDir: dir,
      ports: { min: 20000, max: 20999 },
      protect: [],
      driver: { setNetworkPolicy: (p) => void seen.push(p) },
      log: silentLogger,
    });
  try {
    const first: NetworkPolicy[] = [];
    const a = make(first);
    assert.equal(a.peersVersion, undefined);
    a.apply(peers);
    a.stop();
    assert.equal(a.peersVersion, "v3");
    assert.deepEqual(first.at(-1)?.peers, peers);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, "peers.json"), "utf8")), peers);
    const second: NetworkPolicy[] = [];
    const b = make(second);
    b.stop();
    assert.equal(b.peersVersion, "v3");
    assert.deepEqual(second[0]?.peers, peers);
    // A peers.json that is not peers is ignored: the first heartbeat brings them.
    writeFileSync(join(dir, "peers.json"), '{"version": 1}');
    const third: NetworkPolicy[] = [];
    make(third).stop();
    assert.equal(third[0]?.peers, undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
