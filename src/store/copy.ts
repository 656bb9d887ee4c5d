/**
 * Moving and keeping a store's objects: `herd migrate` (one store into
 * another), `herd backup` and `herd restore` (docs/high-availability.md).
 *
 *   migrate: source.snapshot() ─► target (must be empty) put each, expectRevision 0
 *   backup:  source.snapshot() ─► DIR/objects.ndjson (a header line, then {kind,key,value} per line)
 *                                 DIR/artifacts/      (slugs and sources: content-addressed files)
 *                                 DIR/secrets.key     (without it the secrets cannot be read)
 *   restore: DIR ─► target store (must be empty), artifacts dir, secrets.key of the data dir
 *
 * A snapshot is one revision of the whole store (Store.snapshot), so a backup
 * taken while servers run is consistent. Revisions are not kept: the target
 * numbers its writes itself, so agents and gateways start over with a full
 * snapshot when they reconnect.
 */

import { createReadStream } from "node:fs";
import { chmod, copyFile, cp, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { HerdError } from "../common/errors.ts";
import { KINDS, type Kind } from "../model/objects.ts";
import type { Store } from "./store.ts";

/** The first line of objects.ndjson. */
export interface BackupHeader {
  format: "herd-backup";
  version: 1;
  /** The source store's revision the snapshot was read at. */
  revision: number;
  objects: number;
  createdAt: string;
}

export const OBJECTS_FILE = "objects.ndjson";
const SECRETS_KEY = "secrets.key";

/** Throws `conflict` unless `store` holds no object: migrations and restores never merge. */
async function checkEmpty(store: Store, what: string): Promise<void> {
  const { items } = await store.snapshot();
  if (items.length > 0) {
    throw new HerdError(
      "conflict",
      `${what} already holds ${items.length} objects: restore or migrate into an empty store (a new data dir, or another etcd root such as etcd://host:2379/herd2)`,
    );
  }
}

/** Copies every object of `from` into the empty `to`; returns how many and the revision they were read at. */
export async function copyStore(
  from: Store,
  to: Store,
  progress?: (done: number, total: number) => void,
): Promise<{ objects: number; revision: number }> {
  await checkEmpty(to, "the target store");
  const { items, revision } = await from.snapshot();
  let done = 0;
  for (const o of items) {
    await to.put(o.kind, o.key, o.value, { expectRevision: 0 });
    if (++done % 500 === 0) progress?.(done, items.length);
  }
  progress?.(done, items.length);
  return { objects: items.length, revision };
}

/** Writes a backup of `store` (and the artifacts and secrets key of a data dir) into the new or empty directory `out`. */
export async function backupStore(options: {
  store: Store;
  artifactsDir: string;
  dataDir: string;
  out: string;
}): Promise<BackupHeader> {
  const { store, artifactsDir, dataDir, out } = options;
  await mkdir(out, { recursive: true, mode: 0o700 });
  await chmod(out, 0o700);
  if ((await readdir(out)).length > 0)
    throw new HerdError("conflict", `${out} is not empty: back up into a new directory`);
  const { items, revision } = await store.snapshot();
  const header: BackupHeader = {
    format: "herd-backup",
    version: 1,
    revision,
    objects: items.length,
    createdAt: new Date().toISOString(),
  };
  const lines = [
    JSON.stringify(header),
    ...items.map((o) => JSON.stringify({ kind: o.kind, key: o.key, value: o.value })),
  ];
  await writeFile(join(out, OBJECTS_FILE), `${lines.join("\n")}\n`, { mode: 0o600 });
  // Artifacts are written once under their digest and never changed: a copy after the snapshot holds every one it names.
  if (await exists(artifactsDir)) await cp(artifactsDir, join(out, "artifacts"), { recursive: true });
  if (await exists(join(dataDir, SECRETS_KEY))) {
    await copyFile(join(dataDir, SECRETS_KEY), join(out, SECRETS_KEY));
    await chmod(join(out, SECRETS_KEY), 0o600);
  }
  return header;
}

/** Reads a backup from `from` into the empty `store`, its artifacts into `artifactsDir`, its key into `dataDir`. */
export async function restoreStore(options: {
  store: Store;
  artifactsDir: string;
  dataDir: string;
  from: string;
}): Promise<BackupHeader> {
  const { store, artifactsDir, dataDir, from } = options;
  const file = join(from, OBJECTS_FILE);
  if (!(await exists(file)))
    throw new HerdError("not_found", `${file} does not exist: is ${from} a herd backup?`);
  await checkEmpty(store, "the store to restore into");
  const key = join(dataDir, SECRETS_KEY);
  const backupKey = join(from, SECRETS_KEY);
  if ((await exists(key)) && (await exists(backupKey))) {
    const [a, b] = await Promise.all([readFile(key), readFile(backupKey)]);
    if (!a.equals(b)) {
      throw new HerdError(
        "conflict",
        `${key} is not the backup's secrets key: restore into a data dir without one (the backup's is copied there)`,
      );
    }
  }
  let header: BackupHeader | undefined;
  let restored = 0;
  const known = new Set<string>(KINDS);
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) {
    if (line === "") continue;
    const parsed = JSON.parse(line) as {
      kind?: string;
      key?: string;
      value?: unknown;
    } & Partial<BackupHeader>;
    if (!header) {
      if (parsed.format !== "herd-backup" || parsed.version !== 1)
        throw new HerdError("invalid", `${file} is not a herd backup (format 1)`);
      header = parsed as BackupHeader;
      continue;
    }
    if (typeof parsed.kind !== "string" || !known.has(parsed.kind) || typeof parsed.key !== "string")
      throw new HerdError("invalid", `${file}: line ${restored + 2} is not an object of a known kind`);
    await store.put(parsed.kind as Kind, parsed.key, parsed.value, { expectRevision: 0 });
    restored++;
  }
  if (!header) throw new HerdError("invalid", `${file} is empty`);
  if (restored !== header.objects)
    throw new HerdError(
      "invalid",
      `${file} names ${header.objects} objects but holds ${restored}: the backup is cut short`,
    );
  if (await exists(join(from, "artifacts"))) {
    await mkdir(artifactsDir, { recursive: true });
    await cp(join(from, "artifacts"), artifactsDir, { recursive: true, force: false });
  }
  if ((await exists(backupKey)) && !(await exists(key))) {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await copyFile(backupKey, key);
    await chmod(key, 0o600);
  }
  return header;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
