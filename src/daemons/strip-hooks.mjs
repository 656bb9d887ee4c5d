// herd's TypeScript for its daemons, stripped ahead: a cache of each .ts
// file's JavaScript (types replaced by spaces, so lines and columns are the
// file's own), keyed by the file's path and content. A daemon loads this
// module with `--import <this file>?cache=<dir>` (daemons/runtime.ts): it then
// loads every .ts file from the cache, and Node neither loads its own type
// stripper (amaro, about 18 MB for the life of the process) nor keeps a
// compile-cache entry per module in memory (Node's compile cache does: about
// 6 MB in herd up). A file not in the cache yet is stripped here, which loads
// the stripper, and written for the next start.
//
// Plain JavaScript: it is what loads herd's TypeScript, so it must load
// without it. Imported without `?cache=` (daemons/runtime.ts), it only
// exports `stripToCache` and registers nothing.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { registerHooks, stripTypeScriptTypes } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The JavaScript of the TypeScript file `file` (its content `source`) from the
 * cache in `dir`, stripped and written there first when it is not.
 * @param {string} dir
 * @param {string} file
 * @param {string} [source]
 * @returns {string}
 */
export function stripToCache(dir, file, source = readFileSync(file, "utf8")) {
  const cached = join(
    dir,
    `${createHash("sha256").update(file).update("\0").update(source).digest("hex")}.js`,
  );
  try {
    return readFileSync(cached, "utf8");
  } catch {
    // not stripped yet
  }
  // Node's stripper warns that it is experimental, once per process: a daemon's output is not the place.
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  let js;
  try {
    js = stripTypeScriptTypes(source, { mode: "strip" });
  } finally {
    process.emitWarning = emitWarning;
  }
  // temp + rename: a process reading the cache never sees half a file.
  const temp = `${cached}.${process.pid}.tmp`;
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(temp, js);
    renameSync(temp, cached);
  } catch {
    // A cache that cannot be written: this process runs all the same (and strips again next time).
    try {
      rmSync(temp, { force: true });
    } catch {
      // there was no temp file
    }
  }
  return js;
}

const dir = new URL(import.meta.url).searchParams.get("cache");
if (dir !== null) {
  registerHooks({
    load(url, context, nextLoad) {
      if (!url.startsWith("file:") || !url.endsWith(".ts")) return nextLoad(url, context);
      return { format: "module", source: stripToCache(dir, fileURLToPath(url)), shortCircuit: true };
    },
  });
}
