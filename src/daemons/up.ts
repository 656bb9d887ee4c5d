/**
 * `herd up`: the whole platform on this machine.
 *
 *   herd up ─► control plane (API, store, controllers; this process)
 *           ─► agent (this process; instances in their own process groups, adopted after a crash;
 *                     with --docker or --docker-socket also containers, docs/containers.md)
 *           ─► gateway (its own session: outlives this process; adopted or handed off, platform-gateway.ts)
 *           ─► on the first start, a deploy of examples/hello
 *
 * Stopping on purpose (SIGINT, SIGTERM) stops all three and the apps; with
 * `keepApps` the apps and the gateway keep running (traffic keeps flowing)
 * and the next `herd up` adopts them or hands off to a newer gateway. A crash
 * of this process leaves both running as well. `herd down` (down.ts) stops a
 * platform whose `herd up` is gone.
 */

import { existsSync, writeFileSync } from "node:fs";
import { availableParallelism, hostname, totalmem } from "node:os";
import { join } from "node:path";
import { Agent } from "../agent/agent.ts";
import { ProcessDriver } from "../agent/process-driver.ts";
import { ensureComponentCredential } from "../api/credentials.ts";
import { readCa } from "../common/api-ca.ts";
import { createLogger, type Logger } from "../common/log.ts";
import type { HoldSettings, HttpsSettings } from "../gateway/gateway.ts";
import { type ServerOptions, startServer } from "./control-plane.ts";
import { ensurePlatformGateway, type PlatformGateway } from "./platform-gateway.ts";
import { recordOf, removeRecord, writeRecord } from "./process-record.ts";
import { untilSignal } from "./signals.ts";

/** Where `herd up` records its own process (for `herd down`). */
export const UP_RECORD = "server-process.json";
/** Where `herd up --docker`/`--docker-socket` records its engine (for `herd down`): UpOptions.docker. */
export const DOCKER_RECORD = "docker.json";

/** How `herd up` runs. */
export interface UpOptions {
  dataDir: string;
  /** The control plane's options, less what herd up sets itself. */
  server: Omit<ServerOptions, "dataDir" | "logger">;
  gateway: {
    port: number;
    host: string;
    workers: number;
    /** Unset: the gateway's default (9180, or a free port when taken). */
    metricsPort?: number | "off";
    /** `caFile`: herd's CA, which signs the default and every routed host's certificate (no --tls-cert). */
    https?: HttpsSettings & { development: boolean; caFile?: string };
    traceSample?: number;
    /** Internal ranges route JWKS URLs may reach (`--allow-fetch`). */
    allowFetch?: readonly string[];
    /** The directory route JWKS files are read from (`--jwks-dir`). */
    jwksDir?: string;
    /** Requests held for services scaled to zero (`--gateway-hold-max`, `--gateway-hold-timeout`). */
    hold?: HoldSettings;
    /** `--small`: the gateway's young generation capped (gateway/cluster-child.ts). */
    small?: boolean;
  };
  /** Deploy examples/hello on the first start. */
  example: boolean;
  /** On SIGINT/SIGTERM leave the apps and the gateway running. */
  keepApps: boolean;
  /** The agent's CPU overcommit ratio (`--cpu-overcommit`); default the agent's. */
  cpuOvercommit?: number;
  /** What the agent offers instead of the machine's cores and memory (`--cpu`, `--memory`). */
  capacity?: { cpu?: number; memory?: number };
  /**
   * Containers (`runtime: docker`, `image:`) for the agent: `dockerd` is herd's
   * own engine under that dir (started unless one runs there; stopped with
   * the apps), `socket` an engine that runs already (docs/containers.md).
   */
  docker?: { dockerd: string } | { socket: string };
  /** Signs the CLI in to this server (cli/config.ts); says how, for the start banner. */
  signIn?: (server: { url: string; token: string; ca?: string }) => Promise<string>;
}

/** Runs the platform until SIGINT or SIGTERM; resolves with the exit code. */
export async function runUp(options: UpOptions): Promise<number> {
  const { dataDir } = options;
  const logger = createLogger("herd");
  const server = await startServer({ ...options.server, dataDir, logger });
  const upRecord = recordOf(process.pid);
  writeRecord(join(dataDir, UP_RECORD), upRecord);
  // For herd down, which stops the containers (and herd's own engine) also when this process is gone.
  if (options.docker !== undefined)
    writeFileSync(join(dataDir, DOCKER_RECORD), `${JSON.stringify(options.docker)}\n`);
  const driver = new ProcessDriver({
    stateRoot: join(dataDir, "agent", "driver"),
    logger: logger.child("driver"),
  });
  let agent: Agent | undefined;
  let gateway: PlatformGateway | undefined;
  try {
    // Its own credentials, kept in DIR/credentials: no component holds the admin token.
    const credentials = join(dataDir, "credentials");
    agent = new Agent({
      server: server.url,
      token: await ensureComponentCredential(server.store, join(credentials, "agent"), {
        kind: "agent",
        node: hostname(),
      }),
      ...(server.caFile ? { ca: readCa(server.caFile) } : {}),
      name: hostname(),
      dataDir: join(dataDir, "agent"),
      internalGateway: join(dataDir, "gateway", "internal.json"),
      driver,
      logger: logger.child("agent"),
      ...(options.cpuOvercommit !== undefined ? { cpuOvercommit: options.cpuOvercommit } : {}),
      ...(options.docker === undefined
        ? {}
        : "dockerd" in options.docker
          ? { dockerd: options.docker.dockerd }
          : { dockerSocket: options.docker.socket }),
      ...(options.capacity
        ? {
            capacity: {
              cpu: options.capacity.cpu ?? availableParallelism(),
              memory: options.capacity.memory ?? totalmem(),
            },
          }
        : {}),
    });
    // The agent shares this process: its metrics go on the API server's /metrics.
    const inProcess = agent;
    server.metrics.alsoExport.push(() => inProcess.metrics.render());
    await agent.start();
    // Its own processes, so proxying never waits on the control plane's event loop (or the reverse).
    gateway = await ensurePlatformGateway({
      server: server.url,
      token: await ensureComponentCredential(server.store, join(credentials, "gateway"), { kind: "gateway" }),
      ca: server.caFile,
      port: options.gateway.port,
      host: options.gateway.host,
      dataDir: join(dataDir, "gateway"),
      workers: options.gateway.workers,
      metricsPort: options.gateway.metricsPort,
      metricsHost: options.gateway.host,
      https: options.gateway.https && {
        port: options.gateway.https.port,
        certificates: options.gateway.https.certificates,
      },
      traceSample: options.gateway.traceSample,
      allowFetch: options.gateway.allowFetch,
      jwksDir: options.gateway.jwksDir,
      ...(options.gateway.hold ? { hold: options.gateway.hold } : {}),
      ...(options.gateway.small ? { small: true } : {}),
      internalPort: 0,
      logger,
    });
  } catch (err) {
    // A gateway found running stays (it was serving before this start); one started now goes.
    if (gateway?.how !== "adopted") await gateway?.stop();
    await agent?.stop();
    // The server ends its streams (a running gateway's watch too) as it closes.
    await server.close();
    removeRecord(join(dataDir, UP_RECORD), upRecord);
    throw err;
  }
  const { record } = gateway;
  weighGateway(driver, record.pid, logger);
  const https = options.gateway.https;
  const host = options.gateway.host;
  const shownHost = host === "0.0.0.0" ? "127.0.0.1" : host;
  const shownGateway = `http://${shownHost}:${record.port}`;
  const shownHttps = record.httpsPort === undefined ? undefined : `https://${shownHost}:${record.httpsPort}`;
  server.settings.gatewayUrl = `http://127.0.0.1:${record.port}`;
  writeFileSync(
    join(dataDir, "server.json"),
    `${JSON.stringify({ url: server.url, gatewayUrl: shownGateway, gatewayHttpsUrl: shownHttps }, null, 2)}\n`,
  );
  const signedIn = await options.signIn?.({ url: server.url, token: server.adminToken, ca: server.caFile });
  const how = {
    started: "",
    adopted: ", adopted: it kept serving",
    "handed-off": ", took over from the last one",
  };
  process.stdout.write(
    [
      "",
      "herd is up",
      `  console:      ${server.url}/   (sign in with the admin token below; docs/console.md)`,
      `  API:          ${server.url}/api/v1   (OpenAPI: ${server.url}/api/v1/openapi.json)`,
      `  gateway:      ${shownGateway}   (pid ${record.pid}${how[gateway.how]})`,
      `  metrics:      ${record.metricsUrl ?? "off (--gateway-metrics-port)"}`,
      ...(shownHttps === undefined
        ? []
        : [
            https?.caFile === undefined
              ? `  HTTPS:        ${shownHttps}   (${https?.certificates.map((c) => c.cert).join(", ")})`
              : `  HTTPS:        ${shownHttps}   (every app's host; trust ${https.caFile})`,
          ]),
      `  admin token:  ${server.adminTokenFile}`,
      ...(signedIn ? [`  CLI:          ${signedIn}`] : []),
      ...(server.caFile ? [`  API CA:       ${server.caFile}   (herd agent/gateway --ca)`] : []),
      `  data:         ${dataDir}`,
      "",
      "",
    ].join("\n"),
  );
  const marker = join(dataDir, "example-deployed");
  if (options.example && !existsSync(marker)) {
    const ca = server.caFile === undefined ? undefined : readCa(server.caFile);
    void import("./example.ts")
      .then(({ deployExample }) => deployExample(server.url, server.adminToken, logger, ca))
      .then((ok) => {
        if (ok) {
          writeFileSync(marker, `${new Date().toISOString()}\n`);
          process.stdout.write(
            `examples/hello is serving: curl -H 'Host: hello.localhost' ${shownGateway}/\n`,
          );
          if (record.httpsPort !== undefined && https?.caFile !== undefined) {
            // herd's CA signs every routed host's certificate (curl sends *.localhost to loopback itself).
            process.stdout.write(
              `  over HTTPS: curl --cacert ${https.caFile} https://hello.localhost:${record.httpsPort}/\n`,
            );
          }
        }
      });
  }
  const signal = await untilSignal();
  if (options.keepApps) {
    process.stdout.write(
      `\n${signal}: stopping herd; the apps and the gateway (pid ${record.pid}) keep running ` +
        `(the next herd up takes them over; herd down stops them)\n`,
    );
    await agent.stop();
    await server.close();
    removeRecord(join(dataDir, UP_RECORD), upRecord);
    return 0;
  } else {
    process.stdout.write(
      `\n${signal}: stopping herd: the gateway, the agent, the apps' instances, the API\n`,
    );
    // Whatever fails on the way is said, and herd up still ends (its API closed, its record gone): herd down finishes.
    try {
      await gateway.stop();
      await agent.stop();
      const stopped = await agent.stopInstances(10_000);
      process.stdout.write(
        `herd stopped ${stopped} app instance${stopped === 1 ? "" : "s"}; the next herd up starts them again\n`,
      );
    } catch (err) {
      logger.error("cannot stop all that herd up runs; herd down stops what is left", { err });
    }
    // herd's own engine goes with the apps; the next herd up starts it again (an engine of the machine's stays).
    if (options.docker !== undefined && "dockerd" in options.docker) {
      const { stopDockerd } = await import("../agent/docker-daemon.ts");
      await stopDockerd(options.docker.dockerd).catch((err: unknown) =>
        logger.warn("cannot stop herd's Docker engine", { err }),
      );
    }
    // Nothing of herd's runs here now: its cgroups (and their real-time budgets) go too.
    const cgroups = await driver.releaseCgroups().catch((err: unknown) => {
      logger.warn("cannot remove herd's cgroups", { err });
      return undefined;
    });
    if (cgroups?.kept.length)
      logger.info("herd's cgroups still hold something (another herd on this machine?): kept", cgroups);
  }
  await server.close();
  removeRecord(join(dataDir, UP_RECORD), upRecord);
  return 0;
}

/**
 * The gateway crosses every request of every instance: under contention it
 * weighs as much as all instances together (ProcessDriver.weighPlatform),
 * not as one busy process. Without cgroups it stays where it is.
 */
function weighGateway(driver: ProcessDriver, pid: number, logger: Logger): void {
  try {
    const cgroup = driver.weighPlatform(pid);
    if (cgroup) logger.info("the gateway weighs as much as the instances together", { pid, cgroup });
  } catch (err) {
    logger.warn("cannot weigh the gateway's CPU: it shares the CPU as one process", { pid, err });
  }
}
