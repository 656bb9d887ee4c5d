// Deploy by git push against a real control plane: real `git` clients push to
// the app's remote (git http-backend behind the API), the build streams back
// as "remote:" lines, a failing build refuses the push, and the remote asks
// for a token (401 with Basic), refuses a viewer's push (403) and lets the
// viewer clone.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { Release } from "../model/objects.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-git-api-"));
const tokens: Record<string, string> = {};

before(async () => {
  server = await startServer({ dataDir: join(dir, "data"), port: 0, logger: silentLogger });
  assert.equal((await apiCall(server, "POST", "/tenants", { name: "acme" })).status, 201);
  for (const [name, role] of [
    ["dora", "deployer"],
    ["vic", "viewer"],
  ]) {
    assert.equal((await apiCall(server, "POST", "/users", { name })).status, 201);
    assert.equal((await apiCall(server, "PUT", `/tenants/acme/members/${name}`, { role })).status, 200);
    tokens[name] = (await apiCall(server, "POST", "/tokens", { name: "laptop", user: name })).body.token;
  }
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The remote's URL, with a token as the basic-auth password when given. */
const remote = (app: string, token?: string) =>
  `${token ? server.url.replace("://", `://herd:${token}@`) : server.url}/api/v1/tenants/acme/git/${app}.git`;

/** Runs git without blocking the event loop (the server is in this process). */
function git(cwd: string, ...args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn("git", args, {
      cwd,
      env: { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_NOSYSTEM: "1", HOME: dir },
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("close", (code) => resolve({ code, out }));
  });
}

/** A working tree with one commit of `files`. */
function repo(name: string, files: Record<string, string>): string {
  const src = join(dir, name);
  execFileSync("git", ["init", "-q", "-b", "main", src]);
  commit(src, files, "first");
  return src;
}

function commit(src: string, files: Record<string, string>, message: string): string {
  for (const [path, text] of Object.entries(files)) writeFileSync(join(src, path), text);
  const g = (...a: string[]) => execFileSync("git", ["-C", src, ...a], { encoding: "utf8" });
  g("add", ".");
  g("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message);
  return g("rev-parse", "HEAD").trim();
}

const HERD_YAML = "app: shop\nservices:\n  web:\n    command: node server.js\n    instances: 0\n";

test("a deployer's push builds and releases the branch, with the build as remote: lines", async () => {
  const src = repo("shop", { "herd.yaml": HERD_YAML, "server.js": "// v1\n" });
  const pushed = await git(src, "push", remote("shop", tokens.dora), "main");
  assert.equal(pushed.code, 0, pushed.out);
  assert.match(pushed.out, /remote: -----> Deploying main \([0-9a-f]{7}\) to app shop of tenant acme/);
  assert.match(pushed.out, /remote: -----> herd\.yaml found: app shop, services web/);
  assert.match(pushed.out, /remote: -----> Release v1 created \(git push main [0-9a-f]{7}\)/);
  assert.match(pushed.out, /\* \[new branch\] +main -> main/);
  const releases = (await apiCall(server, "GET", "/apps/shop/releases?tenant=acme")).body.items as Release[];
  assert.equal(releases.length, 1);
  assert.equal(releases[0].createdBy, "user dora");
  // The hooks' socket is in the repositories' root, this user's only (nothing in /tmp to outlive a kill -9).
  assert.equal(statSync(join(dir, "data", "git", ".push.sock")).mode & 0o777, 0o600);

  // A later commit: a second release; the remote's main follows it.
  const second = commit(src, { "server.js": "// v2\n" }, "second");
  const again = await git(src, "push", remote("shop", tokens.dora), "main");
  assert.equal(again.code, 0, again.out);
  assert.match(again.out, /Release v2 created \(git push main/);
  const refs = await git(src, "ls-remote", remote("shop", tokens.vic), "refs/heads/main");
  assert.equal(refs.out.split(/\s/)[0], second);
});

test("a failing build refuses the push: the ref and the release stay as they were", async () => {
  const src = repo("broken", { "herd.yaml": HERD_YAML.replace("shop", "broken"), "server.js": "// ok\n" });
  const good = await git(src, "push", remote("broken", tokens.dora), "main");
  assert.equal(good.code, 0, good.out);
  const before = (await git(src, "rev-parse", "HEAD")).out.trim();
  commit(src, { "herd.yaml": "app: broken\nservices:\n  web:\n    instances: lots\n" }, "bad");
  const bad = await git(src, "push", remote("broken", tokens.dora), "main");
  assert.notEqual(bad.code, 0, bad.out);
  assert.match(bad.out, /remote: herd: deploy \w+ failed: /);
  assert.match(bad.out, /remote: herd: the push is refused; the app keeps its running release/);
  assert.match(bad.out, /! \[remote rejected\] main -> main \(pre-receive hook declined\)/);
  const refs = await git(src, "ls-remote", remote("broken", tokens.dora), "refs/heads/main");
  assert.equal(refs.out.split(/\s/)[0], before);
  const app = (await apiCall(server, "GET", "/apps/broken?tenant=acme")).body.app;
  assert.equal(app.release, 1);
});

test("credentials: none is a 401 asking for Basic; a viewer may clone but not push; a bad token is refused", async () => {
  const src = repo("guarded", { "herd.yaml": HERD_YAML.replace("shop", "guarded"), "server.js": "//\n" });
  const anonymous = await git(src, "push", remote("guarded"), "main");
  assert.notEqual(anonymous.code, 0);
  assert.match(anonymous.out, /could not read Username/); // git got the 401 and wanted credentials
  const res = await fetch(`${remote("guarded")}/info/refs?service=git-receive-pack`, {
    headers: { "user-agent": "git/2.39.5" },
  });
  assert.equal(res.status, 401);
  assert.match(res.headers.get("www-authenticate") ?? "", /^Basic realm="herd"/);
  assert.match(await res.text(), /^herd: missing bearer token/);
  // Any other client gets the API's JSON errors; a body that is not git's is a 400 naming the header.
  const plain = await fetch(`${remote("guarded")}/info/refs?service=git-receive-pack`);
  assert.deepEqual([plain.status, ((await plain.json()) as { code: string }).code], [401, "unauthorized"]);
  const junk = await apiCall(server, "POST", "/tenants/acme/git/guarded.git/git-receive-pack", { a: 1 });
  assert.equal(junk.status, 400);
  assert.equal(junk.body.details[0].field, "content-type");

  const viewer = await git(src, "push", remote("guarded", tokens.vic), "main");
  assert.notEqual(viewer.code, 0);
  assert.match(
    viewer.out,
    /remote: herd: user vic is a viewer in tenant acme: apps:write needs the deployer role/,
  );
  const wrong = await git(src, "push", remote("guarded", "herd_pat_nope"), "main");
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.out, /Authentication failed/);

  assert.equal((await git(src, "push", remote("guarded", tokens.dora), "main")).code, 0);
  const clone = await git(dir, "clone", "-q", remote("guarded", tokens.vic), join(dir, "guarded-clone"));
  assert.equal(clone.code, 0, clone.out);
  // Another tenant's remote: 404 for a name that has no repository, 403 for a tenant one has no role in.
  const none = await git(dir, "ls-remote", remote("nothing", tokens.vic));
  assert.match(none.out, /remote: herd: app nothing has no git repository yet/);
  const other = await git(dir, "ls-remote", remote("guarded", tokens.vic).replace("/acme/", "/default/"));
  assert.match(other.out, /remote: herd: user vic has no role in tenant default/);
});

test("one branch per push; a tag alone deploys nothing", async () => {
  const src = repo("multi", { "herd.yaml": HERD_YAML.replace("shop", "multi"), "server.js": "//\n" });
  execFileSync("git", ["-C", src, "branch", "other"]);
  const both = await git(src, "push", remote("multi", tokens.dora), "main", "other");
  assert.notEqual(both.code, 0);
  assert.match(
    both.out,
    /remote: herd: push one branch at a time: this push moves (main, other|other, main)/,
  );
  execFileSync("git", ["-C", src, "tag", "v1"]);
  const tag = await git(src, "push", remote("multi", tokens.dora), "v1");
  assert.equal(tag.code, 0, tag.out);
  assert.match(tag.out, /remote: herd: no branch to deploy in this push/);
  assert.equal((await apiCall(server, "GET", "/apps/multi?tenant=acme")).status, 404);
});

test("a push over the tenant's upload limit is refused by git itself, before any deploy", async () => {
  assert.equal((await apiCall(server, "POST", "/tenants", { name: "tight" })).status, 201);
  assert.equal((await apiCall(server, "PUT", "/tenants/tight/limits", { uploadBytes: 4096 })).status, 200);
  const src = repo("big", {
    "herd.yaml": HERD_YAML.replace("shop", "big"),
    // Random bytes do not compress: the pack is about this size.
    "blob.bin": randomBytes(64 * 1024).toString("base64"),
  });
  const url = remote("big", server.adminToken).replace("/acme/", "/tight/");
  const pushed = await git(src, "push", url, "main");
  assert.notEqual(pushed.code, 0, pushed.out);
  assert.match(pushed.out, /pack exceeds maximum allowed size|unpack failed/);
  assert.equal((await apiCall(server, "GET", "/apps/big?tenant=tight")).status, 404);
});
