import assert from "node:assert/strict";
import { test } from "node:test";
import { storeMembers } from "./platform-endpoints.ts";

test("the store's etcd members as host:port; none for SQLite", () => {
  assert.deepEqual(storeMembers("etcd://10.0.0.1:2379,10.0.0.2:2379/staging"), [
    "10.0.0.1:2379",
    "10.0.0.2:2379",
  ]);
  assert.deepEqual(storeMembers("etcd://[fd00::1]:2379"), ["[fd00::1]:2379"]);
  assert.deepEqual(storeMembers("sqlite"), []);
  assert.deepEqual(storeMembers(undefined), []);
});
