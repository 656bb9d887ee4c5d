// The packages of a built app, as npm recorded them: lockfile versions 1 and
// 2/3, links to file: directories and workspaces, aliases, dev packages left
// out, odd entries skipped; the hidden lockfile preferred over the source's.

import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { findLockfile, parseLockfile, readInstalledPackages } from "./lockfile.ts";
import { versionMatches } from "./versions.ts";

test("v3 packages: nested and scoped paths, links followed, aliases by their real name, dev and extraneous left out", () => {
  const text = JSON.stringify({
    lockfileVersion: 3,
    packages: {
      "": { name: "app", version: "1.0.0" },
      "node_modules/express": { version: "4.18.2" },
      "node_modules/express/node_modules/debug": { version: "2.6.9" },
      "node_modules/debug": { version: "4.3.4" },
      "node_modules/@scope/util": { version: "0.1.0" },
      "node_modules/greet": { resolved: "vendor/greet", link: true },
      "vendor/greet": { version: "1.2.3" },
      "node_modules/ws": { resolved: "packages/ws", link: true },
      "packages/ws": { name: "@acme/ws", version: "2.0.0" },
      "node_modules/old": { name: "lodash", version: "3.10.1" },
      "node_modules/mocha": { version: "10.0.0", dev: true },
      "node_modules/tool": { resolved: "vendor/tool", link: true },
      "vendor/tool": { version: "1.0.0", dev: true },
      "node_modules/stray": { version: "1.0.0", extraneous: true },
      "node_modules/broken": { resolved: "nowhere", link: true },
      "node_modules/noversion": {},
      "node_modules/weird": { version: 7 },
      "node_modules/list": ["not", "an", "object"],
    },
  });
  assert.deepEqual(parseLockfile(text), [
    { name: "@acme/ws", version: "2.0.0" },
    { name: "@scope/util", version: "0.1.0" },
    { name: "debug", version: "2.6.9" },
    { name: "debug", version: "4.3.4" },
    { name: "express", version: "4.18.2" },
    { name: "greet", version: "1.2.3" },
    { name: "lodash", version: "3.10.1" },
  ]);
});

test("v1 dependencies: the tree walked, dev left out, aliases by their real name, one entry per name and version", () => {
  const text = JSON.stringify({
    lockfileVersion: 1,
    dependencies: {
      express: {
        version: "4.17.1",
        dependencies: { debug: { version: "2.6.9" }, ms: { version: "2.0.0" } },
      },
      debug: { version: "2.6.9" },
      legacy: { version: "npm:lodash@4.17.21" },
      mocha: { version: "8.0.0", dev: true, dependencies: { ms: { version: "9.9.9" } } },
    },
  });
  assert.deepEqual(parseLockfile(text), [
    { name: "debug", version: "2.6.9" },
    { name: "express", version: "4.17.1" },
    { name: "lodash", version: "4.17.21" },
    { name: "ms", version: "2.0.0" },
  ]);
});

test("text that is not a JSON object is refused; an object with neither field has no packages", () => {
  assert.throws(() => parseLockfile("{"), SyntaxError);
  assert.throws(() => parseLockfile("[1]"), /not a JSON object/);
  assert.deepEqual(parseLockfile('{"name":"x"}'), []);
});

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function app(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "herd-lockfile-"));
  dirs.push(dir);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(dir, path, ".."), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}
const lock = (packages: Record<string, unknown>) => JSON.stringify({ lockfileVersion: 3, packages });

test("readInstalledPackages: npm's record of the install first, then the lockfile, else nothing", async () => {
  const installed = await app({
    "package-lock.json": lock({
      "node_modules/a": { version: "1.0.0" },
      "node_modules/b": { version: "1.0.0" },
    }),
    "node_modules/.package-lock.json": lock({ "node_modules/a": { version: "1.0.0" } }),
  });
  assert.equal(await findLockfile(installed), "package-lock.json");
  assert.deepEqual(await readInstalledPackages(installed, "package-lock.json"), {
    lockfile: "package-lock.json",
    from: "node_modules/.package-lock.json",
    packages: [{ name: "a", version: "1.0.0" }],
  });

  const shrinkwrapped = await app({
    "npm-shrinkwrap.json": lock({ "node_modules/s": { version: "2.0.0" } }),
    "package-lock.json": lock({ "node_modules/p": { version: "1.0.0" } }),
  });
  assert.equal(await findLockfile(shrinkwrapped), "npm-shrinkwrap.json");
  assert.deepEqual(await readInstalledPackages(shrinkwrapped, "npm-shrinkwrap.json"), {
    lockfile: "npm-shrinkwrap.json",
    from: "npm-shrinkwrap.json",
    packages: [{ name: "s", version: "2.0.0" }],
  });

  // npm install without a lockfile writes one: it is read, but the source had none.
  const unlocked = await app({ "package-lock.json": lock({ "node_modules/u": { version: "3.0.0" } }) });
  assert.deepEqual(await readInstalledPackages(unlocked, null), {
    lockfile: null,
    from: "package-lock.json",
    packages: [{ name: "u", version: "3.0.0" }],
  });

  const plain = await app({ "index.html": "" });
  assert.equal(await findLockfile(plain), null);
  assert.deepEqual(await readInstalledPackages(plain, null), {
    lockfile: null,
    from: null,
    packages: [],
  });

  const broken = await readInstalledPackages(
    await app({ "package-lock.json": "{ not json" }),
    "package-lock.json",
  );
  assert.equal(broken.from, "package-lock.json");
  assert.match(broken.problem ?? "", /^package-lock\.json: /);

  // An install script that points npm's record at a file of the control plane's gets it refused, not read.
  const secret = await app({ "secret.json": lock({ "node_modules/leak": { version: "1.0.0" } }) });
  const sneaky = await app({ "package-lock.json": lock({}) });
  await mkdir(join(sneaky, "node_modules"));
  await symlink(join(secret, "secret.json"), join(sneaky, "node_modules/.package-lock.json"));
  const refused = await readInstalledPackages(sneaky, "package-lock.json");
  assert.deepEqual(refused.packages, []);
  assert.equal(refused.problem, "node_modules/.package-lock.json leads outside the app");
});

test("versionMatches: exact versions, npm ranges, and non-semver versions only as the same text", () => {
  assert.ok(versionMatches("4.17.21", "4.17.21"));
  assert.ok(versionMatches("4.17.21", "^4.17"));
  assert.ok(versionMatches("4.17.21", ">=4 <5"));
  assert.ok(versionMatches("4.17.21", "4.x"));
  assert.ok(!versionMatches("4.17.20", "4.17.21"));
  assert.ok(!versionMatches("5.0.0", "^4"));
  assert.ok(!versionMatches("2.0.0-beta.1", "^2"), "a prerelease is not in a plain range (npm's rule)");
  assert.ok(versionMatches("file:vendor/x", "file:vendor/x"));
  assert.ok(!versionMatches("file:vendor/x", "*"));
});
