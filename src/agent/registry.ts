/**
 * The local OCI registry (Debian's `docker-registry`, the distribution's
 * registry), started by herd when asked and never by the system: its
 * config, data, pid file and log under one directory, listening on one
 * address. Built
 * images are pushed to it and run by digest (docker-images.ts); agents pull
 * from it. On loopback it speaks plain HTTP without auth (an engine trusts
 * 127.0.0.0/8); on another address it serves TLS with a certificate of herd's
 * registry CA and basic auth (an htpasswd file made with Debian apache2-utils'
 * `htpasswd -B`), both from the control plane's POST /registry/credentials
 * (docs/containers.md).
 *
 * collect() is its garbage collection: the manifests of tags not kept are
 * deleted through the registry's API, then `docker-registry garbage-collect
 * --delete-untagged` removes unreferenced blobs while the registry is stopped
 * (the collector is not safe beside uploads), and the registry starts again
 * on the same address.
 */

import { execFile, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
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
import { type ApiAnswer, apiRequest } from "../common/api-request.ts";
import { findBinary } from "../common/debian-packages.ts";
import { HerdError } from "../common/errors.ts";
import { writePrivateFile } from "../common/private-file.ts";

const run = promisify(execFile);

/** What a manifest request accepts: Docker's v2 schema and OCI's, as engines push either. */
const MANIFEST_TYPES = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.index.v1+json",
].join(", ");

/**
 * How to reach a registry: its host:port and, off loopback, the CA its
 * certificate is signed by (https) and the credential it asks for.
 */
export interface RegistryAccess {
  address: string;
  /** PEM: the registry serves TLS with a certificate of this CA. */
  ca?: string;
  username?: string;
  password?: string;
}

export interface RegistryOptions {
  /** host:port to listen on; the host must be an address of this machine. */
  listen: string;
  /** TLS: its certificate and key (PEM) and the CA that signed them. */
  tls?: { cert: string; key: string; ca: string };
  /** Basic auth with this one user (the htpasswd file is made with `htpasswd`, Debian apache2-utils). */
  auth?: { username: string; password: string };
  /** The htpasswd binary (default: htpasswd on PATH or in /usr/sbin). */
  htpasswd?: string;
  /** The registry binary (default: docker-registry on PATH). */
  binary?: string;
  startTimeoutMs?: number;
}

/** A running registry under `dir`. */
export interface Registry {
  /** host:port, as image references name it (`HOST:PORT/herd-build@sha256:…`). */
  address: string;
  /** How this agent's engine and collection reach it. */
  access: RegistryAccess;
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
  const access: RegistryAccess = {
    address: options.listen,
    ...(options.tls ? { ca: options.tls.ca } : {}),
    ...(options.auth ?? {}),
  };
  const secured: string[] = [];
  if (options.tls) {
    writePrivateFile(join(dir, "cert.pem"), options.tls.cert);
    writePrivateFile(join(dir, "key.pem"), options.tls.key);
    secured.push(
      `  tls: { certificate: ${JSON.stringify(join(dir, "cert.pem"))}, key: ${JSON.stringify(join(dir, "key.pem"))} }`,
      // The registry reads them at start: another certificate means another config, and a restart.
      `# certificate ${createHash("sha256").update(options.tls.cert).digest("hex")}`,
    );
  }
  if (options.auth) {
    writeHtpasswd(join(dir, "htpasswd"), options.auth, options.htpasswd);
    secured.push(
      `auth: { htpasswd: { realm: herd, path: ${JSON.stringify(join(dir, "htpasswd"))} } }`,
      `# user ${createHash("sha256").update(`${options.auth.username}:${options.auth.password}`).digest("hex")}`,
    );
  }
  const text = [
    "version: 0.1",
    "log: { level: warn }",
    "storage:",
    `  filesystem: { rootdirectory: ${JSON.stringify(join(dir, "data"))} }`,
    "  delete: { enabled: true }",
    "  maintenance: { uploadpurging: { enabled: false } }",
    "http:",
    `  addr: ${JSON.stringify(options.listen)}`,
    ...secured,
    "",
  ].join("\n");
  // One left running with another config (another address) gives way.
  if (readIfPresent(config) !== text) await stopRegistry(dir);
  writeFileSync(config, text);

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
        const res = await registryRequest(access, "/v2/", { timeoutMs: 1000 });
        res.body.resume();
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
    const catalog = (await registryJson<{ repositories: string[] }>(access, "/v2/_catalog")).repositories;
    for (const repository of catalog) {
      const tags =
        (await registryJson<{ tags: string[] | null }>(access, `/v2/${repository}/tags/list`)).tags ?? [];
      const digests = new Map<string, string>();
      for (const tag of tags) {
        const digest = await manifestDigest(access, repository, tag);
        if (digest) digests.set(tag, digest);
      }
      // Deleting a manifest deletes every tag that points at it: a digest a kept tag names stays.
      const kept = new Set([...digests].filter(([tag, d]) => keep(repository, tag, d)).map(([, d]) => d));
      for (const [tag, digest] of digests) {
        if (kept.has(digest)) continue;
        const res = await registryRequest(access, `/v2/${repository}/manifests/${digest}`, {
          method: "DELETE",
        });
        res.body.resume();
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
    access,
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

/** The digest the registry holds for repository:tag, or undefined when it has no such tag. */
export async function manifestDigest(
  access: RegistryAccess,
  repository: string,
  tag: string,
): Promise<string | undefined> {
  const res = await registryRequest(access, `/v2/${repository}/manifests/${tag}`, {
    method: "HEAD",
    headers: { accept: MANIFEST_TYPES },
  });
  res.body.resume();
  if (res.status === 404) return undefined;
  if (!res.ok)
    throw new HerdError("unavailable", `registry ${access.address}: ${repository}:${tag}: ${res.status}`);
  const digest = res.headers["docker-content-digest"];
  return typeof digest === "string" ? digest : undefined;
}

/** A request to the registry: https verified with its CA and basic auth when `access` has them. */
export function registryRequest(
  access: RegistryAccess,
  path: string,
  init: { method?: string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<ApiAnswer> {
  const headers = { ...init.headers };
  if (access.username !== undefined)
    headers.authorization = `Basic ${Buffer.from(`${access.username}:${access.password ?? ""}`).toString("base64")}`;
  return apiRequest(`${access.ca ? "https" : "http"}://${access.address}${path}`, {
    method: init.method ?? "GET",
    headers,
    signal: AbortSignal.timeout(init.timeoutMs ?? 10_000),
    ...(access.ca ? { ca: access.ca } : {}),
  });
}

async function registryJson<T>(access: RegistryAccess, path: string): Promise<T> {
  const res = await registryRequest(access, path);
  const text = await res.text();
  if (!res.ok) throw new HerdError("unavailable", `registry: GET ${path}: ${res.status}`);
  return JSON.parse(text) as T;
}

/** The htpasswd file of one user, bcrypt (`htpasswd -B`: the registry takes bcrypt only). */
function writeHtpasswd(file: string, auth: { username: string; password: string }, binary?: string): void {
  const htpasswd = binary ?? findBinary("htpasswd");
  if (!htpasswd) throw new HerdError("unavailable", "htpasswd not found: install apache2-utils");
  // -i: the password on stdin, never in a command line other users can read.
  const r = spawnSync(htpasswd, ["-niB", auth.username], { input: auth.password, encoding: "utf8" });
  if (r.status !== 0)
    throw new HerdError("unavailable", `htpasswd failed: ${(r.stderr || r.error?.message || "").trim()}`);
  writePrivateFile(file, r.stdout);
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
