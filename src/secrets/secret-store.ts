/**
 * The one place secret values live: apps' secrets, alert receivers' webhook
 * headers and consumers' HS256 secrets. Each is a store object of kind
 * `secret`, keyed `<tenant>/<scope>/<name>`, holding ciphertexts only
 * (keyring.ts): the scope is an app's name, or `_receiver.<name>` /
 * `_consumer.<name>` (a leading _ is never an app's name).
 *
 *   set(value) ─► seal with the current key (AAD: key + version) ─► versions[] (last KEEP_VERSIONS)
 *   value(name, version) ─► open with the version's key ─► plain text, to whoever needs it
 *   rotateKey ─► new key in the file (old kept) ─► every version re-sealed ─► old keys dropped
 *
 * Versions only grow: an unset leaves a tombstone, so a name set again never
 * reuses a version a release may have pinned.
 */

import { HerdError, notFound } from "../common/errors.ts";
import type { Store, StoredObject } from "../store/store.ts";
import { Keyring, type Sealed } from "./keyring.ts";

/** How many versions of a secret are kept (a release pins one; older ones cannot be rolled back to). */
export const KEEP_VERSIONS = 10;

/** The scope of an alert receiver's headers. */
export const receiverScope = (receiver: string): string => `_receiver.${receiver}`;
/** The scope of a consumer's JWT secrets. */
export const consumerScope = (consumer: string): string => `_consumer.${consumer}`;

/** One encrypted version of a secret. */
export interface SecretVersion extends Sealed {
  version: number;
  createdAt: string;
  createdBy: string;
}

/** A secret as stored: metadata and ciphertexts, never the value. */
export interface SecretObject {
  tenant: string;
  scope: string;
  name: string;
  /** The latest version (0 before the first set). */
  version: number;
  /** Oldest first, at most KEEP_VERSIONS; empty once unset. */
  versions: SecretVersion[];
  createdAt: string;
  updatedAt: string;
  /** Who made the last change (a token's name). */
  updatedBy: string;
  /** Unset: kept as a tombstone so versions never repeat. */
  deleted?: boolean;
}

/** What the API shows of a secret. */
export interface SecretInfo {
  name: string;
  version: number;
  createdAt: string;
  updatedAt: string;
  updatedBy: string;
}

/** The outcome of a key rotation. */
export interface RotationResult {
  /** The key every secret is encrypted with now. */
  keyId: string;
  /** Secret versions re-encrypted. */
  reencrypted: number;
  /** Secrets looked at. */
  secrets: number;
  /** Keys removed from the key file. */
  droppedKeys: string[];
}

export const secretKey = (tenant: string, scope: string, name: string): string =>
  `${tenant}/${scope}/${name}`;

/** Additional authenticated data: a ciphertext opens only under its own key and version. */
const aadOf = (key: string, version: number): string => `herd-secret/v1 ${key}@${version}`;

export const toInfo = (s: SecretObject): SecretInfo => ({
  name: s.name,
  version: s.version,
  createdAt: s.createdAt,
  updatedAt: s.updatedAt,
  updatedBy: s.updatedBy,
});

/** Encrypted secrets in the object store, with the data dir's keyring. */
export class SecretStore {
  readonly #store: Store;
  readonly #keyring: Keyring;
  readonly #now: () => number;
  /** One rotation at a time. */
  #rotation: Promise<unknown> = Promise.resolve();

  constructor(store: Store, keyring: Keyring, now: () => number = Date.now) {
    this.#store = store;
    this.#keyring = keyring;
    this.#now = now;
  }

  /** Opens the data dir's keyring (created on first start) and finishes a rotation a crash interrupted. */
  static async open(store: Store, dataDir: string, now?: () => number): Promise<SecretStore> {
    const secrets = new SecretStore(store, Keyring.open(dataDir), now);
    if (secrets.#keyring.ids().length > 1) await secrets.#reencryptAll();
    return secrets;
  }

  /** The id of the key new secrets are encrypted with. */
  get keyId(): string {
    return this.#keyring.current;
  }

  /** Sets a new version of a secret; returns what the API shows of it. */
  async set(tenant: string, scope: string, name: string, value: string, actor: string): Promise<SecretInfo> {
    const key = secretKey(tenant, scope, name);
    for (;;) {
      const cur = await this.#store.get<SecretObject>("secret", key);
      const now = new Date(this.#now()).toISOString();
      const version = (cur?.value.version ?? 0) + 1;
      const sealed = this.#keyring.seal(value, aadOf(key, version));
      const kept = cur && !cur.value.deleted ? cur.value.versions : [];
      const next: SecretObject = {
        tenant,
        scope,
        name,
        version,
        versions: [...kept, { version, ...sealed, createdAt: now, createdBy: actor }].slice(-KEEP_VERSIONS),
        createdAt: cur && !cur.value.deleted ? cur.value.createdAt : now,
        updatedAt: now,
        updatedBy: actor,
      };
      if (await this.#put(key, next, cur)) return toInfo(next);
    }
  }

  /** Removes a secret's values (a tombstone keeps its version count); undefined when it was not set. */
  async unset(tenant: string, scope: string, name: string, actor: string): Promise<SecretInfo | undefined> {
    const key = secretKey(tenant, scope, name);
    for (;;) {
      const cur = await this.#store.get<SecretObject>("secret", key);
      if (!cur || cur.value.deleted) return undefined;
      const next: SecretObject = {
        ...cur.value,
        versions: [],
        deleted: true,
        updatedAt: new Date(this.#now()).toISOString(),
        updatedBy: actor,
      };
      if (await this.#put(key, next, cur)) return toInfo(cur.value);
    }
  }

  /** The secrets of a scope (names, versions, who changed them), by name. */
  async list(tenant: string, scope: string): Promise<SecretInfo[]> {
    const { items } = await this.#store.list<SecretObject>("secret", { prefix: `${tenant}/${scope}/` });
    return items.filter((o) => !o.value.deleted).map((o) => toInfo(o.value));
  }

  /** One secret's metadata, undefined when it is not set. */
  async info(tenant: string, scope: string, name: string): Promise<SecretInfo | undefined> {
    const o = await this.#store.get<SecretObject>("secret", secretKey(tenant, scope, name));
    return o && !o.value.deleted ? toInfo(o.value) : undefined;
  }

  /** The plain value of a version (default: the latest). Throws not_found naming what is missing. */
  async value(tenant: string, scope: string, name: string, version?: number): Promise<string> {
    const key = secretKey(tenant, scope, name);
    const o = await this.#store.get<SecretObject>("secret", key);
    if (!o || o.value.deleted) throw notFound(`secret ${name} is not set`);
    const want = version ?? o.value.version;
    const v = o.value.versions.find((x) => x.version === want);
    if (!v) {
      throw notFound(
        `version ${want} of secret ${name} is no longer kept (herd keeps the last ${KEEP_VERSIONS}; it is at ${o.value.version})`,
      );
    }
    return this.#keyring.open(v, aadOf(key, want));
  }

  /** Deletes every secret of a scope, tombstones included (an app destroyed, a receiver deleted). */
  async removeScope(tenant: string, scope: string): Promise<number> {
    const { items } = await this.#store.list<SecretObject>("secret", { prefix: `${tenant}/${scope}/` });
    for (const o of items) await this.#store.delete("secret", o.key);
    return items.length;
  }

  /**
   * Re-encrypts every secret with a new key. Crash-safe in three steps: the
   * new key is added to the key file (the old ones stay), each secret is
   * re-sealed and written on its own, and only then are the old keys dropped.
   * Killed anywhere, every ciphertext's key is still in the file, and the
   * next start (open) finishes the job. `progress` sees each secret written.
   */
  rotateKey(progress?: (done: number) => void | Promise<void>): Promise<RotationResult> {
    const run = this.#rotation.then(async () => {
      this.#keyring.addKey();
      return this.#reencryptAll(progress);
    });
    this.#rotation = run.catch(() => {});
    return run;
  }

  /** Steps 2 and 3 of a rotation: every version under the current key, then the other keys go. */
  async #reencryptAll(progress?: (done: number) => void | Promise<void>): Promise<RotationResult> {
    const current = this.#keyring.current;
    let reencrypted = 0;
    let written = 0;
    let secrets = 0;
    // Passes until one finds nothing stale: a set that sealed with the old key just before the new
    // key was added may land after the first pass read its secret.
    for (let pass = 0; ; pass++) {
      const { items } = await this.#store.list<SecretObject>("secret");
      if (pass === 0) secrets = items.length;
      let found = 0;
      for (const first of items) {
        let o: StoredObject<SecretObject> | undefined = first;
        while (o) {
          const stale = o.value.versions.filter((v) => v.keyId !== current);
          if (stale.length === 0) break;
          const key: string = o.key;
          const next: SecretObject = {
            ...o.value,
            versions: o.value.versions.map((v) => {
              if (v.keyId === current) return v;
              const aad = aadOf(key, v.version);
              return { ...v, ...this.#keyring.seal(this.#keyring.open(v, aad), aad) };
            }),
          };
          if (await this.#put(key, next, o)) {
            found++;
            reencrypted += stale.length;
            await progress?.(++written);
            break;
          }
          o = await this.#store.get<SecretObject>("secret", key);
        }
      }
      if (found === 0) break;
    }
    // Nothing references the other keys any more.
    const droppedKeys = this.#keyring.dropOldKeys();
    return { keyId: current, reencrypted, secrets, droppedKeys };
  }

  /** Writes at the revision read; false on a concurrent change (read again and retry). */
  async #put(
    key: string,
    value: SecretObject,
    cur: StoredObject<SecretObject> | undefined,
  ): Promise<boolean> {
    try {
      await this.#store.put("secret", key, value, { expectRevision: cur?.revision ?? 0 });
      return true;
    } catch (err) {
      if (err instanceof HerdError && err.code === "conflict") return false;
      throw err;
    }
  }
}
