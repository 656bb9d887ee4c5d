// herd's TypeScript for its daemons, stripped ahead: a cache of each .ts
// file's JavaScript (types replaced by spaces, so lines keep their numbers),
// keyed by the file's path and content. A daemon loads this module with
// `--import <this file>?cache=<dir>` (daemons/runtime.ts): it then loads
// every .ts file from the cache, and Node neither loads its own type stripper
// (amaro, about 18 MB for the life of the process) nor keeps a compile-cache
// entry per module in memory (Node's compile cache does: about 6 MB in herd up).
//
// A file of herd's src/ missing from the cache (a first start, a changed
// file) has a short child process strip every file of src/ that is missing,
// so the daemon never loads the stripper itself; any other .ts file is
// stripped in the process.
//
// Plain JavaScript: it is what loads herd's TypeScript, so it must load
// without it. Imported without `?cache=`, it registers nothing.

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { registerHooks, stripTypeScriptTypes } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** herd's sources: what a missing file has stripped all at once. */
const SRC = fileURLToPath(new URL("../", import.meta.url));

/** Part of every key: a change to what is written (asciiOnly) strips everything again. */
const FORMAT = "strip+ascii 2";

/**
 * Where the JavaScript of `file` (its content `source`) is kept in the cache `dir`.
 * @param {string} dir
 * @param {string} file
 * @param {string} source
 */
function cachePath(dir, file, source) {
  const key = createHash("sha256").update(FORMAT).update("\0").update(file).update("\0").update(source);
  return join(dir, `${key.digest("hex")}.js`);
}

/**
 * The cached JavaScript of `file`, or undefined.
 * @param {string} dir
 * @param {string} file
 * @param {string} source
 * @returns {string | undefined}
 */
function cached(dir, file, source) {
  try {
    return readFileSync(cachePath(dir, file, source), "utf8");
  } catch {
    return undefined;
  }
}

/**
 * Strips `file` (its content `source`) and writes it to the cache `dir`; returns the JavaScript.
 * Loads Node's stripper into this process.
 * @param {string} dir
 * @param {string} file
 * @param {string} source
 * @returns {string}
 */
function strip(dir, file, source) {
  // Node's stripper warns that it is experimental, once per process: a daemon's output is not the place.
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  let js;
  try {
    // Escaped before stripping: the stripper blanks a type of non-ASCII text with non-ASCII spaces.
    js = stripTypeScriptTypes(asciiOnly(source), { mode: "strip" });
  } finally {
    process.emitWarning = emitWarning;
  }
  const target = cachePath(dir, file, source);
  // temp + rename: a process reading the cache never sees half a file.
  const temp = `${target}.${process.pid}.tmp`;
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(temp, js);
    renameSync(temp, target);
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

/** Entries of other files (older versions, other checkouts) are removed after this long. */
const KEEP_MS = 7 * 24 * 3600 * 1000;

/**
 * Strips every .ts file under `root` (tests aside) that the cache `dir` lacks,
 * marks the entries of the others as in use (their modification time), and
 * removes the entries not in use for KEEP_MS. Run by the child process a
 * daemon starts on a miss.
 * @param {string} root
 * @param {string} dir
 */
export function stripTree(root, dir) {
  const now = new Date();
  for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith(".ts") || entry.name.endsWith(".test.ts")) continue;
    const file = join(entry.parentPath, entry.name);
    const source = readFileSync(file, "utf8");
    if (cached(dir, file, source) === undefined) strip(dir, file, source);
    else touch(cachePath(dir, file, source), now);
  }
  let names = [];
  try {
    names = readdirSync(dir);
  } catch {
    // no cache (it could not be written)
  }
  for (const name of names) {
    try {
      const path = join(dir, name);
      if (now.getTime() - statSync(path).mtimeMs > KEEP_MS) rmSync(path, { force: true });
    } catch {
      // removed by another process meanwhile
    }
  }
}

/**
 * Marks a cache entry as in use; a cache that cannot be written keeps its times.
 * @param {string} path
 * @param {Date} now
 */
function touch(path, now) {
  try {
    utimesSync(path, now, now);
  } catch {
    // read-only
  }
}

/**
 * `ts` with every non-ASCII character as a `\uXXXX` escape (per UTF-16 unit): V8 keeps each
 * module's source for the life of the process, and one with a single non-ASCII character (a "—"
 * in a comment) is held at two bytes per character. The escape means the same character in a
 * string, template, regular expression or identifier, and is plain text in a comment; lines keep
 * their numbers (columns after an escaped character shift). Unicode spaces and line breaks stay,
 * since outside a string they are not characters an escape may stand for.
 * @param {string} ts
 * @returns {string}
 */
function asciiOnly(ts) {
  return ts.replace(/[\u0080-\uffff]/g, (c) =>
    /\s/.test(c) ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * Built-ins that packages require when they load but that herd's control
 * plane uses only for HTTPS or HTTP/2 (Fastify's server.js requires node:https
 * and node:http2, prom-client's Pushgateway node:https): those packages get a
 * stand-in that requires the real module at its first use. node:https,
 * node:tls and node:http2 together cost a process about 3.5 MB, and herd up's
 * control plane serves and calls plain HTTP (herd's own modules take them on
 * first use too: common/node-http.ts).
 */
const LAZY_BUILTINS = new Set(["https", "http2", "tls"]);
const LAZY_FOR = ["/node_modules/fastify/", "/node_modules/prom-client/"];
/** The stand-ins' URLs: one file name per built-in (CommonJS caches modules by file name); no such files exist. */
const STAND_IN = new URL("./lazy-builtin-", import.meta.url).href;

/**
 * The stand-in's source for the built-in `name`: an object that forwards every
 * property read to the real module, loaded on the first.
 * @param {string} name
 */
function standIn(name) {
  return `"use strict";
let real;
const load = () => (real ??= require("node:${name}"));
module.exports = new Proxy({}, {
  get: (_, key) => load()[key],
  has: (_, key) => key in load(),
  ownKeys: () => Reflect.ownKeys(load()),
  getOwnPropertyDescriptor: (_, key) => {
    const d = Object.getOwnPropertyDescriptor(load(), key);
    return d && { ...d, configurable: true };
  },
});
`;
}

const dir = new URL(import.meta.url).searchParams.get("cache");
if (dir !== null) {
  let treeStripped = false;
  registerHooks({
    resolve(specifier, context, nextResolve) {
      const name = specifier.startsWith("node:") ? specifier.slice(5) : specifier;
      const parent = context.parentURL ?? "";
      if (
        LAZY_BUILTINS.has(name) &&
        context.conditions?.includes("require") &&
        LAZY_FOR.some((pkg) => parent.includes(pkg))
      ) {
        return { url: `${STAND_IN}${name}.cjs`, format: "commonjs", shortCircuit: true };
      }
      return nextResolve(specifier, context);
    },
    load(url, context, nextLoad) {
      if (url.startsWith(STAND_IN)) {
        return { format: "commonjs", source: standIn(url.slice(STAND_IN.length, -4)), shortCircuit: true };
      }
      if (!url.startsWith("file:") || !url.endsWith(".ts")) return nextLoad(url, context);
      const file = fileURLToPath(url);
      const source = readFileSync(file, "utf8");
      let js = cached(dir, file, source);
      if (js === undefined && !treeStripped && file.startsWith(SRC)) {
        treeStripped = true;
        spawnSync(
          process.execPath,
          [
            "--input-type=module",
            "-e",
            `(await import(${JSON.stringify(import.meta.resolve("./strip-hooks.mjs"))})).stripTree(${JSON.stringify(SRC)}, ${JSON.stringify(dir)});`,
          ],
          { stdio: "ignore", timeout: 120_000 },
        );
        js = cached(dir, file, source);
      }
      return { format: "module", source: js ?? strip(dir, file, source), shortCircuit: true };
    },
  });
}
