import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isCode } from "../common/errors.ts";
import { backupStore, copyStore, OBJECTS_FILE, restoreStore } from "./copy.ts";
import { MemoryStore } from "./memory-store.ts";
import { SqliteStore } from "./sqlite-store.ts";

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "herd-copy-"));
  try {
    await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function seeded(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await store.put("tenant", "t", { name: "t" });
  await store.put("app", "t/a", { name: "a", release: 2 });
  await store.put("service", "t/a/web", { instances: 3 });
  await store.put("app", "t/gone", { name: "gone" });
  await store.delete("app", "t/gone");
  return store;
}

test("copyStore: every object lands in the empty target; a target with objects is refused", async () => {
  await withDir(async (dir) => {
    const from = await seeded();
    const to = await SqliteStore.open(join(dir, "state.db"));
    try {
      const result = await copyStore(from, to);
      assert.deepEqual(result, { objects: 3, revision: 5 });
      const copied = (await to.snapshot()).items.map((o) => [o.kind, o.key, o.value]);
      assert.deepEqual(
        copied,
        (await from.snapshot()).items.map((o) => [o.kind, o.key, o.value]),
      );
      await assert.rejects(
        copyStore(from, to),
        (err) => isCode(err, "conflict") && /already holds 3/.test(String(err)),
      );
    } finally {
      await to.close();
    }
  });
});

test("backup and restore: objects, artifacts and the secrets key come back; a cut backup is refused", async () => {
  await withDir(async (dir) => {
    const source = await seeded();
    const data = join(dir, "data");
    await mkdir(join(data, "artifacts", "ab"), { recursive: true });
    await writeFile(join(data, "artifacts", "ab", "abcd"), "slug bytes");
    await writeFile(join(data, "secrets.key"), '{"keys":{"k1":"c2VjcmV0"}}');
    const out = join(dir, "backup");
    const header = await backupStore({
      store: source,
      dataDir: data,
      artifactsDir: join(data, "artifacts"),
      out,
    });
    assert.equal(header.objects, 3);
    assert.equal(header.revision, 5);
    assert.equal((await stat(out)).mode & 0o777, 0o700);
    await assert.rejects(
      backupStore({ store: source, dataDir: data, artifactsDir: join(data, "artifacts"), out }),
      (err) => isCode(err, "conflict"),
    );

    const fresh = join(dir, "fresh");
    await mkdir(fresh);
    const target = await SqliteStore.open(join(fresh, "state.db"));
    try {
      await restoreStore({
        store: target,
        dataDir: fresh,
        artifactsDir: join(fresh, "artifacts"),
        from: out,
      });
      assert.deepEqual(
        (await target.snapshot()).items.map((o) => [o.kind, o.key, o.value]),
        (await source.snapshot()).items.map((o) => [o.kind, o.key, o.value]),
      );
      assert.equal(await readFile(join(fresh, "artifacts", "ab", "abcd"), "utf8"), "slug bytes");
      assert.equal(await readFile(join(fresh, "secrets.key"), "utf8"), '{"keys":{"k1":"c2VjcmV0"}}');
      await assert.rejects(
        restoreStore({ store: target, dataDir: fresh, artifactsDir: join(fresh, "artifacts"), from: out }),
        (err) => isCode(err, "conflict"),
      );
    } finally {
      await target.close();
    }

    // A backup missing its last line is refused.
    const lines = (await readFile(join(out, OBJECTS_FILE), "utf8")).trimEnd().split("\n");
    await writeFile(join(out, OBJECTS_FILE), `${lines.slice(0, -1).join("\n")}\n`);
    const other = new MemoryStore();
    await assert.rejects(
      restoreStore({
        store: other,
        dataDir: join(dir, "other"),
        artifactsDir: join(dir, "other", "a"),
        from: out,
      }),
      (err) => isCode(err, "invalid") && /cut short/.test(String(err)),
    );
  });
});

test("restore refuses a data dir whose secrets key is another", async () => {
  await withDir(async (dir) => {
    const out = join(dir, "backup");
    const data = join(dir, "data");
    await mkdir(data);
    await writeFile(join(data, "secrets.key"), "one");
    await backupStore({ store: await seeded(), dataDir: data, artifactsDir: join(data, "artifacts"), out });
    const other = join(dir, "other");
    await mkdir(other);
    await writeFile(join(other, "secrets.key"), "two");
    await assert.rejects(
      restoreStore({ store: new MemoryStore(), dataDir: other, artifactsDir: join(other, "a"), from: out }),
      (err) => isCode(err, "conflict") && /secrets key/.test(String(err)),
    );
  });
});
