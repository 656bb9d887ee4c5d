/**
 * The slug cache of a node: built release tarballs, downloaded once from the
 * control plane by content digest, verified, and unpacked fresh for every start.
 *
 *   GET {server}/api/v1/slugs/{digest} ─► <dataDir>/slugs/.<digest>.<random>.tmp (sha256 while writing)
 *                                      ─► rename to <dataDir>/slugs/<digest>.tar.gz ─► unpackTarball(app dir)
 */

import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { access, mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { unpackTarball } from "../build/unpack.ts";
import { HerdError } from "../common/errors.ts";

/** Where to fetch slugs from and where to keep them. */
export interface SlugCacheOptions {
  /** Control-plane base URL, e.g. http://127.0.0.1:7000 */
  server: string;
  token: string;
  dataDir: string;
  /** fetch options that trust the control plane's CA (common/api-ca.ts). */
  trust?: RequestInit;
  /** Give up on one download after this long; default 5 minutes. */
  timeoutMs?: number;
}

const DIGEST = /^[0-9a-f]{64}$/;

/** Downloads slugs once per digest and unpacks them into app directories. */
export class SlugCache {
  readonly #options: SlugCacheOptions;
  readonly #dir: string;
  // One download per digest even when several instances of a release start at once.
  readonly #downloads = new Map<string, Promise<string>>();

  constructor(options: SlugCacheOptions) {
    this.#options = options;
    this.#dir = join(options.dataDir, "slugs");
  }

  /** The local path of the slug, downloading and verifying it first when it is not cached. */
  async fetch(digest: string): Promise<string> {
    if (!DIGEST.test(digest))
      throw new HerdError("invalid", `slug digest ${JSON.stringify(digest)} is not a sha256 hex`);
    const file = join(this.#dir, `${digest}.tar.gz`);
    if (await exists(file)) return file;
    let download = this.#downloads.get(digest);
    if (!download) {
      download = this.#download(digest, file).finally(() => this.#downloads.delete(digest));
      this.#downloads.set(digest, download);
    }
    return download;
  }

  /** Unpacks the slug into dest, replacing whatever dest held. */
  async unpack(digest: string, dest: string): Promise<void> {
    const file = await this.fetch(digest);
    await rm(dest, { recursive: true, force: true });
    await unpackTarball(file, dest);
  }

  async #download(digest: string, file: string): Promise<string> {
    await mkdir(this.#dir, { recursive: true });
    const url = `${this.#options.server.replace(/\/$/, "")}/api/v1/slugs/${digest}`;
    const res = await fetch(url, {
      ...this.#options.trust,
      headers: { authorization: `Bearer ${this.#options.token}` },
      signal: AbortSignal.timeout(this.#options.timeoutMs ?? 300_000),
    }).catch((err: Error) => {
      throw new HerdError("unavailable", `cannot download slug ${digest}: ${err.message}`);
    });
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new HerdError(
        res.status === 404 ? "not_found" : "unavailable",
        `GET ${url} answered ${res.status}`,
      );
    }
    const tmp = join(this.#dir, `.${digest}.${randomBytes(4).toString("hex")}.tmp`);
    const hash = createHash("sha256");
    const hashing = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(Readable.fromWeb(res.body), hashing, createWriteStream(tmp));
      const actual = hash.digest("hex");
      if (actual !== digest)
        throw new HerdError("invalid", `slug ${digest} arrived with sha256 ${actual}; discarded`);
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      if (err instanceof HerdError) throw err;
      throw new HerdError("unavailable", `cannot download slug ${digest}: ${(err as Error).message}`);
    }
    return file;
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
