import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { list } from "tar";
import { packAll, packDirectory } from "./pack.ts";

async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
}

async function entriesOf(file: string): Promise<string[]> {
  const names: string[] = [];
  await list({ file, onReadEntry: (e) => names.push(e.path) });
  return names;
}

describe("packDirectory and packAll", () => {
  let root: string;
  let src: string;
  const tarballs: string[] = [];
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "herd-pack-test-"));
    src = join(root, "src");
    await writeTree(src, {
      "package.json": "{}",
      "server.js": "// app",
      "@scoped.txt": "not an archive",
      ".gitignore": "*.log\n/build\n",
      ".herdignore": "tmp/\n",
      "debug.log": "x",
      "build/out.js": "x",
      "tmp/cache": "x",
      "sub/.gitignore": "secret.txt\n!keep.log\n/local\n",
      "sub/secret.txt": "x",
      "sub/keep.log": "kept: re-included by the nested file",
      "sub/code.js": "x",
      "sub/local/x": "x",
      "sub/deeper/local/y": "nested /local is anchored to sub/, so this stays",
      "sub/deeper/build/z": "root /build is anchored to the root, so this stays",
      "node_modules/dep/index.js": "x",
      "sub/node_modules/dep/index.js": "x",
      ".git/HEAD": "x",
      ".herd/state": "x",
    });
    await symlink("server.js", join(src, "link.js"));
  });
  after(async () => {
    for (const file of tarballs) await rm(file, { force: true });
    await rm(root, { recursive: true, force: true });
  });

  it("respects root and nested .gitignore and .herdignore, and always leaves out .git, node_modules and .herd", async () => {
    const packed = await packDirectory(src);
    tarballs.push(packed.file);
    const names = await entriesOf(packed.file);
    assert.deepEqual(names, [
      ".gitignore",
      ".herdignore",
      "@scoped.txt",
      "link.js",
      "package.json",
      "server.js",
      "sub/",
      "sub/.gitignore",
      "sub/code.js",
      "sub/deeper/",
      "sub/deeper/build/",
      "sub/deeper/build/z",
      "sub/deeper/local/",
      "sub/deeper/local/y",
      "sub/keep.log",
    ]);
    assert.equal(packed.files, 11);
    assert.equal(packed.size, (await stat(packed.file)).size);
    const digest = createHash("sha256")
      .update(await readFile(packed.file))
      .digest("hex");
    assert.equal(packed.digest, digest);
  });

  it("gives the same digest for the same tree, whatever the mtimes", async () => {
    const first = await packDirectory(src);
    tarballs.push(first.file);
    await utimes(join(src, "server.js"), new Date(), new Date(Date.now() - 86_400_000));
    const second = await packDirectory(src);
    tarballs.push(second.file);
    assert.equal(first.digest, second.digest);
    assert.notEqual(first.file, second.file);
  });

  it("packAll includes everything, node_modules too", async () => {
    const packed = await packAll(src);
    tarballs.push(packed.file);
    const names = await entriesOf(packed.file);
    for (const name of [
      "node_modules/dep/index.js",
      "debug.log",
      "tmp/cache",
      ".git/HEAD",
      ".herd/state",
      "sub/local/x",
    ]) {
      assert.ok(names.includes(name), `${name} missing from ${names.join(", ")}`);
    }
    assert.ok(names.every((n) => !n.startsWith("/") && !n.startsWith("./")));
  });
});
