/**
 * Collects artifacts nothing refers to any more: the slugs and sources of
 * destroyed apps (preview apps come and go with their pull requests), builds
 * that failed, the dumps of add-on backups that were deleted. Without it the
 * artifact store only grows.
 *
 *   every object of every kind in the store ─► each 64-hex string in it ─► referenced
 *   ArtifactStore.list() ─► not referenced and written over `graceMs` ago ─► remove
 *
 * What counts as a reference is any sha256 digest anywhere in a stored
 * object but an event (a record of what happened, such as a destroyed
 * add-on's final backup, not a use of it), not a list of fields: a field added later (a new kind that names an
 * artifact) keeps its artifact without this module knowing it. The grace
 * period covers what is not referenced yet: an upload whose build runs (a
 * build ends within its 10-minute limit), a slug whose release is being
 * written. The leader runs it (one server of those sharing the artifacts
 * directory), an hour after its term begins and every hour after that.
 */

import type { Logger } from "../common/log.ts";
import { KINDS } from "../model/objects.ts";
import type { Store } from "../store/store.ts";
import type { ArtifactStore } from "./artifact-store.ts";

/** How old an unreferenced artifact must be to go. */
export const ARTIFACT_GRACE_MS = 60 * 60 * 1000;
const EVERY_MS = 60 * 60 * 1000;
const DIGEST = /\b[0-9a-f]{64}\b/g;

export interface CollectedArtifacts {
  removed: number;
  bytes: number;
  kept: number;
  /** Temp files of writes that never finished. */
  unfinished: number;
}

export interface ArtifactCollectorOptions {
  store: Store;
  artifacts: ArtifactStore;
  logger: Logger;
  graceMs?: number;
  intervalMs?: number;
  now?: () => number;
}

export class ArtifactCollector {
  readonly #o: ArtifactCollectorOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;

  constructor(options: ArtifactCollectorOptions) {
    this.#o = options;
  }

  start(): void {
    this.#timer = setInterval(() => {
      this.#running ??= this.collect()
        .catch((err) => this.#o.logger.warn("collecting artifacts failed", { err }))
        .finally(() => {
          this.#running = undefined;
        });
    }, this.#o.intervalMs ?? EVERY_MS);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }

  /** One round: removes every artifact no stored object names and older than the grace period. */
  async collect(): Promise<CollectedArtifacts> {
    const now = (this.#o.now ?? Date.now)();
    const before = now - (this.#o.graceMs ?? ARTIFACT_GRACE_MS);
    // Listed before the references are read: an artifact written later is younger than the grace anyway.
    const stored = await this.#o.artifacts.list();
    const referenced = await referencedDigests(this.#o.store);
    const result: CollectedArtifacts = { removed: 0, bytes: 0, kept: 0, unfinished: 0 };
    for (const a of stored) {
      if (referenced.has(a.digest) || a.writtenAt > before) {
        result.kept++;
        continue;
      }
      if (await this.#o.artifacts.remove(a.digest, before)) {
        result.removed++;
        result.bytes += a.size;
      } else result.kept++;
    }
    result.unfinished = await this.#o.artifacts.removeUnfinished(before);
    if (result.removed > 0 || result.unfinished > 0)
      this.#o.logger.info("collected artifacts", { ...result });
    return result;
  }
}

/** Every sha256 digest named anywhere in the store's objects (events only tell of them: they do not count). */
export async function referencedDigests(store: Store): Promise<Set<string>> {
  const found = new Set<string>();
  for (const kind of KINDS) {
    if (kind === "event") continue;
    for (const o of (await store.list(kind)).items) {
      for (const m of JSON.stringify(o.value).matchAll(DIGEST)) found.add(m[0]);
    }
  }
  return found;
}
