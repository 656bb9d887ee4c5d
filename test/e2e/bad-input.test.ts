// Bad input gets a clear error and leaves running apps untouched.

import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import * as tar from "tar";
import { cleanupHerd, type Herd, ROOT, runCli, served, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-bad-"));

before(async () => {
  herd = await startHerd({ extraArgs: ["--max-upload-mb", "1"] });
  const r = await herd.cli(["deploy", join(ROOT, "examples/hello")]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  // helloServes() below asks for a 200 at once: first, the gateway has the route (a moment after the deploy).
  await served(herd, "hello.localhost", / from \S+ \(release \d+\)/);
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

/** Every test ends by checking hello still answers. */
async function helloServes() {
  const r = await herd.request("hello.localhost");
  assert.equal(r.status, 200, r.body);
}

function appDir(name: string, files: Record<string, string>): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  return dir;
}

test("a malformed herd.yaml: the error names the file, the field and the line; nothing is uploaded", async () => {
  const dir = appDir("badyaml", {
    "herd.yaml": "app: hello\nservices:\n  web:\n    command: node server.js\n    instances: -2\n",
    "server.js": "",
  });
  const r = await herd.cli(["deploy", dir]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /herd\.yaml:5/);
  assert.match(r.stderr, /services\.web\.instances/);
  const yaml = appDir("notyaml", { "herd.yaml": "app: [unclosed\n" });
  const r2 = await herd.cli(["deploy", yaml]);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /herd\.yaml:\d+: not valid YAML/);
  const releases = await herd.api<{ items: unknown[] }>("GET", "/apps/hello/releases");
  assert.equal(releases.body.items.length, 1);
  await helloServes();
});

test("unknown app and unknown service: 404 and a clear message", async () => {
  const r = await herd.cli(["ps", "--app", "nope"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /app nope does not exist/);
  const s = await herd.cli(["scale", "db=2", "--app", "hello"]);
  assert.equal(s.code, 1);
  assert.match(s.stderr, /has no service db/);
  const api = await herd.api<{ code: string }>("GET", "/apps/nope");
  assert.equal(api.status, 404);
  assert.equal(api.body.code, "not_found");
});

test("negative or fractional scale is refused by the CLI and by the API", async () => {
  for (const arg of ["web=-1", "web=1.5", "web=x"]) {
    const r = await herd.cli(["scale", arg, "--app", "hello"]);
    assert.notEqual(r.code, 0, arg);
  }
  const api = await herd.api<{ code: string; details: { field: string }[] }>("POST", "/apps/hello/scale", {
    services: { web: 1.5 },
  });
  assert.equal(api.status, 400);
  assert.equal(api.body.code, "invalid");
  assert.match(api.body.details[0].field, /body\.services\.web/);
  await helloServes();
});

test("an app that exits at once: the deploy fails with its log tail and the old release keeps serving", async () => {
  const dir = join(work, "crasher");
  cpSync(join(ROOT, "examples/hello"), dir, { recursive: true });
  writeFileSync(join(dir, "server.js"), 'console.error("boom: missing DATABASE_URL"); process.exit(3);\n');
  const r = await herd.cli(["deploy", dir]);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout + r.stderr, /v1 keeps serving/);
  assert.match(r.stdout + r.stderr, /boom: missing DATABASE_URL/);
  await helloServes();
  const { body } = await herd.api<{ app: { release: number } }>("GET", "/apps/hello");
  assert.equal(body.app.release, 1);
});

test("an upload over the size limit gets 413 and a message", async () => {
  const dir = appDir("big", { "index.html": "<h1>big</h1>" });
  writeFileSync(
    join(dir, "blob.bin"),
    Buffer.alloc(3 * 1024 * 1024, 7).map(() => Math.floor(Math.random() * 256)),
  );
  const r = await herd.cli(["deploy", dir, "--app", "big"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /limit/);
  await helloServes();
});

test("a tarball with .. or absolute paths is refused", async () => {
  const src = appDir("evil", { "index.html": "x" });
  // A real file named by its absolute path: with preservePaths, the entry keeps the leading "/".
  const outside = join(work, "outside");
  mkdirSync(outside, { recursive: true });
  const absolute = join(outside, "abs.html");
  writeFileSync(absolute, "outside the app");
  const cases = [
    { entry: "../evil/index.html", error: /archive entry \.\.\/evil\/index\.html has a \.\. segment/ },
    {
      entry: absolute,
      error: new RegExp(`archive entry ${absolute.replace(/[.]/g, "\\.")} has an absolute path`),
    },
  ];
  for (const c of cases) {
    const file = join(work, "evil.tar.gz");
    await tar.c({ gzip: true, file, cwd: src, portable: true, preservePaths: true }, ["index.html", c.entry]);
    const names: string[] = [];
    await tar.t({ file, onReadEntry: (e) => names.push(e.path) });
    assert.deepEqual(names, ["index.html", c.entry], "the tarball holds the bad entry as written");
    const res = await fetch(`${herd.url}/api/v1/apps/evil/deploys`, {
      method: "POST",
      headers: { authorization: `Bearer ${herd.token}`, "content-type": "application/gzip" },
      body: readFileSync(file),
    });
    const deploy = (await res.json()) as { id?: string; code?: string; message: string };
    // Either refused at once, or the deploy fails in its build step; never unpacked outside its dir.
    if (res.status === 202) {
      const d = await waitFor("the deploy to fail", async () => {
        const o = await herd.api<{ state: string; message: string }>(
          "GET",
          `/apps/evil/deploys/${deploy.id}`,
        );
        return o.body.state === "failed" ? o.body : undefined;
      });
      assert.match(d.message, c.error);
    } else {
      assert.equal(res.status, 400);
      assert.match(deploy.message, c.error);
    }
    assert.equal(readFileSync(absolute, "utf8"), "outside the app");
  }
  await helloServes();
});

test("a port taken by something else: herd up says so and exits non-zero", async () => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
  const port = (blocker.address() as net.AddressInfo).port;
  const data = mkdtempSync(join(tmpdir(), "herd-port-"));
  try {
    const r = await runCli(["up", "--data", data, "--port", String(port), "--no-example"], {
      timeoutMs: 30_000,
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`port ${port} is in use`));
  } finally {
    blocker.close();
    rmSync(data, { recursive: true, force: true });
  }
  await helloServes();
});

test("a bad --keep-releases: herd up says what it takes and starts nothing", async () => {
  const data = mkdtempSync(join(tmpdir(), "herd-keep-"));
  try {
    const r = await runCli(["up", "--data", data, "--keep-releases", "2.5", "--no-example"], {
      timeoutMs: 30_000,
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--keep-releases must be a whole number from 0 \(keep every release\), got 2\.5/);
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
});

test("the API rejects bad input with 400 naming the field, and unknown tokens with 401", async () => {
  const r = await herd.api<{ code: string; details: { field: string }[] }>("POST", "/apps", {
    name: "Bad_Name",
  });
  assert.equal(r.status, 400);
  assert.equal(r.body.details[0].field, "body.name");
  const unauth = await fetch(`${herd.url}/api/v1/apps`, { headers: { authorization: "Bearer nope" } });
  assert.equal(unauth.status, 401);
  const dup = await herd.api("POST", "/apps", { name: "hello" });
  assert.equal(dup.status, 409);
});
