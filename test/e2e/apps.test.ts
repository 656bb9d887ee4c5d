// Apps run the way they would elsewhere. Under a herd whose data dir lies
// inside a Node project with "type": "module" (as `herd up` in herd's own
// checkout has it): a CommonJS server.js without package.json, .mjs and .cjs
// entry points and a "type": "module" app all run; the CommonJS one also under
// a herd run by an unprivileged user (no sandbox: the app sees its real path).
// An app with engines.node "22.x" runs on Node 22 (not herd's 26), fetched
// from the npm registry once; a range nothing satisfies fails the build.

import assert from "node:assert/strict";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { cleanupHerd, type Herd, served, startHerd } from "./harness.ts";

const root = process.getuid?.() === 0;
/** A uid without a sandbox for its apps: herd up as an ordinary user. */
const NOBODY = 65534;
// The pinned major: a Node the npm registry publishes as the `node` package, not herd's own (26).
const PINNED = "22";

const work = mkdtempSync(join(tmpdir(), "herd-apps-"));
let herd: Herd | undefined;
let userHerd: Herd | undefined;

/** A directory like a Node project of herd's own: package.json says "type": "module". */
function moduleProject(name: string): string {
  const dir = join(work, name);
  mkdirSync(join(dir, "node_modules", "leaked"), { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name, type: "module" }));
  writeFileSync(join(dir, "node_modules", "leaked", "index.js"), "module.exports = 'from above';\n");
  return dir;
}

/** Writes an app directory from {file: content}. */
function app(name: string, files: Record<string, string>): string {
  const dir = join(work, "apps", name);
  mkdirSync(dir, { recursive: true });
  for (const [file, content] of Object.entries(files)) writeFileSync(join(dir, file), content);
  return dir;
}

const listen = (what: string) =>
  `.createServer((req, res) => res.end(${what})).listen(Number(process.env.PORT), "127.0.0.1");\n`;
// biome-ignore lint/suspicious/noTemplateCurlyInString: the app's code, evaluated by the app
const CJS = `const http = require("node:http");\nhttp${listen("`cjs ${process.version}`")}`;
const ESM = (label: string) =>
  `import http from "node:http";\nhttp${listen(`"${label} " + process.version`)}`;

before(async () => {
  herd = await startHerd({ dataDir: join(moduleProject("project"), ".herd") });
});
after(async () => {
  await cleanupHerd(herd);
  await cleanupHerd(userHerd);
  rmSync(work, { recursive: true, force: true });
});

async function deployAndGet(h: Herd, name: string, dir: string): Promise<string> {
  const r = await h.cli(["deploy", dir, "--app", name], { timeoutMs: 240_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr + h.output().slice(-3000));
  // The gateway has the route a moment after the deploy is done.
  return served(h, `${name}.localhost`, /\S/);
}

test("a CommonJS server.js without package.json runs, under a data dir in a type: module project", async () => {
  const dir = app("cjs", { "server.js": CJS, Procfile: "web: node server.js\n" });
  assert.match(await deployAndGet(herd!, "cjs", dir), /^cjs v26\./);
});

test(".mjs and .cjs entry points and a type: module app run as they would elsewhere", async () => {
  const mjs = app("mjs", { "server.mjs": ESM("mjs"), Procfile: "web: node server.mjs\n" });
  assert.match(await deployAndGet(herd!, "mjs", mjs), /^mjs v/);
  const cjs = app("cjsext", { "server.cjs": CJS, Procfile: "web: node server.cjs\n" });
  assert.match(await deployAndGet(herd!, "cjsext", cjs), /^cjs v/);
  const esm = app("esm", {
    "server.js": ESM("esm"),
    "package.json": JSON.stringify({ name: "esm", type: "module", scripts: { start: "node server.js" } }),
  });
  assert.match(await deployAndGet(herd!, "esm", esm), /^esm v/);
});

test(`engines.node "${PINNED}.x": the app runs on Node ${PINNED}, fetched once`, async () => {
  const pkg = (version: string) =>
    JSON.stringify({
      name: "pinned",
      version,
      engines: { node: `${PINNED}.x` },
      scripts: { start: "node server.js" },
    });
  const dir = app("pinned", { "server.js": CJS, "package.json": pkg("1.0.0") });
  const first = await herd!.cli(["deploy", dir, "--app", "pinned"], { timeoutMs: 300_000 });
  assert.equal(first.code, 0, first.stdout + first.stderr);
  assert.match(first.stdout, new RegExp(`Node v${PINNED}\\.\\d+\\.\\d+ \\(engines.node "${PINNED}.x"`));
  assert.match(first.stdout, /fetching node-linux-\w+@/);
  assert.match(await served(herd!, "pinned.localhost", /\S/), new RegExp(`^cjs v${PINNED}\\.`));

  // A second build of the same range: nothing fetched, the same Node.
  writeFileSync(join(dir, "package.json"), pkg("1.0.1"));
  const second = await herd!.cli(["deploy", dir, "--app", "pinned"], { timeoutMs: 300_000 });
  assert.equal(second.code, 0, second.stdout + second.stderr);
  assert.match(second.stdout, /fetched by an earlier build/);
  assert.doesNotMatch(second.stdout, /fetching node-/);
  assert.match((await herd!.request("pinned.localhost")).body, new RegExp(`^cjs v${PINNED}\\.`));
});

test("an engines.node no published Node satisfies fails the build and names engines.node", async () => {
  const dir = app("nonode", {
    "server.js": CJS,
    "package.json": JSON.stringify({
      name: "nonode",
      engines: { node: "99.x" },
      scripts: { start: "node server.js" },
    }),
  });
  const r = await herd!.cli(["deploy", dir, "--app", "nonode"]);
  assert.notEqual(r.code, 0);
  assert.match(r.stdout + r.stderr, /no published Node version satisfies engines\.node "99\.x"/);
});

test("as an unprivileged user (no sandbox), a CommonJS server.js still runs", {
  skip: !root && "needs root to start herd as another user",
}, async () => {
  const project = moduleProject("user-project");
  chmodSync(work, 0o755);
  const dataDir = join(project, ".herd");
  mkdirSync(dataDir);
  chownSync(dataDir, NOBODY, NOBODY);
  userHerd = await startHerd({ dataDir, uid: NOBODY });
  const dir = app("cjs-user", { "server.js": CJS, Procfile: "web: node server.js\n" });
  assert.match(await deployAndGet(userHerd, "cjsuser", dir), /^cjs v26\./);
  // What no file can hide without the sandbox is said once.
  assert.match(userHerd.output(), /node_modules above the data dir/);
});
