/**
 * A real dockerd for one test file (docker-driver, docker-firewall): started
 * under a temp dir before its tests (its own containerd, no bridge, no
 * iptables rules) with the base image made locally from busybox-static and
 * node's libraries, and stopped with the dir removed after them, also when
 * they fail.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { ensureDebianPackages } from "../common/debian-packages.ts";
import { type Dockerd, ensureBaseImage, startDockerd } from "./docker-daemon.ts";
import { DockerDriver } from "./docker-driver.ts";

export interface TestDockerd {
  /** The running engine (throws when it is not). */
  readonly engine: Dockerd;
  /** The base image made on it. */
  readonly baseImage: string;
  /** The busybox binary containers get. */
  readonly busybox: string;
  /** A DockerDriver on this engine with its state at `stateRoot`. */
  driver(stateRoot: string): DockerDriver;
}

/** Registers the file's before/after hooks; `packages`: more Debian packages the tests need (binary → package). */
export function withTestDockerd(prefix: string, packages: Record<string, string> = {}): TestDockerd {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  let engine: Dockerd | undefined;
  let baseImage = "";
  let busybox = "";
  before(async () => {
    const tools = await ensureDebianPackages({
      dockerd: "docker.io",
      busybox: "busybox-static",
      ...packages,
    });
    busybox = tools.busybox;
    engine = await startDockerd(dir, tools.dockerd);
    baseImage = await ensureBaseImage(engine.api, busybox);
  });
  after(async () => {
    try {
      await engine?.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  const running = (): Dockerd => {
    if (!engine) throw new Error("dockerd is not running");
    return engine;
  };
  return {
    get engine() {
      return running();
    },
    get baseImage() {
      return baseImage;
    },
    get busybox() {
      return busybox;
    },
    driver: (stateRoot) => new DockerDriver({ stateRoot, api: running().api, baseImage, busybox }),
  };
}
