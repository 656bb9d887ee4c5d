import assert from "node:assert/strict";
import { test } from "node:test";
import { endpointOf, memberSource, PlatformEndpoints, storeMembers } from "./platform-endpoints.ts";

test("the store's etcd members as host:port; none for SQLite", () => {
  assert.deepEqual(storeMembers("etcd://10.0.0.1:2379,10.0.0.2:2379/staging"), [
    "10.0.0.1:2379",
    "10.0.0.2:2379",
  ]);
  assert.deepEqual(storeMembers("etcd://[fd00::1]:2379"), ["[fd00::1]:2379"]);
  assert.deepEqual(storeMembers("sqlite"), []);
  assert.deepEqual(storeMembers(undefined), []);
});

test("a URL's endpoint: the scheme's port when none is named, localhost as loopback", () => {
  assert.equal(endpointOf("http://10.0.0.1:2380"), "10.0.0.1:2380");
  assert.equal(endpointOf("https://[fd00::1]:2380"), "[fd00::1]:2380");
  assert.equal(endpointOf("https://10.0.0.1"), "10.0.0.1:443");
  assert.equal(endpointOf("http://localhost:2380"), "127.0.0.1:2380");
  assert.equal(endpointOf("unix:///run/etcd.sock"), undefined);
  assert.equal(endpointOf("not a url"), undefined);
});

test("etcd's member list adds every member's client and peer ports; a failed read keeps the last list", async () => {
  let urls = ["http://10.0.0.1:2379", "http://10.0.0.1:2380", "http://10.0.0.3:2380"];
  let fail = false;
  const warned: string[] = [];
  const members = {
    memberUrls: async () => {
      if (fail) throw new Error("no leader");
      return urls;
    },
  };
  const target = { name: "gw", url: "http://10.0.0.7:9180/metrics", labels: {}, createdAt: "" };
  const gateways = { scrapeTargets: () => [target] };
  const logger = { warn: (msg: string) => warned.push(msg) } as never;
  const platform = new PlatformEndpoints({ store: "etcd://10.0.0.1:2379", gateways, members, logger });
  assert.deepEqual(platform.now(), ["10.0.0.1:2379", "10.0.0.7:9180"], "the flag's members before the list");
  await platform.start();
  try {
    assert.deepEqual(platform.now(), [
      "10.0.0.1:2379",
      "10.0.0.1:2379",
      "10.0.0.1:2380",
      "10.0.0.3:2380",
      "10.0.0.7:9180",
    ]);
    fail = true;
    urls = [];
    await platform.refresh();
    await platform.refresh();
    assert.deepEqual(warned, ["cannot read etcd's member list"], "warned once");
    assert.ok(platform.now().includes("10.0.0.3:2380"), "the last list stays");
    fail = false;
    urls = ["http://10.0.0.4:2380"];
    await platform.refresh();
    assert.deepEqual(platform.now(), ["10.0.0.1:2379", "10.0.0.4:2380", "10.0.0.7:9180"]);
  } finally {
    await platform.stop();
  }
});

test("only a store with a member list is asked for one", () => {
  const etcd = { memberUrls: async () => [], get: () => undefined };
  assert.equal(memberSource(etcd), etcd);
  assert.equal(memberSource({ get: () => undefined }), undefined);
});
