/**
 * The agent's containers, set up from its flags (docs/containers.md):
 *
 *   --docker-socket PATH  ─┐
 *   --dockerd DIR ─ ensureDockerd (reuse, else start detached) ─► socket ─► connectDocker ─► DockerDriver
 *   --registry HOST:PORT ──────────────────────────────────────────────────────► builds pushed/pulled there
 *   --serve-registry HOST:PORT ─ startRegistry(<dataDir>/registry) ─► that address; every 6 h:
 *       GET /registry/kept (what kept releases run) ─► collectUnused: every other tag older than an hour goes
 *
 * A dockerd and a registry the agent started outlive it, as its instances do
 * (the containers are instances; other nodes pull from the registry): the
 * next agent finds them by their pid files and uses them. Stop them with
 * `kill $(cat DIR/dockerd.pid)` and `kill $(cat <dataDir>/registry/registry.pid)`.
 */

import { isIP } from "node:net";
import { join } from "node:path";
import { type Logger, silentLogger } from "../common/log.ts";
import { ensureDockerd } from "./docker-daemon.ts";
import { connectDocker, type DockerDriver } from "./docker-driver.ts";
import { type Registry, startRegistry } from "./registry.ts";

/** How often a registry this agent serves drops old builds; each collection stops it for a moment. */
export const REGISTRY_COLLECT_MS = 6 * 3600_000;
/** A tag pushed this recently stays whatever the control plane says (its release may not be reported yet). */
export const REGISTRY_GRACE_MS = 3600_000;

export interface ContainerOptions {
  dataDir: string;
  dockerSocket?: string;
  dockerd?: string;
  registry?: string;
  serveRegistry?: string;
  logger?: Logger;
  /** What the registry's collection keeps: the control plane's GET /registry/kept. */
  kept?: () => Promise<{ digests: string[]; images: string[] }>;
}

export interface Containers {
  /** Absent when the agent only serves a registry. */
  driver?: DockerDriver;
  registry?: Registry;
  /** Ends the registry's collection; leaves the registry, dockerd and the containers running. */
  close(): void;
}

/** Starts what the options ask for; undefined when they ask for nothing. */
export async function startContainers(options: ContainerOptions): Promise<Containers | undefined> {
  const log = (options.logger ?? silentLogger).child("containers");
  if (!options.dockerSocket && !options.dockerd && !options.serveRegistry) return undefined;
  let registry: Registry | undefined;
  let timer: NodeJS.Timeout | undefined;
  if (options.serveRegistry) {
    registry = await startRegistry(join(options.dataDir, "registry"), { listen: options.serveRegistry });
    log.info("serving the registry", { address: registry.address });
    const served = registry;
    const kept = options.kept;
    timer = setInterval(() => {
      // Without the control plane's answer nothing is collected: a rollback target must not go.
      if (!kept) return;
      kept()
        .then((k) => served.collectUnused(k, REGISTRY_GRACE_MS))
        .then((r) => log.info("registry collected", { deleted: r.deleted.length, freedBytes: r.freedBytes }))
        .catch((err) => log.warn("cannot collect the registry", { err }));
    }, REGISTRY_COLLECT_MS);
    timer.unref();
  }
  const address = options.registry ?? registry?.address;
  let driver: DockerDriver | undefined;
  try {
    let socket = options.dockerSocket;
    if (!socket && options.dockerd) {
      const engine = await ensureDockerd(options.dockerd, {
        insecureRegistries: address && !onLoopback(address) ? [address] : [],
      });
      log.info(engine.started ? "started dockerd" : "found dockerd", { socket: engine.socket });
      socket = engine.socket;
    }
    if (socket)
      driver = await connectDocker({
        socket,
        stateRoot: join(options.dataDir, "docker"),
        ...(address ? { registry: address } : {}),
        ...(options.logger ? { logger: options.logger } : {}),
      });
  } catch (err) {
    clearInterval(timer);
    throw err;
  }
  return {
    ...(driver ? { driver } : {}),
    ...(registry ? { registry } : {}),
    close() {
      clearInterval(timer);
    },
  };
}

/** Whether host:port is on 127.0.0.0/8 or localhost, which an engine trusts without TLS. */
function onLoopback(address: string): boolean {
  const host = address.slice(0, address.lastIndexOf(":"));
  return host === "localhost" || (isIP(host) === 4 && host.startsWith("127."));
}
