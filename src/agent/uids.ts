/**
 * Unprivileged uids for instances and builds. Each key (a tenant on an agent,
 * an app in the builder) gets its own uid from a range the owner holds, kept
 * in a JSON file so that restarts, adopted instances and pet volumes keep the
 * same uid. No /etc/passwd entries: the kernel needs only the number.
 *
 *   range: FIRST .. FIRST+COUNT-1, chosen from the path of the owner's state
 *   uids.json {"acme": 1234500000, "shop": 1234500001}   (written before first use)
 */

import { createHash } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { HerdError } from "../common/errors.ts";

/** A block of uids: first, first+1, … first+count-1. */
export interface UidRange {
  first: number;
  count: number;
}

/** Where the blocks start: above every uid a distribution or LDAP hands out in practice. */
export const UID_BASE = 1_000_000_000;
/** Uids per block: one per tenant (or app), so 65,536 of them per agent. */
export const UID_BLOCK = 65_536;
/** Blocks in [UID_BASE, 2^31): 2^31 - 1e9 = 1,147,483,648 / 65,536 = 17,509 whole blocks. */
const BLOCKS = Math.floor((2 ** 31 - UID_BASE) / UID_BLOCK);

/**
 * The block for the owner whose state lives at `path`: fixed for that path, so
 * a restarted agent finds its instances' uids again, and different for the
 * agents and builders that share a machine (tests run several), whose
 * firewall rules match their own range only.
 */
export function uidRangeFor(path: string): UidRange {
  const block = createHash("sha256").update(path).digest().readUInt32BE(0) % BLOCKS;
  return { first: UID_BASE + block * UID_BLOCK, count: UID_BLOCK };
}

/** The last uid of a range. */
export function lastUid(range: UidRange): number {
  return range.first + range.count - 1;
}

/**
 * Key → uid, allocated lowest-free first and persisted before it is handed
 * out. The file keeps its range too: the range a path gives is only the
 * default for a new file, so a moved data dir keeps its uids.
 */
export class UidMap {
  readonly #file: string;
  readonly #range: UidRange;
  readonly #uids: Map<string, number>;

  constructor(file: string, defaultRange: UidRange) {
    this.#file = file;
    const saved = readMap(file);
    this.#range = saved?.range ?? defaultRange;
    this.#uids = new Map(Object.entries(saved?.uids ?? {}));
  }

  /** The uids this map hands out (firewall rules match on it). */
  get range(): UidRange {
    return this.#range;
  }

  /** The key a uid was handed to, if this map handed it out. */
  keyOf(uid: number): string | undefined {
    for (const [key, u] of this.#uids) if (u === uid) return key;
    return undefined;
  }

  /** The uid of `key`, allocating (and saving) one when it has none yet. */
  uidOf(key: string): number {
    const known = this.#uids.get(key);
    if (known !== undefined) return known;
    const used = new Set(this.#uids.values());
    for (let uid = this.#range.first; uid <= lastUid(this.#range); uid++) {
      if (used.has(uid)) continue;
      this.#uids.set(key, uid);
      this.#save();
      return uid;
    }
    throw new HerdError(
      "unavailable",
      `no free uid left in ${this.#range.first}-${lastUid(this.#range)} for ${key} (${this.#file})`,
    );
  }

  #save(): void {
    const tmp = `${this.#file}.tmp`;
    const body: SavedMap = { range: this.#range, uids: Object.fromEntries(this.#uids) };
    writeFileSync(tmp, JSON.stringify(body), { mode: 0o600 });
    renameSync(tmp, this.#file);
  }
}

interface SavedMap {
  range: UidRange;
  uids: Record<string, number>;
}

function readMap(file: string): SavedMap | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const bad = (why: string) =>
    new HerdError("internal", `${file}: ${why}; move the file away to allocate uids afresh`);
  const saved = JSON.parse(text) as SavedMap;
  const { range, uids } = saved ?? {};
  if (!range || !Number.isInteger(range.first) || !Number.isInteger(range.count) || range.first < 1) {
    throw bad("no valid range");
  }
  if (!uids || typeof uids !== "object") throw bad("no map of uids");
  for (const [key, uid] of Object.entries(uids)) {
    // A uid outside the range would escape the firewall rules, which match the range.
    if (!Number.isInteger(uid) || uid < range.first || uid > lastUid(range)) {
      throw bad(`uid ${String(uid)} of ${key} is outside ${range.first}-${lastUid(range)}`);
    }
  }
  return { range, uids };
}
