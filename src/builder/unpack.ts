/**
 * Safe extraction of an untrusted .tar.gz (an uploaded source, or a slug on
 * an agent). The archive is checked entry by entry before anything touches the
 * disk, then extracted into a temp sibling of `dest` and renamed into place, so
 * a rejected or broken archive leaves nothing behind.
 */

import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, rename, rm, rmdir } from "node:fs/promises";
import { basename, dirname, posix } from "node:path";
import { x as extract, Parser, type ReadEntry } from "tar";
import { HerdError } from "../common/errors.ts";

/** Limits for unpackTarball. */
export interface UnpackLimits {
  /** Largest total size of the files in the archive, uncompressed. */
  maxBytes?: number;
  /** Largest number of entries (files, directories, links). */
  maxEntries?: number;
}

const DEFAULT_MAX_BYTES = 2 * 1024 ** 3;
const DEFAULT_MAX_ENTRIES = 200_000;
// Beyond this many hops a symlink chain is treated as a loop (Linux uses 40 too).
const MAX_LINK_HOPS = 40;

const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);
const ALLOWED_TYPES = new Set([...FILE_TYPES, "Directory", "SymbolicLink", "Link"]);

interface EntryInfo {
  type: string;
  /** Normalised path segments, relative to the archive root. */
  parts: string[];
  path: string;
  linkpath?: string;
}

/**
 * Extracts the gzip tarball `file` into `dest` (created, with its parent if
 * needed; it must not exist or be an empty directory). Rejects with
 * HerdError("invalid") naming the entry for absolute paths, `..` segments,
 * links that escape dest, and device or fifo entries; with
 * HerdError("too_large") when the files add up to more than maxBytes or there
 * are more than maxEntries entries. On rejection dest is left untouched.
 */
export async function unpackTarball(file: string, dest: string, options: UnpackLimits = {}): Promise<void> {
  const entries = await listEntries(
    file,
    options.maxBytes ?? DEFAULT_MAX_BYTES,
    options.maxEntries ?? DEFAULT_MAX_ENTRIES,
  );
  checkLinks(entries);

  await mkdir(dirname(dest), { recursive: true });
  // A sibling of dest, so the final rename stays on one file system.
  const staging = await mkdtemp(`${dirname(dest)}/.${basename(dest)}.unpack-`);
  try {
    await extract({ file, cwd: staging, strict: true, preserveOwner: false }).catch((err: Error) => {
      throw new HerdError("invalid", `cannot extract the archive: ${err.message}`);
    });
    // rename() replaces an empty directory but not a full one; say which it was.
    await rmdir(dest).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOTEMPTY" || err.code === "EEXIST") {
        throw new HerdError("conflict", `cannot unpack into ${dest}: it exists and is not empty`);
      }
      if (err.code !== "ENOENT") throw err;
    });
    await rename(staging, dest);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/** Reads every header without extracting, checking each entry on its own; stops at the first problem. */
async function listEntries(file: string, maxBytes: number, maxEntries: number): Promise<EntryInfo[]> {
  const entries: EntryInfo[] = [];
  let total = 0;
  const source = createReadStream(file);
  return new Promise<EntryInfo[]>((resolve, reject) => {
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      source.destroy();
      reject(
        err instanceof HerdError ? err : new HerdError("invalid", `not a valid gzip tarball: ${err.message}`),
      );
    };
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        // Only headers matter here; drain the body so the parser moves on.
        entry.resume();
        if (settled) return;
        try {
          entries.push(checkEntry(entry));
          if (entries.length > maxEntries) {
            throw new HerdError("too_large", `the archive has more than ${maxEntries} entries`);
          }
          if (FILE_TYPES.has(entry.type)) total += entry.size;
          if (total > maxBytes) {
            throw new HerdError(
              "too_large",
              `the archive unpacks to more than ${maxBytes} bytes (limit exceeded at ${entry.path})`,
            );
          }
        } catch (err) {
          fail(err as Error);
        }
      },
    });
    parser.on("error", fail);
    parser.on("end", () => {
      if (settled) return;
      settled = true;
      resolve(entries);
    });
    source.on("error", fail);
    source.pipe(parser as unknown as NodeJS.WritableStream);
  });
}

function checkEntry(entry: ReadEntry): EntryInfo {
  const path = entry.path;
  if (!ALLOWED_TYPES.has(entry.type)) {
    throw new HerdError(
      "invalid",
      `archive entry ${path} is a ${entry.type}; only files, directories and links are allowed`,
    );
  }
  if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) {
    throw new HerdError("invalid", `archive entry ${path} has an absolute path`);
  }
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) {
    throw new HerdError("invalid", `archive entry ${path} has a .. segment`);
  }
  return { type: entry.type, parts, path, linkpath: entry.linkpath };
}

/**
 * Checks links against the whole archive: a symlink may point at another
 * symlink, so escapes are found by resolving targets through the archive's own
 * links, the way the kernel would once everything is on disk.
 */
function checkLinks(entries: EntryInfo[]): void {
  const symlinks = new Map<string, string>();
  for (const e of entries) {
    if (e.type === "SymbolicLink") symlinks.set(e.parts.join("/"), e.linkpath ?? "");
  }
  const throughSymlink = (parts: string[]): boolean => {
    for (let i = 1; i < parts.length; i++) if (symlinks.has(parts.slice(0, i).join("/"))) return true;
    return false;
  };
  for (const e of entries) {
    // Writing below a symlink would write wherever it points.
    if (throughSymlink(e.parts)) {
      throw new HerdError("invalid", `archive entry ${e.path} lies below a symbolic link`);
    }
    if (e.type === "SymbolicLink") {
      const target = e.linkpath ?? "";
      if (
        target === "" ||
        target.startsWith("/") ||
        resolveInside(e.parts.slice(0, -1), target, symlinks, 0) === null
      ) {
        throw new HerdError(
          "invalid",
          `archive entry ${e.path} is a symbolic link to ${target}, outside the archive`,
        );
      }
    } else if (e.type === "Link") {
      // Hard link targets are relative to the archive root, not to the entry.
      const target = e.linkpath ?? "";
      const parts = posix.normalize(target).split("/");
      if (target === "" || target.startsWith("/") || parts[0] === "..") {
        throw new HerdError(
          "invalid",
          `archive entry ${e.path} is a hard link to ${target}, outside the archive`,
        );
      }
      // A hard link to a symlink copies its relative target to a new place, where it may point elsewhere.
      const key = parts.filter((p) => p !== ".").join("/");
      if (throughSymlink(parts) || symlinks.has(key)) {
        throw new HerdError(
          "invalid",
          `archive entry ${e.path} is a hard link through a symbolic link (${target})`,
        );
      }
    }
  }
}

/** Resolves `target` from the directory `from` inside the archive; null when it leaves the root. */
function resolveInside(
  from: string[],
  target: string,
  symlinks: Map<string, string>,
  hops: number,
): string[] | null {
  let current = [...from];
  for (const part of target.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (current.length === 0) return null;
      current.pop();
      continue;
    }
    current.push(part);
    const link = symlinks.get(current.join("/"));
    if (link !== undefined) {
      if (hops >= MAX_LINK_HOPS || link.startsWith("/")) return null;
      const resolved = resolveInside(current.slice(0, -1), link, symlinks, hops + 1);
      if (resolved === null) return null;
      current = resolved;
    }
  }
  return current;
}
