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
 * answers /_ping.
 */
export async function startDockerd(dir: string, dockerd = "dockerd", timeoutMs = 60_000): Promise<Dockerd> {
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, "docker.sock");
  const log = openSync(join(dir, "dockerd.log"), "a");
  let child: ChildProcess;
  try {
    child = spawn(
      dockerd,
      [
        `--data-root=${join(dir, "data")}`,
        `--exec-root=${join(dir, "exec")}`,
        `--pidfile=${join(dir, "dockerd.pid")}`,
        `--host=unix://${socket}`,
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
      ],
      { stdio: ["ignore", log, log] },
    );
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
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited)
      throw new HerdError("unavailable", `dockerd exited at start; see ${join(dir, "dockerd.log")}`);
    try {
      await api.text({ path: "/_ping" });
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new HerdError(
          "unavailable",
          `dockerd did not answer within ${timeoutMs} ms; see ${join(dir, "dockerd.log")}`,
        );
      }
      await sleep(100);
    }
  }
  return { socket, pid: child.pid as number, api, stop };
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
