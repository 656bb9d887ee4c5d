import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { Header, type HeaderData } from "tar";
import { HerdError } from "../common/errors.ts";
import { unpackTarball } from "./unpack.ts";

interface RawEntry extends HeaderData {
  body?: string;
}

/** Builds a gzip tarball from raw headers, so tests can write entries no well-behaved tool would. */
function rawTarball(entries: RawEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const { body, ...data } of entries) {
    const content = Buffer.from(body ?? "");
    const header = new Header({ mode: 0o644, mtime: new Date(0), size: content.length, ...data });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block, content, Buffer.alloc((512 - (content.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

describe("unpackTarball", () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "herd-unpack-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  let count = 0;
  const write = async (entries: RawEntry[]): Promise<string> => {
    const file = join(root, `t${++count}.tar.gz`);
    await writeFile(file, rawTarball(entries));
    return file;
  };

  const rejects = async (entries: RawEntry[], code: string, pattern: RegExp, limits = {}): Promise<void> => {
    const file = await write(entries);
    const dest = join(root, `out${count}`, "app");
    await assert.rejects(unpackTarball(file, dest, limits), (err: unknown) => {
      assert.ok(err instanceof HerdError, String(err));
      assert.equal(err.code, code);
      assert.match(err.message, pattern);
      return true;
    });
    // Nothing partial: neither dest nor a staging dir is left.
    assert.deepEqual(await readdir(join(root, `out${count}`)).catch(() => []), []);
  };

  it("extracts files, directories, modes and inside links", async () => {
    const file = await write([
      { path: "./", type: "Directory", mode: 0o755 },
      { path: "bin/", type: "Directory", mode: 0o755 },
      { path: "bin/run", type: "File", mode: 0o755, body: "#!/bin/sh\n" },
      { path: "lib/a.txt", type: "File", body: "hello" },
      { path: "lib/current", type: "SymbolicLink", linkpath: "../bin" },
      { path: "copy.txt", type: "Link", linkpath: "lib/a.txt" },
    ]);
    const dest = join(root, "deep", "parent", "app");
    await unpackTarball(file, dest);
    assert.equal(await readFile(join(dest, "lib/a.txt"), "utf8"), "hello");
    assert.equal(await readFile(join(dest, "copy.txt"), "utf8"), "hello");
    assert.equal(await readlink(join(dest, "lib/current")), "../bin");
    assert.equal((await lstat(join(dest, "bin/run"))).mode & 0o111, 0o111);
    assert.deepEqual((await readdir(join(root, "deep", "parent"))).sort(), ["app"]);
  });

  it("unpacks into an existing empty directory and refuses a full one", async () => {
    const file = await write([{ path: "a.txt", type: "File", body: "a" }]);
    const dest = join(root, "existing");
    await mkdir(dest);
    await unpackTarball(file, dest);
    assert.equal(await readFile(join(dest, "a.txt"), "utf8"), "a");
    await assert.rejects(unpackTarball(file, dest), { code: "conflict" });
    assert.deepEqual(await readdir(root).then((names) => names.filter((n) => n.includes(".unpack-"))), []);
  });

  it("rejects absolute paths", () =>
    rejects([{ path: "/etc/passwd", type: "File", body: "x" }], "invalid", /\/etc\/passwd.*absolute/));

  it("rejects .. segments, after writing good entries first", () =>
    rejects(
      [
        { path: "ok.txt", type: "File", body: "ok" },
        { path: "a/../../evil.txt", type: "File", body: "x" },
      ],
      "invalid",
      /a\/\.\.\/\.\.\/evil\.txt.*\.\./,
    ));

  it("rejects a symlink that points outside", () =>
    rejects(
      [{ path: "a/link", type: "SymbolicLink", linkpath: "../../etc" }],
      "invalid",
      /a\/link.*outside/,
    ));

  it("rejects an absolute symlink", () =>
    rejects([{ path: "link", type: "SymbolicLink", linkpath: "/etc/passwd" }], "invalid", /link.*outside/));

  it("rejects a symlink that escapes through another symlink", () =>
    rejects(
      [
        { path: "here", type: "SymbolicLink", linkpath: "." },
        { path: "up", type: "SymbolicLink", linkpath: "here/.." },
      ],
      "invalid",
      /up.*outside/,
    ));

  it("rejects symlink loops", () =>
    rejects(
      [
        { path: "a", type: "SymbolicLink", linkpath: "b/x" },
        { path: "b", type: "SymbolicLink", linkpath: "a/x" },
      ],
      "invalid",
      /outside/,
    ));

  it("rejects entries below a symlink", () =>
    rejects(
      [
        { path: "dir", type: "SymbolicLink", linkpath: "sub" },
        { path: "dir/file", type: "File", body: "x" },
      ],
      "invalid",
      /dir\/file.*below a symbolic link/,
    ));

  it("rejects a hard link that escapes", () =>
    rejects([{ path: "h", type: "Link", linkpath: "../secret" }], "invalid", /h.*hard link/));

  it("rejects a hard link to a symlink", () =>
    rejects(
      [
        { path: "a/s", type: "SymbolicLink", linkpath: "../x" },
        { path: "h", type: "Link", linkpath: "a/s" },
      ],
      "invalid",
      /h.*hard link through a symbolic link/,
    ));

  it("rejects devices and fifos", async () => {
    await rejects(
      [{ path: "null", type: "CharacterDevice", devmaj: 1, devmin: 3 }],
      "invalid",
      /null.*CharacterDevice/,
    );
    await rejects([{ path: "pipe", type: "FIFO" }], "invalid", /pipe.*FIFO/);
  });

  it("rejects more bytes or entries than allowed", async () => {
    const entries = [
      { path: "a", type: "File" as const, body: "x".repeat(600) },
      { path: "b", type: "File" as const, body: "y".repeat(600) },
    ];
    await rejects(entries, "too_large", /more than 1000 bytes.* b\)/, { maxBytes: 1000 });
    await rejects(entries, "too_large", /more than 1 entries/, { maxEntries: 1 });
  });

  it("rejects a file that is not a gzip tarball", async () => {
    const file = join(root, "garbage.tar.gz");
    await writeFile(file, gzipSync(Buffer.from("this is not a tar file at all".repeat(40))));
    await assert.rejects(unpackTarball(file, join(root, "garbage-out")), { code: "invalid" });
    await assert.rejects(lstat(join(root, "garbage-out")), { code: "ENOENT" });
  });
});
