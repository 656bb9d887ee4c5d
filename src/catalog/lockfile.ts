/**
 * The npm packages a built app ships, read from npm's own records after the
 * install: `node_modules/.package-lock.json` (what npm installed, dev
 * packages already left out by --omit=dev), else the source's lockfile
 * (`npm-shrinkwrap.json` or `package-lock.json`) without its dev packages.
 * Lockfile versions 1 (`dependencies` tree) and 2/3 (`packages` by path) are
 * read. The files are the app's (its install scripts could write them), so
 * they are parsed as untrusted input: bounded in size, odd entries skipped.
 */

import { constants } from "node:fs";
import { open, realpath, stat } from "node:fs/promises";
import { join, sep } from "node:path";
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

/** The lockfile in `appDir` that npm would install from; null: none. Call it before the install (npm install writes one). */
export async function findLockfile(appDir: string): Promise<string | null> {
  for (const name of LOCKFILES) if (await isFile(join(appDir, name))) return name;
  return null;
}

/**
 * The packages installed in `appDir` (an app after `npm ci`/`npm install`);
 * `lockfile` is the one the source carried (findLockfile before the install).
 * `from` null and no packages when nothing was installed. Throws only for
 * I/O errors other than a missing file; a lockfile that is not JSON yields
 * the error's message in `problem`.
 */
export async function readInstalledPackages(
  appDir: string,
  lockfile: string | null,
): Promise<SlugPackages & { problem?: string }> {
  for (const from of [HIDDEN_LOCKFILE, await findLockfile(appDir)]) {
    if (from === null) continue;
    const read = await readInside(appDir, from);
    if (read === undefined) continue;
    if (typeof read !== "string") return { lockfile, from, packages: [], problem: read.problem };
    try {
      return { lockfile, from, packages: parseLockfile(read) };
    } catch (err) {
      return { lockfile, from, packages: [], problem: `${from}: ${(err as Error).message.slice(0, 200)}` };
    }
  }
  return { lockfile, from: null, packages: [] };
}

/**
 * The text of the regular file `rel` under `appDir`; undefined when there is
 * none. The app's install scripts wrote this tree and the control plane reads
 * it as root: a path that leads outside the app (a symlink) is refused, not read.
 */
async function readInside(appDir: string, rel: string): Promise<string | { problem: string } | undefined> {
  const real = await realpath(join(appDir, rel)).catch(() => undefined);
  if (real === undefined) return undefined;
  if (!real.startsWith(`${await realpath(appDir)}${sep}`)) return { problem: `${rel} leads outside the app` };
  const file = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(
    () => undefined,
  );
  if (!file) return undefined;
  try {
    const info = await file.stat();
    if (!info.isFile()) return undefined;
    if (info.size > MAX_LOCKFILE_BYTES)
      return { problem: `${rel} is larger than ${MAX_LOCKFILE_BYTES} bytes` };
    return await file.readFile("utf8");
  } finally {
    await file.close();
  }
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
