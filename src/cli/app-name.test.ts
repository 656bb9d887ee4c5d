// The app a command acts on when --app is not given: the one the current directory
// deploys as (herd.yaml's app, else package.json's name, else the directory's name).

import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runCli, sendJson, startTestApi, type TestApi } from "./test-api.ts";

let api: TestApi;
let root: string;

before(async () => {
  api = await startTestApi((_req, res) => sendJson(res, 200, { items: [] }));
  root = await mkdtemp(join(tmpdir(), "herd-cli-app-name-"));
});
after(async () => {
  await api.close();
  await rm(root, { recursive: true, force: true });
});

/** Runs `herd ps` in a directory holding `files`; the app it asked about, or its error. */
async function appOf(dir: string, files: Record<string, string>) {
  const cwd = join(root, dir);
  await mkdir(cwd, { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(join(cwd, name), text);
  api.requests.length = 0;
  const r = await runCli(["ps"], { server: api.url, token: "t", cwd });
  const path = api.requests[0] && new URL(api.requests[0].url, "http://x").pathname;
  return { code: r.code, err: r.err, app: path?.split("/")[4] };
}

test("herd.yaml's app, else package.json's name, else the directory's name", async () => {
  const yaml = await appOf("a", {
    "herd.yaml": "app: from-yaml\nservices:\n  web:\n    command: node s.js\n",
    "package.json": '{"name": "from-pkg", "scripts": {"start": "node s.js"}}',
  });
  assert.equal(yaml.app, "from-yaml", yaml.err);
  const pkg = await appOf("b", {
    "package.json": '{"name": "@acme/Shop_Front", "scripts": {"start": "node s.js"}}',
  });
  assert.equal(pkg.app, "shop-front", pkg.err);
  const site = await appOf("my-site", { "index.html": "<h1>hi</h1>" });
  assert.equal(site.app, "my-site", site.err);
});

test("a directory that holds no app asks for --app; a broken one says what is wrong", async () => {
  const none = await appOf("empty", {});
  assert.equal(none.code, 2);
  assert.match(
    none.err,
    /^herd: which app\? pass --app NAME \(or run this in an app's directory: one with a herd\.yaml/,
  );
  const broken = await appOf("broken", { "herd.yaml": "app: x\nservices:\n  web:\n    instances: lots\n" });
  assert.equal(broken.code, 2);
  assert.match(
    broken.err,
    /^herd: which app\? herd\.yaml:4: services\.web\.instances: .*; or pass --app NAME/,
  );
  assert.equal(api.requests.length, 0);
});
