import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { after, before, describe, it } from "node:test";
import { HerdError } from "../common/errors.ts";
import { ArtifactStore } from "./artifact-store.ts";

const sha256 = (data: string | Buffer): string => createHash("sha256").update(data).digest("hex");

describe("ArtifactStore", () => {
  let dir: string;
  let store: ArtifactStore;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "herd-artifacts-"));
    store = new ArtifactStore(join(dir, "store"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("stores a stream under its sha256 digest, content-addressed", async () => {
    const chunks = ["hello ", "artifact ", "store"];
    const stored = await store.put(Readable.from(chunks.map((c) => Buffer.from(c))), 1000);
    assert.deepEqual(stored, { digest: sha256(chunks.join("")), size: chunks.join("").length });
    const path = await store.path(stored.digest);
    assert.equal(path, join(dir, "store", "sha256", stored.digest.slice(0, 2), `${stored.digest}.tar.gz`));
    assert.equal(await readFile(path, "utf8"), "hello artifact store");
    assert.equal(await text(await store.open(stored.digest)), "hello artifact store");
    assert.equal(await store.has(stored.digest), true);
  });

  it("is idempotent for the same content", async () => {
    const first = await store.put(Buffer.from("same bytes"), 100);
    const second = await store.put(Readable.from([Buffer.from("same "), Buffer.from("bytes")]), 100);
    assert.deepEqual(first, second);
    const names = await readdir(join(dir, "store", "sha256", first.digest.slice(0, 2)));
    assert.deepEqual(
      names.filter((n) => n.startsWith(first.digest)),
      [`${first.digest}.tar.gz`],
    );
    assert.deepEqual(await readdir(join(dir, "store", "incoming")), []);
  });

  it("stores a file with putFile and leaves the file in place", async () => {
    const file = join(dir, "slug.tar.gz");
    await writeFile(file, "slug contents");
    const stored = await store.putFile(file);
    assert.equal(stored.digest, sha256("slug contents"));
    assert.equal(await readFile(file, "utf8"), "slug contents");
  });

  it("enforces the size limit and keeps nothing", async () => {
    const tooLarge = (pattern: RegExp) => (err: unknown) => {
      assert.ok(err instanceof HerdError);
      assert.equal(err.code, "too_large");
      assert.match(err.message, pattern);
      return true;
    };
    await assert.rejects(store.put(Buffer.alloc(11), 10), tooLarge(/^upload is 11 bytes, the limit is 10$/));
    const stream = Readable.from([Buffer.alloc(8), Buffer.alloc(8), Buffer.alloc(8)]);
    await assert.rejects(store.put(stream, 10), tooLarge(/^upload is at least 16 bytes, the limit is 10$/));
    assert.equal(await store.has(sha256(Buffer.alloc(24))), false);
    assert.deepEqual(await readdir(join(dir, "store", "incoming")), []);
    // Exactly at the limit is fine.
    assert.equal((await store.put(Buffer.alloc(10), 10)).size, 10);
  });

  it("answers not_found for a missing digest and invalid for a malformed one", async () => {
    const missing = sha256("never stored");
    assert.equal(await store.has(missing), false);
    await assert.rejects(store.path(missing), { code: "not_found" });
    await assert.rejects(store.open(missing), { code: "not_found" });
    for (const bad of ["../../etc/passwd", "abc", missing.toUpperCase(), `${missing}0`]) {
      await assert.rejects(store.has(bad), { code: "invalid" });
      await assert.rejects(store.path(bad), { code: "invalid" });
    }
  });
});
