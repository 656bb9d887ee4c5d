/**
 * Content-addressed storage for tarballs (uploaded sources and built slugs).
 * A tarball lives at `sha256/<first two hex>/<digest>.tar.gz` under the
 * store's directory; writes go to a temp file first and are renamed into
 * place, so a reader never sees a partial artifact. Metadata about an
 * artifact (a slug's packages) is JSON beside it: `<digest>.<name>.json`.
 */

import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, type ReadStream } from "node:fs";
import { access, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { HerdError } from "../common/errors.ts";

const DIGEST_PATTERN = /^[0-9a-f]{64}$/;
const METADATA_NAME = /^[a-z]+$/;

/** What put and putFile return: the content's address and its size in bytes. */
export interface StoredArtifact {
  digest: string;
  size: number;
}

/** Tarballs by sha256 digest, in a directory on local disk. */
export class ArtifactStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * Stores the bytes of `source` (a stream or a buffer), hashing them on the
   * way. Fails with too_large once more than maxBytes arrive (a stream is
   * destroyed then, not drained); nothing is kept. Storing content that is
   * already there changes nothing.
   */
  async put(source: NodeJS.ReadableStream | Buffer, maxBytes: number): Promise<StoredArtifact> {
    const incoming = join(this.dir, "incoming");
    await mkdir(incoming, { recursive: true });
    const temp = join(incoming, `${randomBytes(8).toString("hex")}.part`);
    const hash = createHash("sha256");
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        size += chunk.length;
        // Stop as soon as the limit is passed rather than buffering a huge upload to disk.
        if (size > maxBytes) {
          done(new HerdError("too_large", `upload is at least ${size} bytes, the limit is ${maxBytes}`));
          return;
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    if (Buffer.isBuffer(source) && source.length > maxBytes) {
      throw new HerdError("too_large", `upload is ${source.length} bytes, the limit is ${maxBytes}`);
    }
    const input = Buffer.isBuffer(source) ? Readable.from([source]) : source;
    try {
      await pipeline(input, meter, createWriteStream(temp, { flags: "wx" }));
      const digest = hash.digest("hex");
      const target = this.#location(digest);
      await mkdir(join(target, ".."), { recursive: true });
      // Same digest, same bytes: renaming over an existing copy is harmless.
      await rename(temp, target);
      return { digest, size };
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }

  /** Stores a file already on disk (e.g. a slug from packAll); the file itself is left in place. */
  async putFile(path: string): Promise<StoredArtifact> {
    return this.put(createReadStream(path), Number.MAX_SAFE_INTEGER);
  }

  /** Whether the artifact with this digest is stored. */
  async has(digest: string): Promise<boolean> {
    const location = this.#location(checkDigest(digest));
    return access(location).then(
      () => true,
      () => false,
    );
  }

  /** The file path of a stored artifact; not_found when it is missing. */
  async path(digest: string): Promise<string> {
    const location = this.#location(checkDigest(digest));
    await stat(location).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") throw new HerdError("not_found", `artifact ${digest} is not stored`);
      throw err;
    });
    return location;
  }

  /** A read stream of a stored artifact; not_found when it is missing. */
  async open(digest: string): Promise<ReadStream> {
    return createReadStream(await this.path(digest));
  }

  /**
   * Keeps `value` (JSON) as the `name` metadata of an artifact, beside it
   * (`<digest>.<name>.json`), e.g. the packages a slug ships. Written to a
   * temp file and renamed: a reader sees the old or the new, never a part.
   */
  async putMetadata(digest: string, name: string, value: unknown): Promise<void> {
    const target = this.#metadataLocation(checkDigest(digest), name);
    const incoming = join(this.dir, "incoming");
    await mkdir(incoming, { recursive: true });
    await mkdir(join(target, ".."), { recursive: true });
    const temp = join(incoming, `${randomBytes(8).toString("hex")}.part`);
    try {
      await writeFile(temp, JSON.stringify(value), { flag: "wx" });
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }

  /** The `name` metadata of an artifact; undefined when none was kept. */
  async getMetadata<T>(digest: string, name: string): Promise<T | undefined> {
    const text = await readFile(this.#metadataLocation(checkDigest(digest), name), "utf8").catch(
      (err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return undefined;
        throw err;
      },
    );
    return text === undefined ? undefined : (JSON.parse(text) as T);
  }

  /** Every stored artifact with its size and when it was last written (a put of the same bytes rewrites it). */
  async list(): Promise<{ digest: string; size: number; writtenAt: number }[]> {
    const found: { digest: string; size: number; writtenAt: number }[] = [];
    const root = join(this.dir, "sha256");
    for (const prefix of await readdir(root).catch(() => [] as string[])) {
      for (const name of await readdir(join(root, prefix)).catch(() => [] as string[])) {
        const digest = name.endsWith(".tar.gz") ? name.slice(0, -".tar.gz".length) : "";
        if (!DIGEST_PATTERN.test(digest)) continue;
        const s = await stat(join(root, prefix, name)).catch(() => undefined);
        if (s?.isFile()) found.push({ digest, size: s.size, writtenAt: s.mtimeMs });
      }
    }
    return found;
  }

  /**
   * Removes an artifact and its metadata, unless it was written after
   * `unlessWrittenAfter` (a put of the same bytes since it was found
   * unreferenced). Whether it was removed.
   */
  async remove(digest: string, unlessWrittenAfter = Number.POSITIVE_INFINITY): Promise<boolean> {
    const location = this.#location(checkDigest(digest));
    // Moved aside first, then looked at: a put racing this either wrote what was moved (put back)
    // or writes a new file after the move (left alone).
    const incoming = join(this.dir, "incoming");
    await mkdir(incoming, { recursive: true });
    const aside = join(incoming, `${randomBytes(8).toString("hex")}.removed`);
    try {
      await rename(location, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
    if ((await stat(aside)).mtimeMs > unlessWrittenAfter) {
      await rename(aside, location);
      return false;
    }
    await rm(aside, { force: true });
    const dir = join(location, "..");
    for (const name of await readdir(dir).catch(() => [] as string[]))
      if (name.startsWith(`${digest}.`) && name.endsWith(".json")) await rm(join(dir, name), { force: true });
    return true;
  }

  /** Removes temp files of writes that never finished (a crash mid-upload) older than `before` (ms). */
  async removeUnfinished(before: number): Promise<number> {
    const incoming = join(this.dir, "incoming");
    let removed = 0;
    for (const name of await readdir(incoming).catch(() => [] as string[])) {
      const s = await stat(join(incoming, name)).catch(() => undefined);
      if (s && s.mtimeMs < before) {
        await rm(join(incoming, name), { force: true });
        removed++;
      }
    }
    return removed;
  }

  #location(digest: string): string {
    return join(this.dir, "sha256", digest.slice(0, 2), `${digest}.tar.gz`);
  }

  #metadataLocation(digest: string, name: string): string {
    if (!METADATA_NAME.test(name)) throw new Error(`metadata name ${JSON.stringify(name)} is not [a-z]+`);
    return join(this.dir, "sha256", digest.slice(0, 2), `${digest}.${name}.json`);
  }
}

/** Rejects anything but 64 lowercase hex characters, so a digest can never name another path. */
function checkDigest(digest: string): string {
  if (!DIGEST_PATTERN.test(digest)) {
    throw new HerdError(
      "invalid",
      `not a sha256 digest: ${JSON.stringify(digest).slice(0, 80)} (expected 64 lowercase hex characters)`,
    );
  }
  return digest;
}
