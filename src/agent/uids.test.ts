import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { lastUid, UID_BASE, UID_BLOCK, UidMap, uidRangeFor } from "./uids.ts";

function tempFile(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "herd-uids-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, "uids.json");
}

test("a path always gets the same block, within [UID_BASE, 2^31), and two paths usually differ", () => {
  const a = uidRangeFor("/var/lib/herd/agent/driver");
  assert.deepEqual(uidRangeFor("/var/lib/herd/agent/driver"), a);
  assert.equal(a.count, UID_BLOCK);
  assert.ok(a.first >= UID_BASE && lastUid(a) < 2 ** 31, `${a.first}-${lastUid(a)}`);
  assert.equal((a.first - UID_BASE) % UID_BLOCK, 0);
  assert.notDeepEqual(uidRangeFor("/tmp/other/driver"), a);
});

test("tenants get the lowest free uids, kept across reloads; the saved range wins over a new default", (t) => {
  const file = tempFile(t);
  const range = { first: 5000, count: 3 };
  const map = new UidMap(file, range);
  assert.equal(map.uidOf("acme"), 5000);
  assert.equal(map.uidOf("shop"), 5001);
  assert.equal(map.uidOf("acme"), 5000);
  // Saved before it was handed out, with the range.
  assert.deepEqual(JSON.parse(readFileSync(file, "utf8")), { range, uids: { acme: 5000, shop: 5001 } });
  const again = new UidMap(file, { first: 9000, count: 10 });
  assert.deepEqual(again.range, range);
  assert.equal(again.uidOf("shop"), 5001);
  assert.equal(again.uidOf("third"), 5002);
  assert.throws(() => again.uidOf("fourth"), /no free uid left in 5000-5002 for fourth/);
});

test("a file with a uid outside its range is refused, not trusted", (t) => {
  const file = tempFile(t);
  writeFileSync(file, JSON.stringify({ range: { first: 5000, count: 3 }, uids: { acme: 0 } }));
  assert.throws(() => new UidMap(file, { first: 5000, count: 3 }), /uid 0 of acme is outside 5000-5002/);
  writeFileSync(file, JSON.stringify({ uids: {} }));
  assert.throws(() => new UidMap(file, { first: 5000, count: 3 }), /no valid range/);
});
