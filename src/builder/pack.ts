/**
 * Packing a directory into a gzip tarball: the source a developer uploads
 * (ignore files respected) and the slug a builder produces (everything).
 * Entries are relative paths in sorted order with a fixed mtime and no owner,
 * so the same tree always gives the same bytes and the same digest.
 */

import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import ignore, { type Ignore } from "ignore";
import { Pack } from "tar";

/** A tarball written by packDirectory or packAll. */
export interface PackedTarball {
  /** Path of the temp file; the caller deletes it. */
  file: string;
  /** Size of the tarball in bytes. */
  size: number;
  /** sha256 hex of the tarball. */
  digest: string;
  /** Number of entries that are not directories (files and symlinks). */
  files: number;
}

/** Never part of a source: version control, installed dependencies, herd's own state. */
const ALWAYS_EXCLUDED = new Set([".git", "node_modules", ".herd"]);
/** Ignore files read in every directory; rules are relative to the directory that holds them. */
const IGNORE_FILES = [".gitignore", ".herdignore"];
// A fixed mtime keeps digests stable across checkouts and rebuilds.
const FIXED_MTIME = new Date("2000-01-01T00:00:00Z");

/** One entry to pack; a symlink to a directory is not a directory here. */
interface Listed {
  path: string;
  isDir: boolean;
}

interface IgnoreScope {
  /** Directory of the ignore file, relative to the packed root ("" for the root). */
  base: string;
  rules: Ignore;
}

/**
 * Packs the source in `dir` for upload: .gitignore files (root and nested)
 * and .herdignore files are respected; .git, node_modules and .herd are
 * always left out.
 */
export async function packDirectory(dir: string): Promise<PackedTarball> {
  const listed: Listed[] = [];
  await walkSource(dir, "", [], listed);
  return writeTarball(dir, listed);
}

/** Packs everything in `dir`, ignore files and node_modules included: a built slug. */
export async function packAll(dir: string): Promise<PackedTarball> {
  const listed: Listed[] = [];
  await walkAll(dir, "", listed);
  return writeTarball(dir, listed);
}

async function walkSource(root: string, rel: string, scopes: IgnoreScope[], out: Listed[]): Promise<void> {
  const abs = rel ? join(root, rel) : root;
  const entries = (await readdir(abs, { withFileTypes: true })).sort((a, b) => compareNames(a.name, b.name));
  const here = [...scopes];
  const rules = ignore();
  let hasRules = false;
  for (const name of IGNORE_FILES) {
    if (!entries.some((e) => e.name === name && e.isFile())) continue;
    rules.add(await readFile(join(abs, name), "utf8"));
    hasRules = true;
  }
  if (hasRules) here.push({ base: rel, rules });

  for (const entry of entries) {
    if (ALWAYS_EXCLUDED.has(entry.name)) continue;
    const path = rel ? `${rel}/${entry.name}` : entry.name;
    const isDir = entry.isDirectory();
    if (!isDir && !entry.isFile() && !entry.isSymbolicLink()) continue;
    if (isIgnored(here, path, isDir)) continue;
    out.push({ path, isDir });
    // As in git, an ignored directory is not entered, so nothing inside it can be re-included.
    if (isDir) await walkSource(root, path, here, out);
  }
}

async function walkAll(root: string, rel: string, out: Listed[]): Promise<void> {
  const entries = (await readdir(rel ? join(root, rel) : root, { withFileTypes: true })).sort((a, b) =>
    compareNames(a.name, b.name),
  );
  for (const entry of entries) {
    const path = rel ? `${rel}/${entry.name}` : entry.name;
    // Sockets and fifos cannot travel in a tarball an agent accepts.
    if (!entry.isDirectory() && !entry.isFile() && !entry.isSymbolicLink()) continue;
    out.push({ path, isDir: entry.isDirectory() });
    if (entry.isDirectory()) await walkAll(root, path, out);
  }
}

/** Deeper ignore files override shallower ones, and later rules override earlier ones, as in git. */
function isIgnored(scopes: IgnoreScope[], path: string, isDir: boolean): boolean {
  let ignored = false;
  for (const scope of scopes) {
    const relative = scope.base ? path.slice(scope.base.length + 1) : path;
    const result = scope.rules.test(isDir ? `${relative}/` : relative);
    if (result.ignored) ignored = true;
    else if (result.unignored) ignored = false;
  }
  return ignored;
}

/** Byte order, not locale order, so every machine lists the same tree the same way. */
function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

async function writeTarball(dir: string, listed: Listed[]): Promise<PackedTarball> {
  const file = join(tmpdir(), `herd-pack-${randomBytes(8).toString("hex")}.tar.gz`);
  try {
    // Pack.add takes paths literally (tar.c would read "@name" as an archive to merge).
    const pack = new Pack({
      cwd: dir,
      gzip: true,
      portable: true,
      noDirRecurse: true,
      mtime: FIXED_MTIME,
      strict: true,
    });
    for (const { path } of listed) pack.add(path);
    pack.end();
    await pipeline(pack, createWriteStream(file, { flags: "wx" }));
    const hash = createHash("sha256");
    await pipeline(createReadStream(file), hash);
    const files = listed.filter((l) => !l.isDir).length;
    return { file, size: (await stat(file)).size, digest: hash.digest("hex"), files };
  } catch (err) {
    await rm(file, { force: true });
    throw err;
  }
}
