/**
 * The builder: turns an uploaded source (a digest in the artifact store) into
 * a slug, a tarball an agent unpacks and runs as is. Dependencies are
 * installed here, once, not on every node.
 *
 *   source digest → unpack → detect → install (npm) / add static server → packAll → slug digest
 */

import { spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { delimiter, dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { HerdError } from "../common/errors.ts";
import type { ServiceSpec } from "../model/manifest.ts";
import type { Resources } from "../model/objects.ts";
import type { ArtifactStore } from "./artifact-store.ts";
import { type AppDefinition, type AppKind, loadAppDefinition } from "./detect.ts";
import { packAll } from "./pack.ts";
import { type UnpackLimits, unpackTarball } from "./unpack.ts";

/** What buildSlug needs. */
export interface BuildOptions {
  /** Where the source is and where the slug goes. */
  artifacts: ArtifactStore;
  /** Digest of the uploaded source tarball. */
  source: string;
  /** A directory for scratch space; each build makes (and removes) its own subdirectory. */
  workDir: string;
  /** App name to use instead of the detected one. */
  app?: string;
  /** The platform's resource unit (services ask for `units` of it). */
  unit?: Resources;
  /** Receives the build log, one line at a time. */
  log: (line: string) => void;
  /** Stops the build (and any running npm) when aborted; buildSlug then rejects with the abort reason. */
  signal?: AbortSignal;
  /** Time limit for each install command; default 10 minutes. */
  timeoutMs?: number;
  /** How much the source may unpack to (the tenant's limits; defaults in unpack.ts). */
  unpack?: UnpackLimits;
}

/** A finished build: the slug's digest and what it runs. */
export interface BuildResult {
  slug: string;
  app: string;
  kind: AppKind;
  services: Record<string, ServiceSpec>;
  /** herd.yaml's alert rules. */
  alerts?: AppDefinition["alerts"];
}

const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;
/** Lines of command output kept for the error of a failed build. */
const TAIL_LINES = 20;
const STATIC_SERVER = fileURLToPath(new URL("./static-server.mjs", import.meta.url));

const DETECTED: Record<AppKind, string> = {
  manifest: "herd.yaml found",
  node: "Node app detected",
  procfile: "Procfile app detected",
  static: "Static site detected",
};

/**
 * Builds the source `options.source` into a slug stored in the same artifact
 * store. Fails with HerdError("invalid") when the source cannot be unpacked,
 * nothing runnable is detected, or installing dependencies fails or times out
 * (details hold the last lines of output).
 */
export async function buildSlug(options: BuildOptions): Promise<BuildResult> {
  const { artifacts, log, signal } = options;
  signal?.throwIfAborted();
  await mkdir(options.workDir, { recursive: true });
  const buildDir = await mkdtemp(join(options.workDir, "build-"));
  const appDir = join(buildDir, "app");
  try {
    log(`-----> Unpacking source ${options.source.slice(0, 12)}`);
    await unpackTarball(await artifacts.path(options.source), appDir, options.unpack);

    const definition = await loadAppDefinition(appDir, { app: options.app, unit: options.unit });
    log(
      `-----> ${DETECTED[definition.kind]}: app ${definition.app}, services ${Object.keys(definition.services).join(", ")}`,
    );

    signal?.throwIfAborted();
    await installDependencies(appDir, options);

    if (definition.kind === "static") {
      log("-----> Adding the static file server as .herd/static-server.mjs");
      await mkdir(join(appDir, ".herd"), { recursive: true });
      await copyFile(STATIC_SERVER, join(appDir, ".herd", "static-server.mjs"));
    }

    signal?.throwIfAborted();
    const packed = await packAll(appDir);
    try {
      log(`-----> Compressing slug: ${packed.files} files, ${formatSize(packed.size)}`);
      const stored = await artifacts.putFile(packed.file);
      for (const [name, spec] of Object.entries(definition.services)) log(`       ${name}: ${spec.command}`);
      log(`-----> Slug ${stored.digest.slice(0, 12)} ready`);
      return { slug: stored.digest, ...definition };
    } finally {
      await rm(packed.file, { force: true });
    }
  } finally {
    await rm(buildDir, { recursive: true, force: true });
  }
}

/** npm ci with a lockfile, npm install without; nothing when there is nothing to install. */
async function installDependencies(appDir: string, options: BuildOptions): Promise<void> {
  const pkgText = await readFile(join(appDir, "package.json"), "utf8").catch(() => undefined);
  if (pkgText === undefined) return;
  // detect.ts has already rejected a package.json that is not a JSON object.
  const pkg = JSON.parse(pkgText) as { dependencies?: Record<string, string> };
  const hasLock =
    (await isFile(join(appDir, "package-lock.json"))) || (await isFile(join(appDir, "npm-shrinkwrap.json")));
  const hasDependencies = Object.keys(pkg.dependencies ?? {}).length > 0;
  if (!hasDependencies && !hasLock) {
    options.log("-----> No dependencies to install");
    return;
  }
  const args = [hasLock ? "ci" : "install", "--omit=dev", "--no-audit", "--no-fund"];
  options.log(`-----> Installing dependencies with npm ${hasLock ? "ci" : "install"}`);
  await runCommand("npm", args, appDir, options);
}

/** Runs a build command with the pinned Node first in PATH, streaming its output to the log. */
async function runCommand(
  command: string,
  args: string[],
  cwd: string,
  options: BuildOptions,
): Promise<void> {
  const { log, signal } = options;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const display = [command, ...args].join(" ");
  // npm's `#!/usr/bin/env node` then runs on the same Node as herd, and so do install scripts.
  const path = [dirname(process.execPath), process.env.PATH ?? ""].join(delimiter);
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, PATH: path, NODE_ENV: "production", npm_config_update_notifier: "false" },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so a timeout also stops what npm started (install scripts).
    detached: true,
  });
  const tail: string[] = [];
  const onLine = (line: string): void => {
    log(`       ${line}`);
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
  };
  const streams = [child.stdout, child.stderr].map((s) => {
    const lines = createInterface({ input: s, crlfDelay: Number.POSITIVE_INFINITY });
    lines.on("line", onLine);
    return new Promise<void>((resolve) => lines.on("close", resolve));
  });

  let stoppedBy: "timeout" | "abort" | undefined;
  const stop = (why: "timeout" | "abort"): void => {
    stoppedBy ??= why;
    try {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  };
  const timer = setTimeout(() => stop("timeout"), timeoutMs);
  const onAbort = (): void => stop("abort");
  signal?.addEventListener("abort", onAbort, { once: true });

  try {
    const code = await new Promise<number | string>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (exitCode, exitSignal) => resolve(exitCode ?? `signal ${exitSignal}`));
    }).catch((err: NodeJS.ErrnoException) => {
      throw new HerdError("invalid", `build failed: cannot run ${command}: ${err.message}`);
    });
    await Promise.all(streams);
    if (stoppedBy === "abort") throw signal?.reason ?? new Error("build cancelled");
    const details = tail.map((line) => ({ field: "build", message: line }));
    if (stoppedBy === "timeout") {
      throw new HerdError(
        "invalid",
        `build failed: ${display} timed out after ${Math.round(timeoutMs / 1000)} s`,
        details,
      );
    }
    if (code !== 0) throw new HerdError("invalid", `build failed: ${display} exited with ${code}`, details);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}
