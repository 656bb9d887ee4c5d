/**
 * Where and how build commands (npm ci, npm install and the install scripts
 * they run) execute: a bounded number at once, each in a throwaway directory
 * outside the data dir, with a clean environment, a time limit, and where the
 * machine allows (root) as the app's own build uid inside the sandbox
 * (agent/sandbox.ts) and a cgroup with CPU, memory and pids limits.
 *
 *   slot (queue) ─► scratch dir (os.tmpdir()/herd-build-*) ─► unpack, detect (root, no code run)
 *     ─► run: chown app to the build uid ─► cgroup build-<id> ─► firewall (build-firewall.ts) ─► sandbox (own pids):
 *            app at /run/herd-sandbox/app, the app's cache dir at /run/herd-sandbox/data (HOME, npm cache)
 *     ─► pack (root) ─► remove scratch dir, release slot
 *
 * The cache dir of an app (`<cacheDir>/apps/<tenant>/<app>`) is kept between
 * builds, owned by that app's build uid, so a repeat build finds its packages.
 */

import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { lchown, mkdir, mkdtemp } from "node:fs/promises";
import { networkInterfaces, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import {
  type CgroupSupport,
  cgroupProcsFiles,
  createInstanceCgroup,
  destroyInstanceCgroup,
  detectCgroups,
  type InstanceCgroup,
  killCgroup,
} from "../agent/cgroups.ts";
import {
  chownTree,
  detectSandbox,
  launchArgs,
  launchEnv,
  ownPidsAllowed,
  type SandboxSpec,
  type SandboxSupport,
  VIEW_APP,
  VIEW_DATA,
  VIEW_NODE,
} from "../agent/sandbox.ts";
import { UidMap, uidRangeFor } from "../agent/uids.ts";
import { HerdError } from "../common/errors.ts";
import { BuildFirewall, localPortsOf } from "./build-firewall.ts";

/** What one build command may use. */
export interface BuildLimits {
  cpuCores: number;
  memoryBytes: number;
  pids: number;
  /** For each command; its whole process group (and cgroup) is killed then. */
  timeoutMs: number;
}

export const DEFAULT_BUILD_LIMITS: BuildLimits = {
  cpuCores: 1,
  memoryBytes: 2 * 1024 ** 3,
  pids: 1024,
  timeoutMs: 10 * 60 * 1000,
};

export interface BuildRunnerOptions {
  /** Per-app caches and the build uids (uids.json), kept between builds; root only. */
  cacheDir: string;
  /** Where each build's throwaway directory is made; default os.tmpdir(). */
  scratchDir?: string;
  /** Builds at once; the rest wait their turn. Default 2. */
  concurrency?: number;
  limits?: Partial<BuildLimits>;
  /** Sandbox and cgroups when the machine allows them (default); false: neither. */
  isolate?: boolean;
}

/** One command of a build. */
export interface BuildCommand {
  command: string;
  args: string[];
  /** The unpacked source on the host. */
  appDir: string;
  /** Whose cache and uid: the tenant (when known) and the app. */
  tenant?: string;
  app: string;
  onLine: (line: string) => void;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** A Node installation (`bin/node`) first in PATH instead of herd's own; seen at VIEW_NODE in the sandbox. */
  node?: string;
}

/** What a build got, for the build log. */
export interface BuildIsolation {
  sandbox: "uid" | "none";
  cgroups: "v1" | "v2" | "none";
  /** nftables: no TCP connection to this machine but DNS (build-firewall.ts). */
  network: "nftables" | "none";
  /** Why a layer is missing. */
  missing: string[];
}

const BASE_PATH = "/usr/local/bin:/usr/bin:/bin";

/**
 * What of the control plane's own environment a build gets: the way out to
 * the internet (a proxy, and the CA files of a proxy that inspects TLS) and
 * the registry npm is pointed at, as set when herd was started. Nothing else
 * of it (tokens, paths) reaches a build.
 */
const PASSED_ENV = [
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
  "npm_config_registry",
  // Where the machine's extra trusted CAs are (Node's, and OpenSSL's for git and native downloads).
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
];

/** The PASSED_ENV entries set in `env`. */
function passedEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(PASSED_ENV.flatMap((name) => (env[name] ? [[name, env[name]]] : [])));
}

/** Runs build commands, at most `concurrency` builds at once. */
export class BuildRunner {
  readonly #cacheDir: string;
  readonly #scratchDir: string;
  readonly #limits: BuildLimits;
  readonly #concurrency: number;
  readonly #sandbox: SandboxSupport;
  readonly #cgroups: CgroupSupport;
  /** With the sandbox: whether build commands get a pid namespace of their own (sandbox.ts ownPids). */
  readonly #ownPids: boolean;
  /** With the sandbox (root): the firewall of the build uids, or why there is none. */
  readonly #firewall: BuildFirewall | { missing: string };
  /** PASSED_ENV from the control plane's environment, read once. */
  readonly #passed: Record<string, string>;
  readonly #uids: UidMap;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(options: BuildRunnerOptions) {
    this.#cacheDir = resolve(options.cacheDir);
    this.#scratchDir = options.scratchDir ?? tmpdir();
    this.#limits = { ...DEFAULT_BUILD_LIMITS, ...options.limits };
    this.#concurrency = Math.max(1, options.concurrency ?? 2);
    const off = "build isolation turned off in the options";
    this.#sandbox = options.isolate === false ? { enabled: false, reason: off } : detectSandbox();
    this.#cgroups =
      options.isolate === false ? { version: "none", reason: off, parents: [] } : detectCgroups();
    this.#ownPids = this.#sandbox.enabled && ownPidsAllowed(this.#sandbox);
    this.#uids = new UidMap(join(this.#cacheDir, "uids.json"), uidRangeFor(this.#cacheDir));
    this.#passed = passedEnv(process.env);
    const own = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address));
    this.#firewall = this.#sandbox.enabled
      ? BuildFirewall.open(this.#cacheDir, this.#uids.range, localPortsOf(this.#passed, own))
      : { missing: "no sandbox, so no build uid to match" };
  }

  /** What builds get on this machine. */
  isolation(): BuildIsolation {
    const missing: string[] = [];
    if (!this.#sandbox.enabled) missing.push(`sandbox: ${this.#sandbox.reason}`);
    if (this.#cgroups.version === "none") missing.push(`cgroups: ${this.#cgroups.reason}`);
    if (this.#sandbox.enabled && !this.#ownPids)
      missing.push(
        "pids: no pid namespace here, so what an install script leaves running outlives it without cgroups",
      );
    const network = "missing" in this.#firewall ? "none" : "nftables";
    if ("missing" in this.#firewall) missing.push(`network: ${this.#firewall.missing}`);
    return {
      sandbox: this.#sandbox.enabled ? "uid" : "none",
      cgroups: this.#cgroups.version,
      network,
      missing,
    };
  }

  /** Builds running now, and waiting for a slot. */
  get load(): { running: number; waiting: number } {
    return { running: this.#active, waiting: this.#waiting.length };
  }

  /** Waits for a free slot (or the abort); call the returned function when the build is done. */
  async slot(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.#active >= this.#concurrency) {
      await new Promise<void>((resolveWait, reject) => {
        const onAbort = (): void => {
          const i = this.#waiting.indexOf(go);
          if (i >= 0) this.#waiting.splice(i, 1);
          reject(signal?.reason ?? new Error("build cancelled"));
        };
        const go = (): void => {
          signal?.removeEventListener("abort", onAbort);
          resolveWait();
        };
        this.#waiting.push(go);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    } else {
      this.#active++;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      // The slot passes straight to the next build; the count stays.
      if (next) next();
      else this.#active--;
    };
  }

  /** A new throwaway directory for one build, outside the data dir (root only until the build uid gets its app). */
  async scratch(): Promise<string> {
    await mkdir(this.#scratchDir, { recursive: true });
    return mkdtemp(join(this.#scratchDir, "herd-build-"));
  }

  /**
   * Runs one command in appDir, streaming its output lines; resolves with its
   * exit code (or signal) and whether the time limit stopped it, rejects with
   * the abort reason when aborted.
   */
  async run(c: BuildCommand): Promise<{ code: number | string; timedOut: boolean; timeoutMs: number }> {
    const cache = join(this.#cacheDir, "apps", c.tenant ?? "_", c.app);
    await mkdir(cache, { recursive: true, mode: 0o700 });
    let sandbox: SandboxSpec | undefined;
    if (this.#sandbox.enabled) {
      const uid = this.#uids.uidOf(`${c.tenant ?? "_"}/${c.app}`);
      await chownTree(c.appDir, uid);
      // Its contents are the uid's own, written by earlier builds.
      await lchown(cache, uid, uid);
      const binds = [
        { host: c.appDir, view: VIEW_APP },
        { host: cache, view: VIEW_DATA },
        ...(c.node ? [{ host: c.node, view: VIEW_NODE }] : []),
      ];
      // Its own pids: whatever a script leaves running (a new session too) dies with the command.
      sandbox = { uid, binds, cwd: VIEW_APP, tmpBytes: this.#limits.memoryBytes / 4, ownPids: this.#ownPids };
    }
    // Before anything of the build runs; let go when its command is over.
    const firewall = sandbox && !("missing" in this.#firewall) ? this.#firewall.hold() : undefined;
    let cgroup: InstanceCgroup | undefined;
    try {
      if (this.#cgroups.version !== "none") {
        cgroup = createInstanceCgroup(this.#cgroups, `build-${randomUUID().slice(0, 12)}`, {
          cpuCores: this.#limits.cpuCores,
          memoryBytes: this.#limits.memoryBytes,
          pids: this.#limits.pids,
        });
      }
    } catch (err) {
      firewall?.();
      throw err;
    }
    const home = sandbox ? VIEW_DATA : cache;
    // Of the control plane's own environment only PASSED_ENV; the app's node (else herd's) first, so install scripts run on it.
    const nodeBin = c.node ? join(sandbox ? VIEW_NODE : c.node, "bin") : dirname(process.execPath);
    const env = {
      ...this.#passed,
      PATH: `${nodeBin}:${BASE_PATH}`,
      HOME: home,
      LANG: "C.UTF-8",
      NODE_ENV: "production",
      npm_config_cache: join(home, "npm-cache"),
      npm_config_update_notifier: "false",
      // npm turns Node's compile cache on in the temp dir: a build leaves nothing there.
      NODE_DISABLE_COMPILE_CACHE: "1",
    };
    const line = [c.command, ...c.args].join(" ");
    const enabled = this.#sandbox.enabled ? this.#sandbox : undefined;
    const launch = launchEnv(env, Boolean(sandbox && enabled));
    const child = spawn(
      "/bin/sh",
      launchArgs(
        line,
        cgroup ? cgroupProcsFiles(cgroup) : [],
        sandbox && enabled && { support: enabled, spec: sandbox },
      ),
      // Its own process group, so a timeout also stops what npm started (install scripts).
      {
        cwd: c.appDir,
        env: launch.env,
        // stdin: the env when sandboxed (launchEnv), else closed at once.
        stdio: ["pipe", "pipe", "pipe"],
        detached: true,
      },
    );
    child.stdin.on("error", () => {});
    child.stdin.end(launch.stdin ?? "");
    const streams = [child.stdout, child.stderr].map((s) => {
      const lines = createInterface({ input: s, crlfDelay: Number.POSITIVE_INFINITY });
      lines.on("line", c.onLine);
      return new Promise<void>((done) => lines.on("close", done));
    });
    let stoppedBy: "timeout" | "abort" | undefined;
    const killGroup = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    };
    const stop = (why: "timeout" | "abort"): void => {
      stoppedBy ??= why;
      killGroup();
      if (cgroup) killCgroup(cgroup);
    };
    const timeoutMs = c.timeoutMs ?? this.#limits.timeoutMs;
    const timer = setTimeout(() => stop("timeout"), timeoutMs);
    const onAbort = (): void => stop("abort");
    c.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const code = await new Promise<number | string>((done, reject) => {
        child.on("error", reject);
        child.on("close", (exitCode, exitSignal) => done(exitCode ?? `signal ${exitSignal}`));
      }).catch((err: NodeJS.ErrnoException) => {
        throw new HerdError("invalid", `build failed: cannot run ${c.command}: ${err.message}`);
      });
      await Promise.all(streams);
      if (stoppedBy === "abort") throw c.signal?.reason ?? new Error("build cancelled");
      return { code, timedOut: stoppedBy === "timeout", timeoutMs };
    } finally {
      clearTimeout(timer);
      c.signal?.removeEventListener("abort", onAbort);
      // Whatever an install script left running goes before root touches the tree again: its process
      // group always; what left the group (a new session) with its pid namespace, and with the cgroup.
      killGroup();
      if (cgroup) await destroyInstanceCgroup(cgroup).catch(() => {});
      firewall?.();
    }
  }
}
