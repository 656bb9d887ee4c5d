/**
 * The slug cache of a node: built release tarballs, downloaded once from the
 * control plane by content digest, verified, and unpacked fresh for every start;
 * and the Node runtimes slugs name (`.herd/node.json`, from engines.node),
 * downloaded and unpacked once, shared read-only by every instance using them.
 *
 *   GET {server}/api/v1/slugs/{digest} ─► <dataDir>/slugs/.<digest>.<random>.tmp (sha256 while writing)
 *                                      ─► rename to <dataDir>/slugs/<digest>.tar.gz ─► unpackTarball(app dir)
 *   GET {server}/api/v1/runtimes/{digest} ─► (verified the same way) ─► <dataDir>/runtimes/<digest>/package/bin/node
 */

import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { NODE_REF_FILE, type NodeRef } from "../builder/node-runtime.ts";
import { unpackTarball } from "../builder/unpack.ts";
import { HerdError } from "../common/errors.ts";
import { pathExists } from "../common/path-exists.ts";
import { serversOf } from "../common/server-list.ts";
import { openRegular } from "./instance-log-files.ts";

/** Where to fetch slugs from and where to keep them. */
export interface SlugCacheOptions {
  /** Control-plane base URL, e.g. http://127.0.0.1:7000 */
  server: string;
  token: string;
  dataDir: string;
  /** The CA that signed the control plane's certificate (common/api-ca.ts), when not a public one. */
  ca?: string;
  /** Give up on one download after this long; default 5 minutes. */
  timeoutMs?: number;
}

const DIGEST = /^[0-9a-f]{64}$/;
/** Slugs no instance here uses that a node keeps (the last used): a rollback or a wake from zero starts warm. */
export const SLUGS_KEPT = 10;
/** How often pruneWhenDue prunes. */
const PRUNE_EVERY_MS = 10 * 60 * 1000;
const VERSION = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/;
/** This machine, as runtimes name their platform. */
const PLATFORM = `${process.platform}-${process.arch}`;

/** Downloads slugs once per digest and unpacks them into app directories. */
export class SlugCache {
  readonly #options: SlugCacheOptions;
  readonly #dir: string;
  // One download per digest even when several instances of a release start at once.
  readonly #downloads = new Map<string, Promise<string>>();
  readonly #runtimes = new Map<string, Promise<string>>();
  /** Starts unpacking each slug (prune() leaves those alone). */
  readonly #unpacking = new Map<string, number>();
  /** Slugs prune() is deleting: an unpack waits for that, then downloads it again. */
  readonly #pruning = new Map<string, Promise<void>>();
  #prunedAt = Number.NEGATIVE_INFINITY;
  #pruneRunning = false;
  /** The digests on disk (read from the directory once, then kept up to date). */
  #held: Set<string> | undefined;

  constructor(options: SlugCacheOptions) {
    this.#options = options;
    this.#dir = join(options.dataDir, "slugs");
  }

  /**
   * The slugs this node holds (those in use and the last ones used: prune()).
   * Heartbeats name them, so the scheduler prefers this node for them: a
   * service woken from zero, or a rollback, starts warm.
   */
  async held(): Promise<string[]> {
    if (this.#held === undefined) {
      const names = await readdir(this.#dir).catch(() => [] as string[]);
      this.#held = new Set(
        names.filter((n) => n.endsWith(".tar.gz")).map((n) => n.slice(0, -".tar.gz".length)),
      );
      for (const digest of this.#held) if (!DIGEST.test(digest)) this.#held.delete(digest);
    }
    return [...this.#held];
  }

  /** The local path of the slug, downloading and verifying it first when it is not cached. */
  async fetch(digest: string): Promise<string> {
    if (!DIGEST.test(digest))
      throw new HerdError("invalid", `slug digest ${JSON.stringify(digest)} is not a sha256 hex`);
    const file = join(this.#dir, `${digest}.tar.gz`);
    if (await pathExists(file)) return file;
    let download = this.#downloads.get(digest);
    if (!download) {
      download = this.#download("slugs", digest, file)
        .then((path) => {
          this.#held?.add(digest);
          return path;
        })
        .finally(() => this.#downloads.delete(digest));
      this.#downloads.set(digest, download);
    }
    return download;
  }

  /** Unpacks the slug into dest, replacing whatever dest held. */
  async unpack(digest: string, dest: string): Promise<void> {
    // Counted before the first await: prune() leaves a slug being unpacked alone, and one it is
    // deleting is downloaded again once the deletion is done.
    this.#unpacking.set(digest, (this.#unpacking.get(digest) ?? 0) + 1);
    try {
      await this.#pruning.get(digest);
      const file = await this.fetch(digest);
      // Its time is when it was last used: prune() keeps the most recent.
      const now = new Date();
      await utimes(file, now, now).catch(() => {});
      await rm(dest, { recursive: true, force: true });
      await unpackTarball(file, dest);
    } finally {
      const left = (this.#unpacking.get(digest) ?? 1) - 1;
      if (left > 0) this.#unpacking.set(digest, left);
      else this.#unpacking.delete(digest);
    }
  }

  /**
   * prune(inUse(), SLUGS_KEPT) when the last one is 10 minutes ago and none
   * runs; undefined when not due (the agent asks on every heartbeat reply).
   */
  pruneWhenDue(inUse: () => ReadonlySet<string>, now = Date.now()): Promise<string[]> | undefined {
    if (this.#pruneRunning || now - this.#prunedAt < PRUNE_EVERY_MS) return undefined;
    this.#prunedAt = now;
    this.#pruneRunning = true;
    return this.prune(inUse(), SLUGS_KEPT).finally(() => {
      this.#pruneRunning = false;
    });
  }

  /**
   * Deletes the slugs not in `inUse` (what this node's instances and runs
   * run or are to run) but the `keep` used last, and returns their digests.
   * A slug being downloaded stays.
   */
  async prune(inUse: ReadonlySet<string>, keep: number): Promise<string[]> {
    const unused: { digest: string; usedAt: number }[] = [];
    for (const digest of await this.held()) {
      if (inUse.has(digest) || this.#downloads.has(digest)) continue;
      const s = await stat(join(this.#dir, `${digest}.tar.gz`)).catch(() => undefined);
      if (s) unused.push({ digest, usedAt: s.mtimeMs });
      else this.#held?.delete(digest);
    }
    unused.sort((a, b) => b.usedAt - a.usedAt);
    const removed: string[] = [];
    for (const { digest } of unused.slice(keep)) {
      // Being unpacked or downloaded by now: it stays.
      if (inUse.has(digest) || this.#downloads.has(digest) || this.#unpacking.has(digest)) continue;
      this.#held?.delete(digest);
      const removing = rm(join(this.#dir, `${digest}.tar.gz`), { force: true });
      this.#pruning.set(digest, removing);
      try {
        await removing;
      } finally {
        this.#pruning.delete(digest);
      }
      removed.push(digest);
    }
    return removed;
  }

  /**
   * The Node installation (its `bin/node`) the app unpacked in appDir chose,
   * downloaded and unpacked first when this node does not have it; undefined
   * when the slug names none (the app runs on herd's own Node).
   */
  async node(appDir: string): Promise<string | undefined> {
    // The slug's own file (unpacked fresh, no link leaves it), but what the app's install scripts left
    // there when the build wrote none: a few KiB at most is a reference, and only those are read.
    const handle = await openRegular(join(appDir, NODE_REF_FILE));
    if (!handle) return undefined;
    let text: string;
    try {
      const buf = Buffer.alloc(4096);
      const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
      text = buf.subarray(0, bytesRead).toString("utf8");
    } finally {
      await handle.close();
    }
    let ref: NodeRef;
    try {
      ref = JSON.parse(text) as NodeRef;
    } catch (err) {
      throw new HerdError("invalid", `${NODE_REF_FILE} in the slug: ${(err as Error).message}`);
    }
    if (!DIGEST.test(String(ref.digest)) || !VERSION.test(String(ref.version)))
      throw new HerdError("invalid", `${NODE_REF_FILE} in the slug names no Node runtime`);
    if (ref.platform !== PLATFORM) {
      throw new HerdError(
        "invalid",
        `the app's Node v${ref.version} was built for ${ref.platform}; this node is ${PLATFORM}`,
      );
    }
    const dir = join(this.#options.dataDir, "runtimes", ref.digest);
    let unpacking = this.#runtimes.get(ref.digest);
    if (!unpacking) {
      unpacking = this.#unpackRuntime(ref.digest, dir).finally(() => this.#runtimes.delete(ref.digest));
      this.#runtimes.set(ref.digest, unpacking);
    }
    return unpacking;
  }

  async #unpackRuntime(digest: string, dir: string): Promise<string> {
    const installed = join(dir, "package");
    if (await pathExists(join(installed, "bin", "node"))) return installed;
    const tarballs = join(this.#options.dataDir, "runtimes");
    const file = join(tarballs, `${digest}.tgz`);
    await this.#download("runtimes", digest, file);
    try {
      await rm(dir, { recursive: true, force: true });
      await unpackTarball(file, dir);
    } finally {
      // Unpacked, the tarball is no longer needed; a failed unpack is downloaded again next time.
      await rm(file, { force: true });
    }
    return installed;
  }

  async #download(kind: "slugs" | "runtimes", digest: string, file: string): Promise<string> {
    const dir = dirname(file);
    await mkdir(dir, { recursive: true });
    const path = `/api/v1/${kind}/${digest}`;
    const what = kind === "slugs" ? "slug" : "Node runtime";
    const res = await serversOf(this.#options.server)
      .request(path, {
        ca: this.#options.ca,
        headers: { authorization: `Bearer ${this.#options.token}` },
        signal: AbortSignal.timeout(this.#options.timeoutMs ?? 300_000),
      })
      .catch((err: Error) => {
        throw new HerdError("unavailable", `cannot download ${what} ${digest}: ${err.message}`);
      });
    if (!res.ok) {
      res.cancel();
      throw new HerdError(
        res.status === 404 ? "not_found" : "unavailable",
        `GET ${path} answered ${res.status}`,
      );
    }
    const tmp = join(dir, `.${digest}.${randomBytes(4).toString("hex")}.tmp`);
    const hash = createHash("sha256");
    const hashing = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(res.body, hashing, createWriteStream(tmp));
      const actual = hash.digest("hex");
      if (actual !== digest)
        throw new HerdError("invalid", `${what} ${digest} arrived with sha256 ${actual}; discarded`);
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      if (err instanceof HerdError) throw err;
      throw new HerdError("unavailable", `cannot download ${what} ${digest}: ${(err as Error).message}`);
    }
    return file;
  }
}

/**
 * Makes the module type of the app under instanceDir its own: when a
 * package.json lies above instanceDir (a data dir inside a Node project, e.g.
 * herd's own checkout with "type": "module"), Node would take its "type" for
 * an app that has no package.json; an empty package.json in instanceDir ends
 * the lookup there, as if nothing were above. Removed again when nothing is.
 * Returns the node_modules directories above instanceDir: those no file can
 * hide; only the sandbox's own view of the app (/run/herd-sandbox/app) does.
 */
export async function isolateModuleScope(instanceDir: string): Promise<{ nodeModulesAbove: string[] }> {
  const nodeModulesAbove: string[] = [];
  let packageAbove = false;
  for (let dir = dirname(instanceDir); ; dir = dirname(dir)) {
    if (await pathExists(join(dir, "package.json"))) packageAbove = true;
    if (await pathExists(join(dir, "node_modules"))) nodeModulesAbove.push(join(dir, "node_modules"));
    if (dirname(dir) === dir) break;
  }
  const boundary = join(instanceDir, "package.json");
  if (packageAbove) await writeFile(boundary, `${JSON.stringify(BOUNDARY)}\n`);
  else await rm(boundary, { force: true });
  return { nodeModulesAbove };
}

const BOUNDARY = {
  "//": "herd: ends Node's package.json lookup here, so files above the data dir do not set this app's module type",
};
