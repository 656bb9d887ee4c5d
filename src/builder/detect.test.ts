import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { HerdError } from "../common/errors.ts";
import { loadAppDefinition, STATIC_SERVER_COMMAND } from "./detect.ts";

const hello = new URL("../../examples/hello/", import.meta.url).pathname;

describe("loadAppDefinition", () => {
  let root: string;
  let count = 0;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "herd-detect-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const app = async (files: Record<string, string>, name = `app${++count}`): Promise<string> => {
    const dir = join(root, name);
    await mkdir(dir, { recursive: true });
    for (const [path, text] of Object.entries(files)) await writeFile(join(dir, path), text);
    return dir;
  };

  const invalid = (pattern: RegExp) => (err: unknown) => {
    assert.ok(err instanceof HerdError, String(err));
    assert.equal(err.code, "invalid");
    assert.match(err.message, pattern);
    return true;
  };

  it("reads examples/hello from its herd.yaml", async () => {
    const def = await loadAppDefinition(hello);
    assert.equal(def.app, "hello");
    assert.equal(def.kind, "manifest");
    assert.deepEqual(Object.keys(def.services), ["web"]);
    const web = def.services.web;
    assert.equal(web.command, "node server.js");
    assert.equal(web.instances, 2);
    assert.equal(web.resources.memory, 128 * 1024 * 1024);
    assert.equal(web.health.path, "/healthz");
    assert.deepEqual(web.env, { GREETING: "hi" });
    assert.deepEqual(web.routes, [{ host: "hello.localhost", path: "/" }]);
  });

  it("fills a missing command from the Procfile entry of the same name, then the start script", async () => {
    const dir = await app({
      "herd.yml": "app: shop\nservices:\n  web: {}\n  worker: { instances: 2 }\n",
      Procfile: "worker: node worker.js\n",
      "package.json": JSON.stringify({ name: "ignored", scripts: { start: "node web.js" } }),
    });
    const def = await loadAppDefinition(dir);
    assert.equal(def.app, "shop");
    assert.equal(def.services.web.command, "node web.js");
    assert.deepEqual(def.services.web.routes, [{ host: "shop.localhost", path: "/" }]);
    assert.equal(def.services.worker.command, "node worker.js");
    assert.deepEqual(def.services.worker.routes, []);
  });

  it("says which file, field and line of herd.yaml are wrong", async () => {
    const dir = await app({
      "herd.yaml": "services:\n  web:\n    command: node a.js\n    instances: lots\n",
    });
    await assert.rejects(loadAppDefinition(dir), invalid(/^herd\.yaml:4: services\.web\.instances: /));
    const noCommand = await app({ "herd.yaml": "services:\n  web: {}\n" });
    await assert.rejects(loadAppDefinition(noCommand), invalid(/service web has no command/));
    const badYaml = await app({ "herd.yml": "services:\n  web: [\n" });
    // parseManifest does not report a line for YAML syntax errors yet (it parses with prettyErrors off).
    await assert.rejects(loadAppDefinition(badYaml), invalid(/^herd\.yml(:\d+)?: not valid YAML/));
  });

  it("detects a node app from its start script, naming it after package.json", async () => {
    const dir = await app({
      "package.json": JSON.stringify({ name: "@acme/My_Shop", scripts: { start: "node index.js" } }),
    });
    const def = await loadAppDefinition(dir);
    assert.equal(def.app, "my-shop");
    assert.equal(def.kind, "node");
    assert.equal(def.services.web.command, "node index.js");
    assert.deepEqual(def.services.web.routes, [{ host: "my-shop.localhost", path: "/" }]);
    assert.equal(def.services.web.instances, 1);
  });

  it("runs a server.js with node, as npm start does without a start script, with or without package.json", async () => {
    const bare = await loadAppDefinition(await app({ "server.js": "require('http')" }, "Bare_App"));
    assert.equal(bare.app, "bare-app");
    assert.equal(bare.kind, "node");
    assert.equal(bare.services.web.command, "node server.js");
    const named = await loadAppDefinition(
      await app({ "server.js": "", "package.json": JSON.stringify({ name: "shop" }) }),
    );
    assert.deepEqual([named.app, named.services.web.command], ["shop", "node server.js"]);
    // A start script says otherwise, and wins.
    const script = await loadAppDefinition(
      await app({ "server.js": "", "package.json": JSON.stringify({ scripts: { start: "node app.js" } }) }),
    );
    assert.equal(script.services.web.command, "node app.js");
    // herd.yaml without a command takes it too.
    const manifest = await loadAppDefinition(
      await app({ "server.js": "", "herd.yaml": "app: m\nservices:\n  web: {}\n" }),
    );
    assert.equal(manifest.services.web.command, "node server.js");
  });

  it("a herd.yaml without services: runs what was detected, with its release, jobs and alerts", async () => {
    const shop = await loadAppDefinition(
      await app({
        "package.json": JSON.stringify({ name: "shop", scripts: { start: "node server.js" } }),
        Procfile: "worker: node worker.js\n",
        "herd.yaml":
          'release: node migrate.js\njobs:\n  tick:\n    schedule: "@hourly"\n    command: echo tick\n',
      }),
    );
    assert.equal(shop.kind, "manifest");
    assert.deepEqual(
      Object.fromEntries(Object.entries(shop.services).map(([name, s]) => [name, s.command])),
      { worker: "node worker.js", web: "node server.js" },
    );
    assert.equal(shop.services.web.release?.command, "node migrate.js");
    assert.deepEqual(Object.keys(shop.services.web.jobs ?? {}), ["tick"]);
    assert.deepEqual(shop.services.web.routes, [{ host: "shop.localhost", path: "/" }]);
    // An empty herd.yaml, or one that names the app only; a static site keeps its server.
    const site = await loadAppDefinition(
      await app({ "index.html": "<p>hi</p>", "herd.yaml": "app: site\n" }),
    );
    assert.deepEqual(
      [site.app, site.kind, site.services.web.command],
      ["site", "static", STATIC_SERVER_COMMAND],
    );
    const empty = await loadAppDefinition(await app({ "server.js": "", "herd.yaml": "" }, "empty"));
    assert.deepEqual([empty.app, empty.services.web.command], ["empty", "node server.js"]);
    // Nothing to take them from: the message says what to write, or what herd would read.
    await assert.rejects(
      loadAppDefinition(await app({ "herd.yaml": "release: node migrate.js\n" })),
      invalid(
        /^herd\.yaml:1: services: is missing: give each service its command .*a Procfile, a package\.json start script/,
      ),
    );
  });

  it("detects a Procfile, adding web from the start script when the Procfile has none", async () => {
    const dir = await app(
      {
        Procfile: "# processes\n\nworker: node worker.js --queue jobs\nclock:node clock.js\n",
        "package.json": JSON.stringify({ scripts: { start: "node web.js" } }),
      },
      "Proc_App",
    );
    const def = await loadAppDefinition(dir);
    assert.equal(def.app, "proc-app");
    assert.equal(def.kind, "procfile");
    assert.deepEqual(Object.fromEntries(Object.entries(def.services).map(([name, s]) => [name, s.command])), {
      worker: "node worker.js --queue jobs",
      clock: "node clock.js",
      web: "node web.js",
    });
  });

  it("reports a bad Procfile line", async () => {
    await assert.rejects(
      loadAppDefinition(await app({ Procfile: "web: a\njust words\n" })),
      invalid(/^Procfile:2: expected/),
    );
    await assert.rejects(
      loadAppDefinition(await app({ Procfile: "Web_1: a\n" })),
      invalid(/^Procfile:1: process name Web_1/),
    );
    await assert.rejects(
      loadAppDefinition(await app({ Procfile: "web: a\nweb: b\n" })),
      invalid(/^Procfile:2: .*twice/),
    );
  });

  it("detects a static site from index.html", async () => {
    const dir = await app({ "index.html": "<h1>hi</h1>", "package.json": JSON.stringify({ name: "site" }) });
    const def = await loadAppDefinition(dir, { app: "docs" });
    assert.equal(def.app, "docs");
    assert.equal(def.kind, "static");
    assert.equal(def.services.web.command, STATIC_SERVER_COMMAND);
    assert.deepEqual(def.services.web.routes, [{ host: "docs.localhost", path: "/" }]);
  });

  it("lists what it looked for when nothing is detectable", async () => {
    const dir = await app({ "README.md": "nothing to run", "package.json": "{}" });
    await assert.rejects(
      loadAppDefinition(dir),
      invalid(/herd\.yaml.*Procfile.*start script.*server\.js.*index\.html/),
    );
  });

  it("rejects names that cannot be made valid, and broken package.json", async () => {
    const dir = await app({ "index.html": "x" }, "123");
    await assert.rejects(loadAppDefinition(dir), invalid(/app name from the directory name "123"/));
    await assert.rejects(
      loadAppDefinition(dir, { app: "Bad Name" }),
      invalid(/app name "Bad Name" is not valid/),
    );
    const numeric = await app({ "index.html": "x", "package.json": JSON.stringify({ name: "42" }) });
    await assert.rejects(loadAppDefinition(numeric), invalid(/package\.json name "42"/));
    const broken = await app({ "package.json": "{ nope" });
    await assert.rejects(loadAppDefinition(broken), invalid(/package\.json is not valid JSON/));
  });
});
