import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  chownTreeSafely,
  detectSandbox,
  launchArgs,
  launchEnv,
  ownPidsAllowed,
  ROOT_ENV,
  removeTree,
  setAsideForeign,
  VIEW_APP,
  VIEW_DATA,
  viewEnv,
} from "./sandbox.ts";
import { UidMap } from "./uids.ts";

test("paths under bound directories are rewritten to their views, also inside PATH", () => {
  const binds = [
    { host: "/d/instances/i1/app", view: VIEW_APP },
    { host: "/d/volumes/i1", view: VIEW_DATA },
  ];
  const env = viewEnv(
    {
      PATH: "/d/instances/i1/app/node_modules/.bin:/usr/bin",
      HERD_DATA_DIR: "/d/volumes/i1",
      URL: "http://127.0.0.1:7070",
      OTHER: "/d/instances/i1/application",
    },
    binds,
  );
  assert.deepEqual(env, {
    PATH: `${VIEW_APP}/node_modules/.bin:/usr/bin`,
    HERD_DATA_DIR: VIEW_DATA,
    URL: "http://127.0.0.1:7070",
    // A sibling whose name merely starts the same is not under the bound dir.
    OTHER: "/d/instances/i1/application",
  });
});

test("the wrapper joins the cgroups, then runs the command directly or in the sandbox", () => {
  const args = launchArgs("node server.js", ["/cg/memory/herd/i1/cgroup.procs"]);
  assert.deepEqual(args.slice(2), [
    "herd-instance",
    "1",
    "/cg/memory/herd/i1/cgroup.procs",
    "/bin/sh",
    "-c",
    "node server.js",
  ]);
  const sandboxed = launchArgs("node server.js", [], {
    support: { enabled: true, unshare: "/usr/bin/unshare", setpriv: "/usr/bin/setpriv" },
    spec: {
      uid: 1234,
      binds: [{ host: "/h/app", view: VIEW_APP }],
      cwd: VIEW_APP,
      tmpBytes: 64 * 1024 * 1024,
    },
  });
  assert.deepEqual(sandboxed.slice(3, 8), ["0", "/usr/bin/unshare", "--mount", "--propagation", "private"]);
  const keep = sandboxed.at(-4) as string;
  const asUid = sandboxed.at(-3) as string;
  assert.deepEqual(sandboxed.slice(-9), [
    "node server.js",
    "1234",
    String(64 * 1024 * 1024),
    VIEW_APP,
    "/usr/bin/setpriv",
    keep,
    asUid,
    "/h/app",
    VIEW_APP,
  ]);
  assert.match(asUid, /^eval "\$\(cat\)"/, "the last step, as the uid, reads the env from stdin");
  // herd's own directories under /tmp (where a checkout may live) stay visible through the private /tmp.
  for (const dir of keep ? keep.split(":") : []) assert.match(dir, /^\/tmp\//);
  const under = import.meta.dirname.startsWith("/tmp/");
  assert.equal(keep !== "", under, `herd under /tmp: ${under}, kept: ${keep}`);
});

test("sandboxed, the root steps get ROOT_ENV only and the command's env goes on stdin as shell code", () => {
  const env = { PATH: "/app/bin:/usr/bin", LD_PRELOAD: "/x.so", Q: "it's", "not.a.name": "x" };
  assert.deepEqual(launchEnv(env, false), { env });
  const launch = launchEnv(env, true);
  assert.deepEqual(launch.env, ROOT_ENV);
  assert.equal(
    launch.stdin,
    "export PATH='/app/bin:/usr/bin'\nexport LD_PRELOAD='/x.so'\nexport Q='it'\\''s'\nherd_env_read=1\n",
  );
});

test("a data dir another tenant's uid owns is set aside, never handed over; one's own or root's is kept", (t) => {
  if (process.getuid?.() !== 0) return t.skip("chown needs root");
  const root = mkdtempSync(join(tmpdir(), "herd-aside-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const uids = new UidMap(join(root, "uids.json"), { first: 1_900_000_000, count: 10 });
  const acme = uids.uidOf("acme");
  const shop = uids.uidOf("shop");
  const left = join(root, "shop-db-0");
  mkdirSync(left);
  writeFileSync(join(left, "secret"), "acme's");
  chownSync(left, acme, acme);
  const aside = setAsideForeign(uids, shop, left);
  assert.match(aside ?? "", /shop-db-0\.tenant-acme-\d+$/);
  assert.equal(existsSync(left), false);
  assert.equal(readFileSync(join(aside!, "secret"), "utf8"), "acme's");
  // Its own, a fresh one (root's, just made) and a missing one stay where they are.
  const own = join(root, "own");
  mkdirSync(own);
  chownSync(own, shop, shop);
  assert.equal(setAsideForeign(uids, shop, own), undefined);
  const fresh = join(root, "fresh");
  mkdirSync(fresh);
  assert.equal(setAsideForeign(uids, shop, fresh), undefined);
  assert.equal(setAsideForeign(uids, shop, join(root, "missing")), undefined);
  assert.ok(existsSync(own) && existsSync(fresh));
});

test("chownTreeSafely and removeTree never act through a link in the tree", async (t) => {
  if (process.getuid?.() !== 0) return t.skip("chown needs root");
  const root = mkdtempSync(join(tmpdir(), "herd-tree-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const outside = join(root, "outside");
  mkdirSync(outside);
  writeFileSync(join(outside, "keep.txt"), "mine");
  const tree = join(root, "tree");
  mkdirSync(join(tree, "sub"), { recursive: true });
  writeFileSync(join(tree, "sub", "a.txt"), "a");
  symlinkSync(outside, join(tree, "link"));
  await chownTreeSafely([tree], 4321);
  assert.equal(statSync(join(tree, "sub", "a.txt")).uid, 4321);
  assert.equal(lstatSync(join(tree, "link")).uid, 4321, "the link itself is the tenant's");
  assert.equal(statSync(join(outside, "keep.txt")).uid, 0, "what it points at is not");
  await removeTree(tree);
  assert.equal(existsSync(tree), false);
  assert.equal(readFileSync(join(outside, "keep.txt"), "utf8"), "mine");
  await removeTree(join(root, "never-was"));
});

test("with ownPids, what a command leaves running (a new session too) ends with it; without, it lives on", async (t) => {
  const support = detectSandbox();
  if (!support.enabled || !ownPidsAllowed(support)) return t.skip("needs root and a pid namespace");
  const app = mkdtempSync(join(tmpdir(), "herd-pids-"));
  const uid = 1_999_990_001;
  chownSync(app, uid, uid);
  const survivors = () =>
    spawnSync("pgrep", ["-u", String(uid)], { encoding: "utf8" })
      .stdout.split("\n")
      .filter(Boolean)
      .map(Number);
  t.after(() => {
    for (const pid of survivors()) process.kill(pid, "SIGKILL");
    rmSync(app, { recursive: true, force: true });
  });
  const run = (ownPids: boolean) => {
    const spec = { uid, binds: [{ host: app, view: VIEW_APP }], cwd: VIEW_APP, tmpBytes: 1 << 20, ownPids };
    const launch = launchEnv({ ...ROOT_ENV }, true);
    // The daemon keeps no pipe of ours open: the command ends at once.
    const r = spawnSync(
      "/bin/sh",
      launchArgs("setsid sleep 300 </dev/null >/dev/null 2>&1 & echo left", [], { support, spec }),
      {
        encoding: "utf8",
        env: launch.env,
        input: launch.stdin,
        timeout: 10_000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), "left");
  };
  run(false);
  assert.equal(survivors().length, 1, "without its own pids the daemon outlives the command");
  for (const pid of survivors()) process.kill(pid, "SIGKILL");
  await waitUntil(() => survivors().length === 0);
  run(true);
  await waitUntil(() => survivors().length === 0);
  assert.deepEqual(survivors(), []);
});

async function waitUntil(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 50 && !ok(); i++) await new Promise((r) => setTimeout(r, 100));
}
