import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { isolateModuleScope, SlugCache } from "./slugs.ts";

/**
 * examples/hello as a slug, served at /api/v1/slugs/<its digest> (and at `also`, the same bytes) by a
 * server that records each request; the temp dir and the server go with the test.
 */
async function slugServer(t: TestContext, also?: string) {
  const root = mkdtempSync(join(tmpdir(), "herd-slugs-"));
  const slug = join(root, "slug.tar.gz");
  execFileSync("tar", ["-czf", slug, "-C", join(import.meta.dirname, "../../examples/hello"), "."]);
  const body = readFileSync(slug);
  const digest = createHash("sha256").update(body).digest("hex");
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(`${req.url} ${req.headers.authorization}`);
    if (req.url === `/api/v1/slugs/${digest}` || (also && req.url === `/api/v1/slugs/${also}`)) res.end(body);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.close();
    rmSync(root, { recursive: true, force: true });
  });
  const address = server.address();
  const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  return { root, digest, url, requests, dataDir: join(root, "data") };
}

test("slugs are downloaded once with the token, verified, and unpacked fresh", async (t) => {
  const wrong = "0".repeat(64);
  const { root, digest, url, requests, dataDir } = await slugServer(t, wrong);
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

test("the Node a slug names is downloaded once from /runtimes, verified, unpacked; a wrong platform is refused", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "herd-runtimes-"));
  const pkg = join(root, "pkg", "package", "bin");
  mkdirSync(pkg, { recursive: true });
  writeFileSync(join(pkg, "node"), "#!/bin/sh\necho v22.10.2\n", { mode: 0o755 });
  const tarball = join(root, "node.tgz");
  execFileSync("tar", ["-czf", tarball, "-C", join(root, "pkg"), "package"]);
  const body = readFileSync(tarball);
  const digest = createHash("sha256").update(body).digest("hex");
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? "");
    if (req.url === `/api/v1/runtimes/${digest}`) res.end(body);
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
  const app = (ref: unknown): string => {
    const dir = mkdtempSync(join(root, "app-"));
    if (ref !== undefined) {
      mkdirSync(join(dir, ".herd"));
      writeFileSync(join(dir, ".herd", "node.json"), JSON.stringify(ref));
    }
    return dir;
  };
  const platform = `${process.platform}-${process.arch}`;

  assert.equal(await cache.node(app(undefined)), undefined, "no reference: herd's own Node");
  const ref = { version: "22.10.2", platform, digest };
  const [a, b] = await Promise.all([cache.node(app(ref)), cache.node(app(ref))]);
  assert.equal(a, join(dataDir, "runtimes", digest, "package"));
  assert.equal(b, a);
  assert.equal(execFileSync(join(a as string, "bin", "node"), { encoding: "utf8" }), "v22.10.2\n");
  assert.equal(await cache.node(app(ref)), a);
  assert.deepEqual(requests, [`/api/v1/runtimes/${digest}`], "downloaded once");
  // The tarball goes once it is unpacked.
  assert.deepEqual(readdirSync(join(dataDir, "runtimes")), [digest]);

  await assert.rejects(
    cache.node(app({ ...ref, platform: "linux-s390x" })),
    /built for linux-s390x; this node is/,
  );
  await assert.rejects(cache.node(app({ ...ref, digest: "../../x" })), /names no Node runtime/);
  await assert.rejects(cache.node(app({ ...ref, digest: "f".repeat(64) })), /404/);
});

test("an instance dir ends Node's package.json lookup only when a package.json lies above it", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "herd-scope-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const instance = join(root, "project", "data", "instances", "web-1");
  mkdirSync(join(instance, "app"), { recursive: true });
  writeFileSync(join(instance, "app", "server.js"), "module.exports = typeof require;\n");

  // Nothing above: no file added, the app sees what it would see elsewhere.
  assert.deepEqual((await isolateModuleScope(instance)).nodeModulesAbove, []);
  assert.equal(existsSync(join(instance, "package.json")), false);

  // A data dir inside a "type": "module" project (herd's own checkout is one).
  writeFileSync(join(root, "project", "package.json"), JSON.stringify({ type: "module" }));
  mkdirSync(join(root, "project", "node_modules"));
  const { nodeModulesAbove } = await isolateModuleScope(instance);
  assert.deepEqual(nodeModulesAbove, [join(root, "project", "node_modules")]);
  const out = execFileSync(
    process.execPath,
    ["-p", `require(${JSON.stringify(join(instance, "app", "server.js"))})`],
    {
      encoding: "utf8",
    },
  );
  assert.equal(out.trim(), "function", "server.js runs as CommonJS");
  assert.equal(JSON.parse(readFileSync(join(instance, "package.json"), "utf8")).type, undefined);

  rmSync(join(root, "project", "package.json"));
  await isolateModuleScope(instance);
  assert.equal(existsSync(join(instance, "package.json")), false, "removed once nothing above needs it");
});

test("prune deletes the slugs nothing uses but the last used; one being unpacked stays, and comes back when asked again", async (t) => {
  const { root, digest, url, requests, dataDir } = await slugServer(t);
  // Five slugs on disk, used an hour, two, three, four and five hours ago.
  const dir = join(dataDir, "slugs");
  mkdirSync(dir, { recursive: true });
  const old = ["1", "2", "3", "4", "5"].map((n) => n.repeat(64));
  old.forEach((d, i) => {
    writeFileSync(join(dir, `${d}.tar.gz`), "x");
    const when = (Date.now() - (i + 1) * 3_600_000) / 1000;
    utimesSync(join(dir, `${d}.tar.gz`), when, when);
  });
  const cache = new SlugCache({ server: url, token: "tok", dataDir });
  assert.equal((await cache.held()).length, 5);

  // In use: the oldest. Kept besides: the two used last. Gone: the other two.
  const removed = await cache.prune(new Set([old[4]]), 2);
  assert.deepEqual(removed.sort(), [old[2], old[3]].sort());
  assert.deepEqual((await cache.held()).sort(), [old[0], old[1], old[4]].sort());
  assert.deepEqual(readdirSync(dir).sort(), [old[0], old[1], old[4]].map((d) => `${d}.tar.gz`).sort());

  // An unpack started while prune runs: the slug it unpacks is not deleted under it.
  await cache.unpack(digest, join(root, "app1"));
  const unpacking = cache.unpack(digest, join(root, "app2"));
  assert.deepEqual((await cache.prune(new Set(), 0)).sort(), [old[0], old[1], old[4]].sort());
  await unpacking;
  assert.ok(existsSync(join(root, "app2", "server.js")));
  // Pruned once nothing unpacks or runs it; asked for again, it is downloaded again.
  assert.deepEqual(await cache.prune(new Set(), 0), [digest]);
  await cache.unpack(digest, join(root, "app3"));
  assert.ok(existsSync(join(root, "app3", "server.js")));
  assert.equal(requests.length, 2);
  // The agent asks on every heartbeat reply: one prune, then none for 10 minutes.
  const first = cache.pruneWhenDue(() => new Set());
  assert.ok(first, "due at first");
  assert.equal(
    cache.pruneWhenDue(() => new Set()),
    undefined,
    "one at a time",
  );
  await first;
  assert.equal(
    cache.pruneWhenDue(() => new Set(), Date.now() + 60_000),
    undefined,
    "not due within 10 minutes",
  );
  assert.ok(await cache.pruneWhenDue(() => new Set(), Date.now() + 11 * 60_000));
});
