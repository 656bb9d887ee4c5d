/**
 * A private Docker engine (dockerd with its own containerd) under one
 * directory, started when asked and never by the system at boot, and the
 * local base image instances run in: busybox-static and the shared libraries
 * of the Node binary, imported from a tarball made on this machine (nothing is
 * pulled; docs/containers.md).
 */

import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { HerdError } from "../common/errors.ts";
import { DockerApi } from "./docker-api.ts";
import { herdBridges, removeBridges } from "./docker-network.ts";

export interface Dockerd {
  /** The engine's API socket. */
  socket: string;
  pid: number;
  api: DockerApi;
  /** Stops the engine (its containers go with it: no live-restore) and waits for it to exit. */
  stop(): Promise<void>;
}

/**
 * Starts dockerd with everything (data, exec root, socket, pid file, log)
 * under `dir`, without its default bridge or iptables rules (nothing to clean
 * up in the host's firewall): herd's containers join the bridge network
 * docker-network.ts makes, whose device stop() deletes. Resolves once it
 * answers /_ping. For tests of many machines: `netns` starts it in that
 * named network namespace, and `iptables` lets it write its rules there (it
 * then routes and masquerades its containers' traffic, as a machine's
 * docker.io service does).
 */
export async function startDockerd(
  dir: string,
  dockerd = "dockerd",
  timeoutMs = 60_000,
  options: { netns?: string; iptables?: boolean } = {},
): Promise<Dockerd> {
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, "docker.sock");
  const log = openSync(join(dir, "dockerd.log"), "a");
  let child: ChildProcess;
  try {
    const args = dockerdArgs(dir, options.iptables ?? false);
    // nsenter execs dockerd in place: the child's pid is the engine's.
    const [cmd, ...argv] = options.netns
      ? ["nsenter", `--net=/run/netns/${options.netns}`, dockerd, ...args]
      : [dockerd, ...args];
    child = spawn(cmd as string, argv, { stdio: ["ignore", log, log], env: dockerdEnv(dir) });
  } finally {
    closeSync(log);
  }
  const api = new DockerApi(socket);
  let exited = false;
  const gone = new Promise<void>((resolve) => {
    child.once("exit", () => {
      exited = true;
      resolve();
    });
    child.once("error", () => {
      exited = true;
      resolve();
    });
  });
  const stop = async () => {
    if (exited) return;
    // Its networks' bridge devices stay on the host after it exits: note them to delete them then.
    const bridges = await herdBridges(api).catch(() => []);
    child.kill("SIGTERM");
    const killed = await Promise.race([gone.then(() => false), sleep(30_000).then(() => true)]);
    if (killed) {
      child.kill("SIGKILL");
      await gone;
    }
    removeBridges(bridges);
    unmountUnder(dir);
  };
  try {
    await waitForEngine(api, dir, timeoutMs, () => exited);
  } catch (err) {
    await stop();
    throw err;
  }
  return { socket, pid: child.pid as number, api, stop };
}

/**
 * The agent's own engine (`herd agent --dockerd DIR`): reuses the dockerd
 * that answers on DIR/docker.sock (one an earlier agent started: its
 * containers are the instances to adopt), else starts one there in its own
 * session, detached, so that it and its containers outlive the agent as
 * process instances do. Stop it with `kill $(cat DIR/dockerd.pid)`.
 * A registry off loopback serves TLS (containers.ts): no insecure registries.
 */
export async function ensureDockerd(
  dir: string,
  options: { dockerd?: string; timeoutMs?: number } = {},
): Promise<{ socket: string; api: DockerApi; started: boolean }> {
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, "docker.sock");
  const api = new DockerApi(socket);
  try {
    await api.text({ path: "/_ping" });
    return { socket, api, started: false };
  } catch {
    // not running: start it
  }
  const log = openSync(join(dir, "dockerd.log"), "a");
  let exited = false;
  try {
    const child = spawn(options.dockerd ?? "dockerd", dockerdArgs(dir), {
      stdio: ["ignore", log, log],
      env: dockerdEnv(dir),
      detached: true,
    });
    child.once("exit", () => {
      exited = true;
    });
    child.once("error", () => {
      exited = true;
    });
    child.unref();
  } finally {
    closeSync(log);
  }
  await waitForEngine(api, dir, options.timeoutMs ?? 60_000, () => exited);
  return { socket, api, started: true };
}

/**
 * Stops the dockerd ensureDockerd started under dir (by its pid file) and
 * waits for it to exit; its containers go with it, and so do the bridge
 * devices and mounts it leaves. Nothing to do when none runs there.
 */
export async function stopDockerd(dir: string, timeoutMs = 30_000): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dir, "dockerd.pid"), "utf8").trim());
  } catch {
    return;
  }
  const bridges = await herdBridges(new DockerApi(join(dir, "docker.sock"))).catch(() => []);
  // A zombie (exited, not yet reaped by the agent that started it) is gone.
  const alive = () => {
    try {
      return !/^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
    } catch {
      return false;
    }
  };
  if (pid > 0 && alive()) {
    process.kill(pid, "SIGTERM");
    const deadline = Date.now() + timeoutMs;
    while (alive() && Date.now() < deadline) await sleep(100);
    if (alive()) process.kill(pid, "SIGKILL");
    while (alive()) await sleep(50);
  }
  removeBridges(bridges);
  unmountUnder(dir);
}

/**
 * dockerd's environment: its temp files (and its containerd's, which writes
 * `containerd.<pid>.stacks.log` there when it is slow to stop) under `dir`.
 */
function dockerdEnv(dir: string): NodeJS.ProcessEnv {
  const tmp = join(dir, "tmp");
  mkdirSync(tmp, { recursive: true });
  return { ...process.env, TMPDIR: tmp };
}

/** Everything under dir, no default bridge, and (unless `iptables`) no iptables rules. */
function dockerdArgs(dir: string, iptables = false): string[] {
  return [
    `--data-root=${join(dir, "data")}`,
    `--exec-root=${join(dir, "exec")}`,
    `--pidfile=${join(dir, "dockerd.pid")}`,
    `--host=unix://${join(dir, "docker.sock")}`,
    "--bridge=none",
    ...(iptables ? [] : ["--iptables=false", "--ip6tables=false"]),
  ];
}

/** Resolves once the engine answers /_ping; rejects when it exited or did not answer in time. */
async function waitForEngine(
  api: DockerApi,
  dir: string,
  timeoutMs: number,
  exited: () => boolean,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited())
      throw new HerdError("unavailable", `dockerd exited at start; see ${join(dir, "dockerd.log")}`);
    try {
      await api.text({ path: "/_ping" });
      return;
    } catch {
      if (Date.now() > deadline)
        throw new HerdError(
          "unavailable",
          `dockerd did not answer within ${timeoutMs} ms; see ${join(dir, "dockerd.log")}`,
        );
      await sleep(100);
    }
  }
}

/**
 * Unmounts whatever dockerd left mounted under dir (its default network
 * namespace file stays bound after it exits), deepest first, so the dir can go.
 */
function unmountUnder(dir: string): void {
  const prefix = `${resolve(dir)}/`;
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p?.startsWith(prefix) === true)
    .sort((a, b) => b.length - a.length);
  for (const p of points) spawnSync("umount", ["-l", p], { stdio: "ignore" });
}

/** The repository of the base image; its tag is a hash of what went in. */
export const BASE_IMAGE_REPO = "herd-base";

/**
 * Makes sure the engine has the base image for `node` (busybox-static at
 * /bin with its applets, and node's shared libraries from `ldd`; node itself
 * is bound in at run time) and returns its name. Imported once per content.
 */
export async function ensureBaseImage(
  api: DockerApi,
  busybox: string,
  node = process.execPath,
): Promise<string> {
  const files = [busybox, ...sharedLibraries(node)];
  const hash = createHash("sha256");
  for (const f of files) {
    const s = statSync(f);
    hash.update(`${f} ${s.size} ${s.mtimeMs}\n`);
  }
  const image = `${BASE_IMAGE_REPO}:${hash.digest("hex").slice(0, 16)}`;
  try {
    await api.call({ path: `/images/${image}/json` });
    return image;
  } catch (err) {
    if (!(err instanceof HerdError && err.code === "not_found")) throw err;
  }
  const root = mkdtempSync(join(tmpdir(), "herd-base-"));
  try {
    mkdirSync(join(root, "bin"));
    copyFileSync(busybox, join(root, "bin/busybox"));
    chmodSync(join(root, "bin/busybox"), 0o755);
    const applets = execFileSync(busybox, ["--list"], { encoding: "utf8" }).split("\n").filter(Boolean);
    for (const applet of applets) if (applet !== "busybox") symlinkSync("busybox", join(root, "bin", applet));
    for (const lib of files.slice(1)) {
      mkdirSync(join(root, dirname(lib)), { recursive: true });
      copyFileSync(lib, join(root, lib));
    }
    for (const d of ["tmp", "etc", "usr/bin"]) mkdirSync(join(root, d), { recursive: true });
    chmodSync(join(root, "tmp"), 0o1777);
    const tar = spawn("tar", ["-C", root, "-c", "."], { stdio: ["ignore", "pipe", "inherit"] });
    const progress = await api.text({
      method: "POST",
      path: "/images/create",
      query: { fromSrc: "-", repo: BASE_IMAGE_REPO, tag: image.split(":")[1] },
      body: tar.stdout,
    });
    if (progress.includes('"error"')) throw new HerdError("unavailable", `docker import failed: ${progress}`);
    // `FROM herd-base` in a Dockerfile means the newest base image of this engine.
    await api.call({
      method: "POST",
      path: `/images/${image}/tag`,
      query: { repo: BASE_IMAGE_REPO, tag: "latest" },
    });
    return image;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** The shared libraries a dynamically linked binary loads, as `ldd` lists them (absolute paths). */
function sharedLibraries(binary: string): string[] {
  const out = execFileSync("ldd", [binary], { encoding: "utf8" });
  const libs: string[] = [];
  for (const line of out.split("\n")) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m) libs.push(m[1]);
  }
  return libs;
}
