import assert from "node:assert/strict";
import { test } from "node:test";
import {
  firewallRemoveScript,
  firewallScript,
  firewallTable,
  machineAddresses,
  onThisMachine,
  remoteRules,
} from "./firewall.ts";

test("the rules let each tenant reach its own ports only, and close the platform's endpoints", () => {
  const script = firewallScript({
    table: "herd_t1",
    uids: { first: 1000, count: 10 },
    instances: [
      { uid: 1001, port: 20005 },
      { uid: 1000, port: 20002 },
      { uid: 1001, port: 20001 },
      { uid: 1001, port: 20001 },
    ],
    ports: { min: 20000, max: 29999 },
    protect: [{ address: "127.0.0.1", port: 7070 }, { port: 9100 }, { address: "10.1.2.3", port: 7070 }],
  });
  assert.equal(
    script,
    [
      "table inet herd_t1 {}",
      "delete table inet herd_t1",
      "table inet herd_t1 {",
      "  chain output {",
      "    type filter hook output priority filter; policy accept;",
      "    meta skuid 1000-1009 tcp flags & (syn | ack) == syn jump sandbox",
      "  }",
      "  chain sandbox {",
      '    oifname "lo" meta skuid 1000 tcp dport { 20002 } accept',
      '    oifname "lo" meta skuid 1001 tcp dport { 20001, 20005 } accept',
      '    oifname "lo" tcp dport 20000-29999 reject with tcp reset',
      '    oifname "lo" tcp dport 7070 reject with tcp reset',
      '    oifname "lo" tcp dport 9100 reject with tcp reset',
      "    ip daddr 10.1.2.3 tcp dport 7070 reject with tcp reset",
      "  }",
      "}",
      "",
    ].join("\n"),
  );
});

test("an IPv6 endpoint is matched as such, a host name is refused, and removal tolerates a missing table", () => {
  const base = { table: "herd_t2", uids: { first: 1, count: 1 }, instances: [], ports: { min: 1, max: 2 } };
  assert.match(
    firewallScript({ ...base, protect: [{ address: "fd00::1", port: 80 }] }),
    /ip6 daddr fd00::1 tcp dport 80/,
  );
  assert.throws(
    () => firewallScript({ ...base, protect: [{ address: "api.example", port: 80 }] }),
    /not an IP/,
  );
  assert.equal(firewallRemoveScript("herd_t2"), "table inet herd_t2 {}\ndelete table inet herd_t2\n");
});

test("each state root gets its own table name", () => {
  assert.match(firewallTable("/a/driver"), /^herd_[0-9a-f]{10}$/);
  assert.equal(firewallTable("/a/driver"), firewallTable("/a/driver"));
  assert.notEqual(firewallTable("/a/driver"), firewallTable("/b/driver"));
});

test("other nodes: each uid's own tenant's endpoints there open, their instance ranges and agent metrics closed", () => {
  const peers = {
    version: "v1",
    closed: true,
    nodes: [
      { address: "10.0.0.2", ports: { min: 22000, max: 22999 }, metricsPort: 9181 },
      { address: "fd00::3", ports: { min: 20000, max: 29999 } },
      { address: "node4.example", ports: { min: 20000, max: 29999 } },
    ],
    tenants: {
      acme: ["10.0.0.2:22001", "[fd00::3]:20003", "10.0.0.2:22001", "bad", "10.0.0.2:99999"],
      rival: [],
    },
    platform: ["10.0.0.9:2379", "127.0.0.1:2379", "etcd1.example:2379"],
  };
  const { rules, protect, skipped } = remoteRules(peers, [
    { uid: 1001, tenant: "rival" },
    { uid: 1000, tenant: "acme" },
  ]);
  assert.deepEqual(skipped, ["etcd1.example:2379", "node4.example"]);
  assert.deepEqual(protect, [
    { address: "10.0.0.9", port: 2379 },
    { address: "127.0.0.1", port: 2379 },
  ]);
  assert.ok(rules);
  const script = firewallScript({
    table: "herd_t3",
    uids: { first: 1000, count: 10 },
    instances: [{ uid: 1000, port: 21001 }],
    ports: { min: 21000, max: 21999 },
    protect,
    remote: rules,
  });
  const sandbox = script.slice(script.indexOf("chain sandbox"));
  assert.deepEqual(sandbox.split("\n").slice(1, 9), [
    '    oifname "lo" meta skuid 1000 tcp dport { 21001 } accept',
    '    oifname "lo" tcp dport 21000-21999 reject with tcp reset',
    "    ip daddr 10.0.0.9 tcp dport 2379 reject with tcp reset",
    '    oifname "lo" tcp dport 2379 reject with tcp reset',
    "    meta skuid 1000 ip daddr . tcp dport { 10.0.0.2 . 22001 } accept",
    "    meta skuid 1000 ip6 daddr . tcp dport { fd00::3 . 20003 } accept",
    "    ip daddr 10.0.0.2 tcp dport { 22000-22999, 9181 } reject with tcp reset",
    "    ip6 daddr fd00::3 tcp dport 20000-29999 reject with tcp reset",
  ]);
  // One tenant in the cluster: no rules for other nodes, the platform's endpoints closed all the same.
  const single = remoteRules({ ...peers, closed: false }, [{ uid: 1000, tenant: "acme" }]);
  assert.equal(single.rules, undefined);
  assert.deepEqual(single.protect, protect);
  assert.deepEqual(remoteRules(undefined, [{ uid: 1000, tenant: "acme" }]), { protect: [], skipped: [] });
});

test("a platform endpoint at one of this machine's addresses is closed on every address here", () => {
  const here = new Set(["127.0.0.1", "10.0.0.5", "fd00::5"]);
  assert.deepEqual(
    onThisMachine(
      [
        { address: "10.0.0.5", port: 2380 },
        { address: "fd00::5", port: 2379 },
        { address: "10.0.0.9", port: 2380 },
        { address: "127.0.0.1", port: 7000 },
        { port: 9100 },
      ],
      here,
    ),
    [
      { port: 2380 },
      { port: 2379 },
      { address: "10.0.0.9", port: 2380 },
      { address: "127.0.0.1", port: 7000 },
      { port: 9100 },
    ],
  );
  // This machine's own addresses are among those of its interfaces.
  assert.ok(machineAddresses().has("127.0.0.1"));
});
