/**
 * The npm packages a built app ships, read from npm's own records after the
 * install: `node_modules/.package-lock.json` (what npm installed, dev
 * packages already left out by --omit=dev), else the source's lockfile
 * (`npm-shrinkwrap.json` or `package-lock.json`) without its dev packages.
 * Lockfile versions 1 (`dependencies` tree) and 2/3 (`packages` by path) are
 * read. The files are the app's (its install scripts could write them), so
 * they are parsed as untrusted input: bounded in size, odd entries skipped.
 */

import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { PackageRef, SlugPackages } from "../model/catalog.ts";

/** Lockfiles the builder installs from, in npm's order of preference. */
export const LOCKFILES = ["npm-shrinkwrap.json", "package-lock.json"] as const;
/** npm's record of the tree it installed. */
export const HIDDEN_LOCKFILE = "node_modules/.package-lock.json";

/** Largest lockfile read (bytes); a bigger one is recorded as unreadable. */
const MAX_LOCKFILE_BYTES = 64 * 1024 * 1024;
/** Most packages kept for one slug. */
export const MAX_PACKAGES = 50_000;
const MAX_NAME = 214;
const MAX_VERSION = 256;

/**
 * The packages installed in `appDir` (an app after `npm ci`/`npm install`).
 * `from` null and no packages when there is no package.json or nothing was
 * installed. Throws only for I/O errors other than a missing file; a
 * lockfile that is not JSON yields the error's message in `problem`.
 */
export async function readInstalledPackages(appDir: string): Promise<SlugPackages & { problem?: string }> {
  let lockfile: string | null = null;
  for (const name of LOCKFILES) {
    if (await isFile(join(appDir, name))) {
      lockfile = name;
      break;
    }
  }
  for (const from of [HIDDEN_LOCKFILE, lockfile]) {
    if (from === null) continue;
    const path = join(appDir, from);
    if (!(await isFile(path))) continue;
    if ((await stat(path)).size > MAX_LOCKFILE_BYTES) {
      return { lockfile, from, packages: [], problem: `${from} is larger than ${MAX_LOCKFILE_BYTES} bytes` };
    }
    try {
      return { lockfile, from, packages: parseLockfile(await readFile(path, "utf8")) };
    } catch (err) {
      return { lockfile, from, packages: [], problem: `${from}: ${(err as Error).message}` };
    }
  }
  return { lockfile, from: null, packages: [] };
}

/**
 * The packages of a lockfile's text (v1, v2 or v3; a hidden lockfile too),
 * without dev packages, unique and sorted. Throws when the text is not a
 * JSON object.
 */
export function parseLockfile(text: string): PackageRef[] {
  const doc: unknown = JSON.parse(text);
  if (!isObject(doc)) throw new Error("not a JSON object");
  const found = new Map<string, PackageRef>();
  const add = (name: unknown, version: unknown): void => {
    if (found.size >= MAX_PACKAGES) return;
    if (typeof name !== "string" || typeof version !== "string") return;
    if (name === "" || name.length > MAX_NAME || version === "" || version.length > MAX_VERSION) return;
    found.set(`${name}@${version}`, { name, version });
  };
  if (isObject(doc.packages)) readPackages(doc.packages, add);
  else if (isObject(doc.dependencies)) readDependencies(doc.dependencies, add);
  return [...found.values()].sort((a, b) =>
    a.name === b.name ? compareText(a.version, b.version) : compareText(a.name, b.name),
  );
}

type Add = (name: unknown, version: unknown) => void;

/** v2/v3: `packages` keyed by install path; links point at another entry (a workspace or a file: directory). */
function readPackages(packages: Record<string, unknown>, add: Add): void {
  for (const [path, entry] of Object.entries(packages)) {
    const at = path.lastIndexOf("node_modules/");
    if (at < 0 || !isObject(entry) || entry.dev === true || entry.extraneous === true) continue;
    const installedAs = path.slice(at + "node_modules/".length);
    if (entry.link === true) {
      const target = typeof entry.resolved === "string" ? packages[entry.resolved] : undefined;
      if (!isObject(target) || target.dev === true) continue;
      add(typeof target.name === "string" ? target.name : installedAs, target.version);
      continue;
    }
    // An alias (`"x": "npm:real@1"`) is installed as x and names the real package in `name`.
    add(typeof entry.name === "string" ? entry.name : installedAs, entry.version);
  }
}

/** v1: a tree of `dependencies` by name. */
function readDependencies(deps: Record<string, unknown>, add: Add, depth = 0): void {
  if (depth > 100) return;
  for (const [name, entry] of Object.entries(deps)) {
    if (!isObject(entry) || entry.dev === true) continue;
    const version = entry.version;
    // An alias records `npm:real@1.2.3` as its version.
    const alias = typeof version === "string" ? /^npm:(@?[^@]+)@(.+)$/.exec(version) : null;
    if (alias) add(alias[1], alias[2]);
    else add(name, version);
    if (isObject(entry.dependencies)) readDependencies(entry.dependencies, add, depth + 1);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const compareText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** The artifact store's metadata name of a slug's packages (`<digest>.packages.json`). */
export const PACKAGES_METADATA = "packages";
