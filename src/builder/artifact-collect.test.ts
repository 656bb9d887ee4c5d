import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { ArtifactCollector } from "./artifact-collect.ts";
import { ArtifactStore } from "./artifact-store.ts";

const HOUR = 60 * 60 * 1000;

function setup(t: { after: (fn: () => void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), "herd-artifact-collect-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const artifacts = new ArtifactStore(dir);
  const store = new MemoryStore();
  const put = async (text: string, ageMs: number) => {
    const { digest } = await artifacts.put(Buffer.from(text), 1 << 20);
    const when = (Date.now() - ageMs) / 1000;
    utimesSync(await artifacts.path(digest), when, when);
    return digest;
  };
  return { dir, artifacts, store, put };
}

test("artifacts no stored object names and older than the grace go, with their metadata; the rest stay", async (t) => {
  const { dir, artifacts, store, put } = setup(t);
  const slug = await put("slug of a kept release", 5 * HOUR);
  const source = await put("its source", 5 * HOUR);
  const dump = await put("an add-on backup's dump", 5 * HOUR);
  const orphan = await put("slug of a destroyed app", 5 * HOUR);
  const young = await put("an upload whose build runs", 10 * 60 * 1000);
  await artifacts.putMetadata(orphan, "packages", { left: true });
  await artifacts.putMetadata(slug, "packages", { kept: true });
  await store.put("release", "default/hello/1", { slug, source, services: {} });
  // Named deep inside another kind's object, in a field this module does not know.
  await store.put("addon", "default/db", { backups: [{ id: "b1", digest: dump }] });
  // An event that tells of an artifact does not keep it.
  await store.put("event", "default/_/e1", { message: `final backup kept as artifact ${orphan}` });
  // A write that never finished (a crash mid-upload), and one in flight.
  writeFileSync(join(dir, "incoming", "old.part"), "half");
  utimesSync(
    join(dir, "incoming", "old.part"),
    (Date.now() - 5 * HOUR) / 1000,
    (Date.now() - 5 * HOUR) / 1000,
  );
  writeFileSync(join(dir, "incoming", "new.part"), "half");

  const collector = new ArtifactCollector({ store, artifacts, logger: silentLogger });
  const result = await collector.collect();
  assert.deepEqual(result, { removed: 1, bytes: "slug of a destroyed app".length, kept: 4, unfinished: 1 });
  assert.equal(await artifacts.has(orphan), false);
  assert.equal(await artifacts.getMetadata(orphan, "packages"), undefined);
  for (const d of [slug, source, dump, young]) assert.equal(await artifacts.has(d), true, d);
  assert.deepEqual(await artifacts.getMetadata(slug, "packages"), { kept: true });
  assert.deepEqual(readdirSync(join(dir, "incoming")), ["new.part"]);

  // The release goes (its app destroyed): its slug and source follow on the next round.
  await store.delete("release", "default/hello/1");
  assert.equal((await collector.collect()).removed, 2);
  assert.equal(await artifacts.has(slug), false);
  assert.equal(await artifacts.has(dump), true);
});

test("an artifact written again after it was found unreferenced is not removed", async (t) => {
  const { artifacts, put } = setup(t);
  const digest = await put("the same bytes again", 5 * HOUR);
  const foundBefore = Date.now() - HOUR;
  // A deploy uploads the same content between the listing and the removal: it is fresh now.
  await artifacts.put(Buffer.from("the same bytes again"), 1 << 20);
  assert.equal(await artifacts.remove(digest, foundBefore), false);
  assert.equal(await artifacts.has(digest), true);
  assert.equal(existsSync(await artifacts.path(digest)), true);
  assert.equal(await artifacts.remove(digest), true);
  assert.equal(await artifacts.has(digest), false);
  assert.equal(await artifacts.remove(digest), false, "gone already");
});
