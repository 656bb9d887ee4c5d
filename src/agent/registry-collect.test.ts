/**
 * The registry's collection against a real docker-registry (Debian
 * docker-registry) under a temp dir, images pushed over its HTTP API (no
 * engine needed): what kept releases run (by digest, or `image:` by tag) and
 * what was pushed within the grace period stay; the rest goes, bytes freed.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ensureDebianPackages } from "../common/debian-packages.ts";
import { freePort } from "./driver.case.test.ts";
import { manifestDigest, type Registry, startRegistry } from "./registry.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-registry-gc-"));
let registry: Registry | undefined;

before(async () => {
  const tools = await ensureDebianPackages({ "docker-registry": "docker-registry" });
  registry = await startRegistry(join(dir, "registry"), {
    listen: `127.0.0.1:${await freePort()}`,
    binary: tools["docker-registry"],
  });
});

after(async () => {
  try {
    await registry?.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Pushes a one-layer image of `content` as repository:tag; returns the manifest's digest. */
async function push(repository: string, tag: string, content: string): Promise<string> {
  const base = `http://${registry?.address}/v2/${repository}`;
  const blob = async (data: Buffer) => {
    const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
    const started = await fetch(`${base}/blobs/uploads/`, { method: "POST" });
    assert.equal(started.status, 202);
    const location = new URL(started.headers.get("location") ?? "", base);
    location.searchParams.set("digest", digest);
    const put = await fetch(location, { method: "PUT", body: data });
    assert.equal(put.status, 201, await put.text());
    return { digest, size: data.length };
  };
  const layer = await blob(Buffer.alloc(64 * 1024, content));
  const config = await blob(Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", content })));
  const manifest = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
  };
  const res = await fetch(`${base}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": manifest.mediaType },
    body: JSON.stringify(manifest),
  });
  assert.equal(res.status, 201, await res.text());
  return res.headers.get("docker-content-digest") ?? "";
}

test("collectUnused keeps what kept releases run and what is new; deletes the rest", async () => {
  const r = registry as Registry;
  const kept = await push("herd-build", "aaaa", "kept build");
  const old = await push("herd-build", "bbbb", "old build");
  await push("team/db", "1.2", "image by tag");
  await push("team/db", "1.1", "old image");

  // Within the grace period nothing goes, whatever the control plane keeps.
  const none = await r.collectUnused({ digests: [], images: [] }, 3600_000);
  assert.deepEqual(none.deleted, []);

  const collected = await r.collectUnused({ digests: [kept], images: [`${r.address}/team/db:1.2`] }, 0);
  assert.deepEqual(collected.deleted.sort(), ["herd-build:bbbb", "team/db:1.1"]);
  assert.ok(collected.freedBytes >= 2 * 64 * 1024, JSON.stringify(collected));
  assert.equal(await manifestDigest(r.access, "herd-build", "aaaa"), kept);
  assert.ok(await manifestDigest(r.access, "team/db", "1.2"));
  assert.equal(await manifestDigest(r.access, "herd-build", "bbbb"), undefined);
  const gone = await fetch(`http://${r.address}/v2/herd-build/manifests/${old}`, {
    headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  assert.equal(gone.status, 404, "the collected build's manifest is gone");
});
