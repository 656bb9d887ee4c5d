// Deploy by git push on a real herd: `herd git remote` adds the app's remote
// (herd as git's credential helper, the token never in the repository), a real
// `git push` builds and releases the branch with the build and rollout shown
// as "remote:" lines, the new code serves through the gateway, a push whose
// deploy fails is refused while the running release keeps serving, and a
// viewer's push is refused.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Release } from "../../src/model/objects.ts";
import { cleanupHerd, gatewaysInSync, type Herd, runCli, served, startHerd } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-git-push-"));
const src = join(work, "shop");
const tokens: Record<string, string> = {};

before(async () => {
  herd = await startHerd();
  for (const [name, role] of [
    ["dora", "deployer"],
    ["vic", "viewer"],
  ]) {
    assert.equal((await herd.api("POST", "/users", { name })).status, 201);
    assert.equal((await herd.api("PUT", `/tenants/default/members/${name}`, { role })).status, 200);
    const made = await herd.api<{ token: string }>("POST", "/tokens", { name: "laptop", user: name });
    tokens[name] = made.body.token;
  }
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

/** `git ARGS` in the app's repository as `who` (whose token herd's credential helper hands git). */
function git(who: string, ...args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn("git", args, {
      cwd: src,
      env: {
        ...process.env,
        HERD_SERVER: herd.url,
        HERD_TOKEN: tokens[who],
        GIT_TERMINAL_PROMPT: "0",
        GIT_CONFIG_NOSYSTEM: "1",
        HOME: work,
      },
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 180_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

function commit(files: Record<string, string>, message: string): void {
  for (const [path, text] of Object.entries(files)) writeFileSync(join(src, path), text);
  execFileSync("git", ["-C", src, "add", "."]);
  execFileSync("git", [
    "-C",
    src,
    "-c",
    "user.name=t",
    "-c",
    "user.email=t@example.com",
    "commit",
    "-qm",
    message,
  ]);
}

const server = (tag: string) =>
  `import { createServer } from "node:http";\ncreateServer((req, res) => res.end("${tag}")).listen(Number(process.env.PORT));\n`;
const HERD_YAML = [
  "app: shop",
  "services:",
  "  web:",
  "    command: node server.js",
  "    resources: { cpu: 0.05, memory: 32Mi }",
  "",
].join("\n");

test("git push builds and releases the branch; a failed deploy refuses the push and v1 keeps serving", async () => {
  execFileSync("git", ["init", "-q", "-b", "main", src]);
  commit(
    {
      "package.json": JSON.stringify({ name: "shop", private: true, type: "module" }),
      "herd.yaml": HERD_YAML,
      "server.js": server("v1"),
    },
    "v1",
  );
  const added = await runCli(["git", "remote"], {
    cwd: src,
    env: { HERD_SERVER: herd.url, HERD_TOKEN: tokens.dora },
  });
  assert.equal(added.code, 0, added.stdout + added.stderr);
  assert.match(added.stdout, /Added git remote herd: http:\/\/.+\/api\/v1\/tenants\/default\/git\/shop\.git/);
  // The token is not kept in the repository: git asks herd for it.
  const config = execFileSync("git", ["-C", src, "config", "--list", "--local"], { encoding: "utf8" });
  assert.doesNotMatch(config, /herd_pat_/);

  const first = await git("dora", "push", "herd", "main");
  assert.equal(first.code, 0, first.out);
  assert.match(first.out, /remote: -----> Deploying main \([0-9a-f]{7}\) to app shop of tenant default/);
  assert.match(first.out, /remote: -----> Release v1 created \(git push main [0-9a-f]{7}\)/);
  assert.match(first.out, /remote: -----> web: rolling out v1 to 1 instance/);
  assert.match(first.out, /remote: -----> v1 is serving at /);
  // What the builder indents under its steps is indented once, as `herd deploy` prints it.
  assert.match(first.out, /^remote: {8}web: /m);
  assert.doesNotMatch(first.out, /^remote: {15}/m);
  // The gateway has the route a moment after the deploy is done.
  await served(herd, "shop.localhost", "v1");

  // A deploy that fails (herd.yaml does not validate): the push is refused and v1 serves on.
  commit({ "herd.yaml": HERD_YAML.replace("    command", "    instances: lots\n    command") }, "broken");
  const broken = await git("dora", "push", "herd", "main");
  assert.notEqual(broken.code, 0, broken.out);
  assert.match(broken.out, /remote: herd: deploy \w+ failed: /);
  assert.match(broken.out, /! \[remote rejected\] main -> main \(pre-receive hook declined\)/);
  assert.equal((await herd.request("shop.localhost")).body, "v1");

  // Fixed: the next push releases v2 (the failed deploy made no release).
  commit({ "herd.yaml": HERD_YAML, "server.js": server("v2") }, "v2");
  const fixed = await git("dora", "push", "herd", "main");
  assert.equal(fixed.code, 0, fixed.out);
  assert.match(fixed.out, /remote: -----> Release v2 created/);
  // v1 drains: the gateway drops it a moment after the deploy is done; then only v2 answers.
  // (One v2 answer says nothing: v1 and v2 both answer while the deploy rolls.)
  await gatewaysInSync(herd);
  for (let i = 0; i < 5; i++) assert.equal((await herd.request("shop.localhost")).body, "v2");
  const releases = (await herd.api<{ items: Release[] }>("GET", "/apps/shop/releases")).body.items;
  assert.deepEqual(
    releases.map((r) => [r.version, r.createdBy]),
    [
      [2, "user dora"],
      [1, "user dora"],
    ],
  );

  // A viewer may fetch the code but not push it.
  commit({ "server.js": server("v3") }, "v3");
  const viewer = await git("vic", "push", "herd", "main");
  assert.notEqual(viewer.code, 0, viewer.out);
  assert.match(
    viewer.out,
    /herd: user vic is a viewer in tenant default: apps:write needs the deployer role/,
  );
  const fetched = await git("vic", "fetch", "herd");
  assert.equal(fetched.code, 0, fetched.out);
  assert.equal((await herd.request("shop.localhost")).body, "v2");
});
