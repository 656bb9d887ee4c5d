/**
 * Deploy logs: what `herd deploy` shows while it waits — build output, rollout
 * steps, new instances' health checks as they happen (probe-log.ts), and a
 * final `done` entry. Kept as NDJSON files in the data dir so a
 * reconnecting client (or a restarted server) can replay them, for the last
 * `keepPerApp` finished deploys of each app (older ones are removed as a
 * deploy finishes, by release-history.ts pruneHistory).
 */

import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Deploy, DeployState } from "../model/objects.ts";

/** How many finished deploys of an app keep their logs by default. */
export const KEPT_DEPLOY_LOGS = 20;

export interface DeployLogEntry {
  time: string;
  /** health: an outcome of a new instance's health check (probe-log.ts). */
  type: "build" | "step" | "health" | "done";
  message: string;
  state?: DeployState;
}

export class DeployLogs {
  readonly #dir: string;
  readonly #listeners = new Map<string, Set<(e: DeployLogEntry) => void>>();
  /** How many finished deploys of an app keep their logs (prune()). */
  readonly keepPerApp: number;

  constructor(dir: string, options: { keepPerApp?: number } = {}) {
    this.#dir = dir;
    this.keepPerApp = options.keepPerApp ?? KEPT_DEPLOY_LOGS;
    mkdirSync(dir, { recursive: true });
  }

  /** Whether the deploy's log is kept (a pruned or never-started one is not). */
  has(id: string): boolean {
    return existsSync(this.#file(id));
  }

  /**
   * Removes the logs of an app's finished deploys (newest first:
   * release-history.ts finishedDeploys) beyond the newest `keepPerApp`;
   * deploys still running are not in the list and keep theirs.
   */
  prune(finished: readonly Pick<Deploy, "id">[]): void {
    for (const d of finished.slice(this.keepPerApp)) rmSync(this.#file(d.id), { force: true });
  }

  #file(id: string): string {
    if (!/^[a-z0-9]+$/.test(id)) throw new Error(`bad deploy id ${id}`);
    return join(this.#dir, `${id}.ndjson`);
  }

  append(id: string, type: DeployLogEntry["type"], message: string, state?: DeployState): void {
    const entry: DeployLogEntry = {
      time: new Date().toISOString(),
      type,
      message,
      ...(state ? { state } : {}),
    };
    appendFileSync(this.#file(id), `${JSON.stringify(entry)}\n`);
    for (const l of this.#listeners.get(id) ?? []) l(entry);
  }

  /** Entries so far. */
  read(id: string): DeployLogEntry[] {
    let text = "";
    try {
      text = readFileSync(this.#file(id), "utf8");
    } catch {
      return [];
    }
    return text
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as DeployLogEntry);
  }

  /** Every entry from the start, then live ones, ending after `done`. */
  async *follow(id: string, signal: AbortSignal): AsyncGenerator<DeployLogEntry> {
    const pending: DeployLogEntry[] = [];
    let wake: (() => void) | undefined;
    const listener = (e: DeployLogEntry) => {
      pending.push(e);
      wake?.();
    };
    let set = this.#listeners.get(id);
    if (!set) {
      set = new Set();
      this.#listeners.set(id, set);
    }
    set.add(listener);
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort);
    try {
      // Subscribing and reading happen in the same tick (appends are synchronous), so nothing is missed or doubled.
      for (const e of this.read(id)) {
        yield e;
        if (e.type === "done") return;
      }
      while (!signal.aborted) {
        while (pending.length > 0) {
          const e = pending.shift()!;
          yield e;
          if (e.type === "done") return;
        }
        await new Promise<void>((r) => {
          wake = r;
        });
        wake = undefined;
      }
    } finally {
      set.delete(listener);
      if (set.size === 0) this.#listeners.delete(id);
      signal.removeEventListener("abort", onAbort);
    }
  }
}
