/**
 * The agent's side of the config center: the feed its instances follow on
 * 127.0.0.1, and what applying a new version to one instance means.
 *
 *   heartbeat reply: desired.config {version, onChange, document?}
 *     ─► writeInstanceConfig(<instance>/config: root's, not in the app dir)  (atomic renames)
 *     ─► feed.publish(id, document)                    (long polls answered, SSE streams written)
 *     ─► onChange: file → nothing more; signal → SIGHUP to its processes (not the shells that wrap
 *        them: `sh -c` would die of it); restart → the agent restarts it
 *     ─► the next heartbeat reports configVersion
 *
 * The feed's port and secret are kept in `<dataDir>/config-feed.json` (0600)
 * and taken again by the next agent, so the URLs running instances were given
 * stay good across an agent restart.
 */

import { randomBytes, timingSafeEqual } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writePrivateFile } from "../common/private-file.ts";
import type { EffectiveConfig } from "../model/config.ts";
import { ConfigFeed } from "./feed.ts";
import { feedKey, readInstanceConfig, writeInstanceConfig } from "./instance-files.ts";

/** The env an instance is given to find its config. */
export interface ConfigEnv {
  HERD_CONFIG_FILE: string;
  HERD_CONFIG_DIR: string;
  HERD_CONFIG_URL: string;
}

export class InstanceConfigFeed {
  readonly feed: ConfigFeed;
  readonly #secret: string;
  readonly #url: string;

  private constructor(feed: ConfigFeed, secret: string, url: string) {
    this.feed = feed;
    this.#secret = secret;
    this.#url = url;
  }

  /** Starts the feed on 127.0.0.1, on the port an earlier agent used when it is free. */
  static async start(dataDir: string): Promise<InstanceConfigFeed> {
    const stateFile = join(dataDir, "config-feed.json");
    let saved: { port?: number; secret?: string } = {};
    try {
      saved = JSON.parse(readFileSync(stateFile, "utf8"));
    } catch {
      // First start, or a broken file: a new port and secret.
    }
    const secret =
      typeof saved.secret === "string" && saved.secret.length >= 32
        ? saved.secret
        : randomBytes(32).toString("hex");
    // An instance's key, computed once: every long poll asks again.
    const keys = new Map<string, Buffer>();
    const keyOf = (id: string) => {
      let key = keys.get(id);
      if (!key) {
        if (keys.size > 10_000) keys.clear();
        key = Buffer.from(feedKey(secret, id));
        keys.set(id, key);
      }
      return key;
    };
    const feed = new ConfigFeed({
      authorize: (id, key) => {
        const want = keyOf(id);
        const got = Buffer.from(key);
        return got.length === want.length && timingSafeEqual(got, want);
      },
    });
    let bound: { url: string; port: number };
    try {
      bound = await feed.listen(typeof saved.port === "number" ? saved.port : 0);
    } catch {
      bound = await feed.listen(0);
    }
    writePrivateFile(stateFile, JSON.stringify({ port: bound.port, secret }));
    return new InstanceConfigFeed(feed, secret, bound.url);
  }

  /** The env that tells instance `id` (its config in `dir`) where its config is. */
  envFor(id: string, dir: string): ConfigEnv {
    return {
      HERD_CONFIG_FILE: join(dir, "config.json"),
      HERD_CONFIG_DIR: join(dir, "files"),
      HERD_CONFIG_URL: `${this.#url}/config/${id}?key=${feedKey(this.#secret, id)}`,
    };
  }

  /** Writes `doc` into the instance's config dir and hands it to its followers. */
  async apply(id: string, dir: string, doc: EffectiveConfig): Promise<void> {
    await writeInstanceConfig(dir, doc);
    this.feed.publish(id, doc);
  }

  /** An adopted instance: its followers get what its files say; the version applied, when there is one. */
  async adopt(id: string, dir: string, tenant: string): Promise<number | undefined> {
    const doc = await readInstanceConfig(dir, tenant);
    if (doc) this.feed.publish(id, doc);
    return doc?.version;
  }

  remove(id: string): void {
    this.feed.remove(id);
  }

  close(): Promise<void> {
    return this.feed.close();
  }
}

/** Shells that wrap an instance's command (`/bin/sh -c`): a SIGHUP would end them, so they are left out. */
const SHELLS = new Set(["sh", "dash", "bash", "ash", "busybox"]);

/**
 * Sends SIGHUP to the processes of process group `pgid` other than the
 * shells that wrap the command; returns how many got it. Reads /proc.
 */
export function sighupGroup(pgid: number): number {
  let sent = 0;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid pgrp …: comm may hold spaces and parentheses, so split after the last ")".
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(stat.indexOf("(") + 1, close);
    const fields = stat.slice(close + 2).split(" ");
    if (Number(fields[2]) !== pgid || SHELLS.has(comm)) continue;
    try {
      process.kill(Number(name), "SIGHUP");
      sent++;
    } catch {
      // gone meanwhile
    }
  }
  return sent;
}
