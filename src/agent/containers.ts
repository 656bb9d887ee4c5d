/**
 * The agent's containers, set up from its flags (docs/containers.md):
 *
 *   --docker-socket PATH  ─┐
 *   --dockerd DIR ─ ensureDockerd (reuse, else start detached) ─► socket ─► connectDocker ─► DockerDriver
 *   --registry HOST:PORT ──────────────────────────────────────────────────────► builds pushed/pulled there
 *   --serve-registry HOST:PORT ─ startRegistry(<dataDir>/registry) ─► that address; every 6 h:
 *       GET /registry/kept (what kept releases run) ─► collectUnused: every other tag older than an hour goes
 *
 * A registry off loopback serves TLS and basic auth: its certificate and the
 * credential come from the control plane (POST /registry/credentials); the
 * engine trusts the registry CA for that address only
 * (`/etc/docker/certs.d/HOST:PORT/ca.crt`) and pushes and pulls with the
 * credential.
 *
 * A dockerd and a registry the agent started outlive it, as its instances do
 * (the containers are instances; other nodes pull from the registry): the
 * next agent finds them by their pid files and uses them. Stop them with
 * `kill $(cat DIR/dockerd.pid)` and `kill $(cat <dataDir>/registry/registry.pid)`.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { ensureDebianPackages } from "../common/debian-packages.ts";
import { HerdError } from "../common/errors.ts";
import { type Logger, silentLogger } from "../common/log.ts";
import { ensureDockerd } from "./docker-daemon.ts";
import { connectDocker, type DockerDriver } from "./docker-driver.ts";
import { type Registry, type RegistryAccess, startRegistry } from "./registry.ts";

/** Where an engine looks for the CA of a registry it pulls from over TLS (`<dir>/HOST:PORT/ca.crt`). */
export const DOCKER_CERTS_DIR = "/etc/docker/certs.d";

/** What POST /registry/credentials answers. */
export interface RegistryCredentials {
  username: string;
  password: string;
  ca: string;
  certificate?: { cert: string; key: string };
}

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
  /** The control plane's POST /registry/credentials ({serve} for the agent that serves the registry). */
  credentials?: (serve?: string) => Promise<RegistryCredentials>;
  /** Default DOCKER_CERTS_DIR. */
  dockerCertsDir?: string;
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
  const credentials = async (serve?: string): Promise<RegistryCredentials> => {
    if (!options.credentials)
      throw new HerdError("invalid", "a registry off loopback needs the control plane's credentials");
    return options.credentials(serve);
  };
  if (options.serveRegistry) {
    const listen = options.serveRegistry;
    /**
     * Starts the registry, or adopts the one running with the same config. Off loopback the
     * credential and certificate are asked for each time: a renewed certificate (or password)
     * is a new config, and the registry restarts with it.
     */
    const serve = async () => {
      let secured = {};
      if (!onLoopback(listen)) {
        const c = await credentials(listen);
        if (!c.certificate)
          throw new HerdError("unavailable", "the control plane sent no registry certificate");
        const { htpasswd } = await ensureDebianPackages({ htpasswd: "apache2-utils" });
        secured = {
          tls: { cert: c.certificate.cert, key: c.certificate.key, ca: c.ca },
          auth: { username: c.username, password: c.password },
          htpasswd,
        };
      }
      return startRegistry(join(options.dataDir, "registry"), { listen, ...secured });
    };
    registry = await serve();
    log.info("serving the registry", { address: registry.address });
    let served = registry;
    const kept = options.kept;
    timer = setInterval(() => {
      // Without the control plane's answer nothing is collected: a rollback target must not go.
      if (!kept) return;
      serve()
        .then((r) => {
          served = r;
          return kept();
        })
        .then((k) => served.collectUnused(k, REGISTRY_GRACE_MS))
        .then((r) => log.info("registry collected", { deleted: r.deleted.length, freedBytes: r.freedBytes }))
        .catch((err) => log.warn("cannot collect the registry", { err }));
    }, REGISTRY_COLLECT_MS);
    timer.unref();
  }
  let driver: DockerDriver | undefined;
  try {
    let access: RegistryAccess | undefined = registry?.access;
    if (options.registry) {
      const address = options.registry;
      if (onLoopback(address)) access = { address };
      else {
        const c = await credentials();
        access = { address, ca: c.ca, username: c.username, password: c.password };
      }
    }
    // The engine verifies the registry with herd's registry CA, for that address only.
    if (access?.ca && (options.dockerSocket || options.dockerd))
      trustRegistryCa(options.dockerCertsDir ?? DOCKER_CERTS_DIR, access.address, access.ca);
    let socket = options.dockerSocket;
    if (!socket && options.dockerd) {
      const engine = await ensureDockerd(options.dockerd);
      log.info(engine.started ? "started dockerd" : "found dockerd", { socket: engine.socket });
      socket = engine.socket;
    }
    if (socket)
      driver = await connectDocker({
        socket,
        stateRoot: join(options.dataDir, "docker"),
        ...(access ? { registry: access } : {}),
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

/** Writes `<certsDir>/HOST:PORT/ca.crt`, where an engine finds the CA of that registry. */
export function trustRegistryCa(certsDir: string, address: string, ca: string): void {
  mkdirSync(join(certsDir, address), { recursive: true });
  writeFileSync(join(certsDir, address, "ca.crt"), ca);
}

/** Whether host:port is on 127.0.0.0/8 or localhost, which an engine trusts without TLS. */
function onLoopback(address: string): boolean {
  const host = address.slice(0, address.lastIndexOf(":"));
  return host === "localhost" || (isIP(host) === 4 && host.startsWith("127."));
}
