/**
 * The keys secrets are encrypted with, kept in `<data>/secrets.key` (mode
 * 0600, created on first start). The file names one current key (new
 * ciphertexts use it) and every key still needed to read old ones:
 *
 *   { "current": "k…", "keys": { "k…": "<32 bytes, base64>", … } }
 *
 * Each ciphertext carries the id of its key, so during a rotation the old
 * and the new key are both in the file; the old one goes only once nothing
 * uses it (secret-store.ts). Every write is a new file fsynced and renamed
 * over the old one: a crash leaves either file, never half of one.
 */

import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { HerdError } from "../common/errors.ts";
import { newId } from "../common/ids.ts";

/** File name of the key file inside the data dir. */
export const KEY_FILE = "secrets.key";

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** What the key file holds. */
interface KeyFile {
  current: string;
  keys: Record<string, string>;
}

/** A ciphertext and the key that made it. */
export interface Sealed {
  keyId: string;
  /** base64 of IV (12 bytes) ‖ ciphertext ‖ GCM tag (16 bytes). */
  box: string;
}

/** The data dir's secret keys: seals and opens values with AES-256-GCM. */
export class Keyring {
  readonly #file: string;
  #current: string;
  readonly #keys: Map<string, Buffer>;

  private constructor(file: string, data: KeyFile) {
    this.#file = file;
    this.#current = data.current;
    this.#keys = new Map(Object.entries(data.keys).map(([id, b64]) => [id, Buffer.from(b64, "base64")]));
  }

  /** Reads `<dataDir>/secrets.key`, creating it with one new key when it is missing. */
  static open(dataDir: string): Keyring {
    const file = join(dataDir, KEY_FILE);
    if (!existsSync(file)) {
      const id = newKeyId();
      const ring = new Keyring(file, {
        current: id,
        keys: { [id]: randomBytes(KEY_BYTES).toString("base64") },
      });
      ring.#save();
      return ring;
    }
    let data: KeyFile;
    try {
      data = JSON.parse(readFileSync(file, "utf8")) as KeyFile;
    } catch (err) {
      // Never quote the file: it holds keys.
      throw new HerdError("internal", `${file} is not a readable key file (${(err as Error).name})`);
    }
    const keys = data?.keys && typeof data.keys === "object" ? data.keys : {};
    if (typeof data?.current !== "string" || typeof keys[data.current] !== "string") {
      throw new HerdError("internal", `${file} names no current key: restore it from a backup`);
    }
    for (const [id, b64] of Object.entries(keys)) {
      if (typeof b64 !== "string" || Buffer.from(b64, "base64").length !== KEY_BYTES)
        throw new HerdError("internal", `${file}: key ${id} is not ${KEY_BYTES} bytes`);
    }
    return new Keyring(file, { current: data.current, keys });
  }

  /** The id of the key new ciphertexts use. */
  get current(): string {
    return this.#current;
  }

  /** Ids of every key in the file. */
  ids(): string[] {
    return [...this.#keys.keys()];
  }

  /** Encrypts `value` with the current key; `aad` binds the ciphertext to where it is stored. */
  seal(value: string, aad: string): Sealed {
    const key = this.#keys.get(this.#current) as Buffer;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    cipher.setAAD(Buffer.from(aad, "utf8"));
    const data = Buffer.concat([cipher.update(value, "utf8"), cipher.final()]);
    return { keyId: this.#current, box: Buffer.concat([iv, data, cipher.getAuthTag()]).toString("base64") };
  }

  /** Decrypts; throws when the key is gone or the ciphertext, its key id or `aad` was changed. */
  open(sealed: Sealed, aad: string): string {
    const key = this.#keys.get(sealed.keyId);
    if (!key) {
      throw new HerdError("internal", `secret key ${sealed.keyId} is not in ${this.#file}: restore the file`);
    }
    const raw = Buffer.from(sealed.box, "base64");
    if (raw.length < IV_BYTES + TAG_BYTES)
      throw new HerdError("internal", "a secret's ciphertext is truncated");
    const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(aad, "utf8"));
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    try {
      return Buffer.concat([
        decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)),
        decipher.final(),
      ]).toString("utf8");
    } catch {
      throw new HerdError("internal", "a secret failed its integrity check: it was changed outside herd");
    }
  }

  /** Adds a new key and makes it current; the old keys stay (step 1 of a rotation). Returns its id. */
  addKey(): string {
    const id = newKeyId();
    this.#keys.set(id, randomBytes(KEY_BYTES));
    const before = this.#current;
    this.#current = id;
    try {
      this.#save();
    } catch (err) {
      this.#keys.delete(id);
      this.#current = before;
      throw err;
    }
    return id;
  }

  /** Drops every key but the current one (the last step of a rotation, once nothing uses them). */
  dropOldKeys(): string[] {
    const dropped = this.ids().filter((id) => id !== this.#current);
    if (dropped.length === 0) return [];
    const kept = new Map(this.#keys);
    for (const id of dropped) this.#keys.delete(id);
    try {
      this.#save();
    } catch (err) {
      for (const [id, key] of kept) this.#keys.set(id, key);
      throw err;
    }
    return dropped;
  }

  /** Writes the file: a new file with mode 0600, fsynced, renamed over the old one, directory fsynced. */
  #save(): void {
    const data: KeyFile = {
      current: this.#current,
      keys: Object.fromEntries([...this.#keys].map(([id, key]) => [id, key.toString("base64")])),
    };
    const tmp = `${this.#file}.tmp`;
    // A leftover from a crash may have another mode: start afresh so the new file is 0600.
    rmSync(tmp, { force: true });
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, `${JSON.stringify(data)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.#file);
    const dir = openSync(dirname(this.#file), "r");
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }
}

function newKeyId(): string {
  return `k${newId(10)}`;
}
