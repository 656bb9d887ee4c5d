import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { SlugCache } from "./slugs.ts";

test("slugs are downloaded once with the token, verified, and unpacked fresh", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "herd-slugs-"));
  const slug = join(root, "slug.tar.gz");
  execFileSync("tar", ["-czf", slug, "-C", join(import.meta.dirname, "../../examples/hello"), "."]);
  const body = readFileSync(slug);
  const digest = createHash("sha256").update(body).digest("hex");
  const wrong = "0".repeat(64);
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(`${req.url} ${req.headers.authorization}`);
    if (req.url === `/api/v1/slugs/${digest}` || req.url === `/api/v1/slugs/${wrong}`) res.end(body);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.close();
    rmSync(root, { recursive: true, force: true });
  });
  const address = server.address();
  const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  const dataDir = join(root, "data");
  const cache = new SlugCache({ server: url, token: "tok", dataDir });

  const [a, b] = await Promise.all([cache.fetch(digest), cache.fetch(digest)]);
  assert.equal(a, join(dataDir, "slugs", `${digest}.tar.gz`));
  assert.equal(b, a);
  assert.deepEqual(requests, [`/api/v1/slugs/${digest} Bearer tok`]);

  const dest = join(root, "app");
  await cache.unpack(digest, dest);
  await cache.unpack(digest, dest);
  assert.ok(existsSync(join(dest, "server.js")));
  assert.equal(requests.length, 1, "a cached slug was downloaded again");

  await assert.rejects(cache.fetch(wrong), /arrived with sha256/);
  await assert.rejects(cache.fetch("f".repeat(64)), /404/);
  await assert.rejects(cache.fetch("../../etc/passwd"), /not a sha256/);
  assert.deepEqual(readdirSync(join(dataDir, "slugs")), [`${digest}.tar.gz`]);
});
