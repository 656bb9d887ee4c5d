import assert from "node:assert/strict";
import { test } from "node:test";
import { launchArgs, VIEW_APP, VIEW_DATA, viewEnv } from "./sandbox.ts";

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
  const keep = sandboxed.at(-3) as string;
  assert.deepEqual(sandboxed.slice(-8), [
    "node server.js",
    "1234",
    String(64 * 1024 * 1024),
    VIEW_APP,
    "/usr/bin/setpriv",
    keep,
    "/h/app",
    VIEW_APP,
  ]);
  // herd's own directories under /tmp (where a checkout may live) stay visible through the private /tmp.
  for (const dir of keep ? keep.split(":") : []) assert.match(dir, /^\/tmp\//);
  const under = import.meta.dirname.startsWith("/tmp/");
  assert.equal(keep !== "", under, `herd under /tmp: ${under}, kept: ${keep}`);
});
