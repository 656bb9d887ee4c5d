/**
 * The local OCI registry (Debian's `docker-registry`, the distribution's
 * registry), started by herd when asked and never by the system: its
 * config, data, pid file and log under one directory, listening on one
 * address. Built
 * images are pushed to it and run by digest (docker-images.ts); agents pull
 * from it. An engine trusts a registry on 127.0.0.0/8 without TLS; an engine
 * on another machine needs `--insecure-registry HOST:PORT` (docs/containers.md).
 *
 * collect() is its garbage collection: the manifests of tags not kept are
 * deleted through the registry's API, then `docker-registry garbage-collect
 * --delete-untagged` removes unreferenced blobs while the registry is stopped
 * (the collector is not safe beside uploads), and the registry starts again
 * on the same address.
 */

import { execFile, spawn } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { HerdError } from "../common/errors.ts";

const run = promisify(execFile);

/** What a manifest request accepts: Docker's v2 schema and OCI's, as engines push either. */
const MANIFEST_TYPES = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.index.v1+json",
].join(", ");

export interface RegistryOptions {
  /** host:port to listen on; the host must be an address of this machine. */
  listen: string;
  /** The registry binary (default: docker-registry on PATH). */
  binary?: string;
  startTimeoutMs?: number;
}

/** A running registry under `dir`. */
export interface Registry {
  /** host:port, as image references name it (`HOST:PORT/herd-build@sha256:…`). */
  address: string;
  pid(): number | undefined;
  /**
   * Deletes every tag `keep` refuses, then the blobs nothing references any
   * more. Returns the tags deleted and the bytes the data dir shrank by.
   */
  collect(
    keep: (repository: string, tag: string, digest: string) => boolean,
  ): Promise<{ deleted: string[]; freedBytes: number }>;
  /**
   * collect() keeping what kept releases run (`kept.digests`, and
   * `kept.images`: `HOST:PORT/repo:tag` references of this registry) and
   * every tag pushed in the last `graceMs`. A node that needs a collected
   * build builds it again and pushes it anew.
   */
  collectUnused(
    kept: { digests: string[]; images: string[] },
    graceMs: number,
  ): Promise<{ deleted: string[]; freedBytes: number }>;
  stop(): Promise<void>;
}

/**
 * Starts the registry with its config, data, pid file and log under `dir`,
 * in its own session (it outlives the agent, as dockerd and the instances
 * do), unless the one an earlier agent started there still runs with the
 * same config: that one is adopted. Resolves once it answers /v2/.
 */
export async function startRegistry(dir: string, options: RegistryOptions): Promise<Registry> {
  const binary = options.binary ?? "docker-registry";
  mkdirSync(join(dir, "data"), { recursive: true });
  const config = join(dir, "config.yml");
  const text = [
    "version: 0.1",
    "log: { level: warn }",
    "storage:",
    `  filesystem: { rootdirectory: ${JSON.stringify(join(dir, "data"))} }`,
    "  delete: { enabled: true }",
    "  maintenance: { uploadpurging: { enabled: false } }",
    `http: { addr: ${JSON.stringify(options.listen)} }`,
    "",
  ].join("\n");
  // One left running with another config (another address) gives way.
  if (readIfPresent(config) !== text) await stopRegistry(dir);
  writeFileSync(config, text);
  const base = `http://${options.listen}`;

  const start = async () => {
    if (registryPid(dir) === undefined) {
      const log = openSync(join(dir, "registry.log"), "a");
      try {
        const child = spawn(binary, ["serve", config], { stdio: ["ignore", log, log], detached: true });
        child.once("error", () => {});
        child.unref();
        if (child.pid !== undefined) writeFileSync(join(dir, PID_FILE), String(child.pid));
      } finally {
        closeSync(log);
      }
    }
    const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
    for (;;) {
      if (registryPid(dir) === undefined)
        throw new HerdError(
          "unavailable",
          `docker-registry exited at start; see ${join(dir, "registry.log")}`,
        );
      try {
        const res = await fetch(`${base}/v2/`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await stopRegistry(dir);
        throw new HerdError("unavailable", `docker-registry did not answer on ${options.listen}`);
      }
      await sleep(50);
    }
  };
  const stop = () => stopRegistry(dir);

  /** When the registry stored repository:tag last: its filesystem layout's tag link. */
  const pushedAt = (repository: string, tag: string) => {
    try {
      return statSync(
        join(dir, "data/docker/registry/v2/repositories", repository, "_manifests/tags", tag, "current/link"),
      ).mtimeMs;
    } catch {
      return 0;
    }
  };

  const collect: Registry["collect"] = async (keep) => {
    const before = dirBytes(join(dir, "data"));
    const deleted: string[] = [];
    const catalog = (await registryJson<{ repositories: string[] }>(`${base}/v2/_catalog`)).repositories;
    for (const repository of catalog) {
      const tags =
        (await registryJson<{ tags: string[] | null }>(`${base}/v2/${repository}/tags/list`)).tags ?? [];
      const digests = new Map<string, string>();
      for (const tag of tags) {
        const digest = await manifestDigest(options.listen, repository, tag);
        if (digest) digests.set(tag, digest);
      }
      // Deleting a manifest deletes every tag that points at it: a digest a kept tag names stays.
      const kept = new Set([...digests].filter(([tag, d]) => keep(repository, tag, d)).map(([, d]) => d));
      for (const [tag, digest] of digests) {
        if (kept.has(digest)) continue;
        const res = await fetch(`${base}/v2/${repository}/manifests/${digest}`, { method: "DELETE" });
        if (!res.ok && res.status !== 404)
          throw new HerdError("unavailable", `registry: cannot delete ${repository}:${tag}: ${res.status}`);
        deleted.push(`${repository}:${tag}`);
      }
    }
    if (deleted.length > 0) {
      await stop();
      // Not spawnSync: a large registry's collection must not hold the agent's heartbeats.
      const gc = await run(binary, ["garbage-collect", "--delete-untagged", config]).then(
        () => undefined,
        (err: Error & { stderr?: string }) => (err.stderr ?? err.message).trim(),
      );
      await start();
      if (gc !== undefined)
        throw new HerdError("unavailable", `docker-registry garbage-collect failed: ${gc}`);
    }
    return { deleted, freedBytes: Math.max(0, before - dirBytes(join(dir, "data"))) };
  };

  await start();
  return {
    collect,
    address: options.listen,
    async collectUnused(kept, graceMs) {
      const digests = new Set(kept.digests);
      const images = new Set(kept.images);
      const since = Date.now() - graceMs;
      return collect(
        (repository, tag, digest) =>
          digests.has(digest) ||
          images.has(`${options.listen}/${repository}:${tag}`) ||
          pushedAt(repository, tag) > since,
      );
    },
    pid: () => registryPid(dir),
    stop,
  };
}

const PID_FILE = "registry.pid";

/** The pid of the registry serving dir's config (its pid file names a live `docker-registry serve` of it), or undefined. */
export function registryPid(dir: string): number | undefined {
  const pid = Number(readIfPresent(join(dir, PID_FILE)));
  if (!(pid > 0)) return undefined;
  const args = readIfPresent(`/proc/${pid}/cmdline`)?.split("\0") ?? [];
  // A zombie (exited, not yet reaped by the agent that started it) has no command line.
  return args.includes("serve") && args.includes(join(dir, "config.yml")) ? pid : undefined;
}

/** Stops the registry serving dir's config, if one runs, and waits until it is gone. */
export async function stopRegistry(dir: string, timeoutMs = 10_000): Promise<void> {
  const pid = registryPid(dir);
  if (pid === undefined) return;
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (registryPid(dir) !== undefined && Date.now() < deadline) await sleep(50);
  if (registryPid(dir) !== undefined) process.kill(pid, "SIGKILL");
  while (registryPid(dir) !== undefined) await sleep(50);
  rmSync(join(dir, PID_FILE), { force: true });
}

/** The digest the registry at `address` holds for repository:tag, or undefined when it has no such tag. */
export async function manifestDigest(
  address: string,
  repository: string,
  tag: string,
): Promise<string | undefined> {
  const res = await fetch(`http://${address}/v2/${repository}/manifests/${tag}`, {
    method: "HEAD",
    headers: { accept: MANIFEST_TYPES },
    signal: AbortSignal.timeout(10_000),
  });
  if (res.status === 404) return undefined;
  if (!res.ok) throw new HerdError("unavailable", `registry ${address}: ${repository}:${tag}: ${res.status}`);
  return res.headers.get("docker-content-digest") ?? undefined;
}

async function registryJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new HerdError("unavailable", `registry: GET ${url}: ${res.status}`);
  return (await res.json()) as T;
}

function readIfPresent(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += statSync(join(entry.parentPath, entry.name)).size;
  }
  return total;
}
