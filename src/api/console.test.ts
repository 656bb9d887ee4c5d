// The console's files as the control plane serves them (routes/console.ts):
// types, gzip, caching by name, deep links to index.html, the API's own 404.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { gunzipSync } from "node:zlib";
import Fastify from "fastify";
import { ConsoleFiles, consoleRoutes } from "./routes/console.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-console-files-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const INDEX = '<!doctype html><script type="module" src="/assets/index-abc123.js"></script>';
const JS = `console.log(${JSON.stringify("x".repeat(4000))});`;

async function serve(root: string) {
  const app = Fastify();
  consoleRoutes(app, new ConsoleFiles(root));
  await app.ready();
  return app;
}

test("files get their type, hashed assets are cached for good, gzip when asked", async (t) => {
  const dist = join(dir, "dist");
  mkdirSync(join(dist, "assets"), { recursive: true });
  writeFileSync(join(dist, "index.html"), INDEX);
  writeFileSync(join(dist, "assets", "index-abc123.js"), JS);
  writeFileSync(join(dist, "favicon.svg"), "<svg/>");
  const app = await serve(dist);
  t.after(() => app.close());

  const index = await app.inject({ url: "/" });
  assert.equal(index.statusCode, 200);
  assert.equal(index.headers["content-type"], "text/html; charset=utf-8");
  assert.equal(index.headers["cache-control"], "no-cache");
  assert.match(String(index.headers["content-security-policy"]), /default-src 'self'/);
  assert.equal(index.body, INDEX);

  const js = await app.inject({ url: "/assets/index-abc123.js", headers: { "accept-encoding": "gzip, br" } });
  assert.equal(js.statusCode, 200);
  assert.equal(js.headers["content-type"], "text/javascript; charset=utf-8");
  assert.equal(js.headers["cache-control"], "public, max-age=31536000, immutable");
  assert.equal(js.headers["content-encoding"], "gzip");
  assert.equal(gunzipSync(js.rawPayload).toString(), JS);
  assert.ok(js.rawPayload.length < JS.length / 10);
  const plain = await app.inject({ url: "/assets/index-abc123.js" });
  assert.equal(plain.headers["content-encoding"], undefined);
  assert.equal(plain.body, JS);

  const svg = await app.inject({ url: "/favicon.svg" });
  assert.equal(svg.headers["content-type"], "image/svg+xml");
  assert.equal(svg.headers["cache-control"], "no-cache");
});

test("a deep link gets index.html; a missing file and an unknown API path are 404s", async (t) => {
  const dist = join(dir, "deep");
  mkdirSync(dist, { recursive: true });
  writeFileSync(join(dist, "index.html"), INDEX);
  const app = await serve(dist);
  t.after(() => app.close());
  for (const url of [
    "/apps/hello",
    "/apps/hello/releases?tenant=acme",
    "/apps/hello/instances/hello-web-1",
  ]) {
    const res = await app.inject({ url });
    assert.equal(res.statusCode, 200, url);
    assert.equal(res.body, INDEX, url);
  }
  const gone = await app.inject({ url: "/assets/index-old999.js" });
  assert.equal(gone.statusCode, 404);
  assert.equal(gone.json().code, "not_found");
  const api = await app.inject({ url: "/api/v1/no-such-route" });
  assert.equal(api.statusCode, 404);
  assert.deepEqual(api.json(), { code: "not_found", message: "no route GET /api/v1/no-such-route" });
  assert.equal((await app.inject({ url: "/%E0%A4%A" })).statusCode, 400);
  // Nothing outside the built files is reachable.
  // Nothing outside the built files is reachable: paths are looked up among them, never on disk.
  for (const url of ["/../package.json", "/%2e%2e/package.json", "/..%2fpackage.json"]) {
    const res = await app.inject({ url });
    assert.equal(res.statusCode, 404, url);
    assert.doesNotMatch(res.body, /"name"/, url);
  }
});

test("without a build, the page says how to build it", async (t) => {
  const app = await serve(join(dir, "nothing-here"));
  t.after(() => app.close());
  const res = await app.inject({ url: "/apps/x" });
  assert.equal(res.statusCode, 200);
  assert.match(res.body, /npm install/);
});
