/**
 * Runs `herd gateway` as a child process of another herd process (`herd up`,
 * tests), so the gateway does not share an event loop with the control plane.
 *
 * The child gets an IPC channel: it reports its address over it once it
 * listens (or why it could not start). An attached child stops when the
 * channel closes, so a parent killed with SIGKILL leaves no gateway behind.
 * A detached one (`herd up`'s: the data plane outlives the control plane) gets
 * its own session and process group, and the channel is closed once it
 * listens: from then on it serves until it is told to stop (SIGTERM: drain),
 * whatever happens to its parent. Its token (herd up's gateway credential)
 * travels in the environment (HERD_TOKEN), never on the command line.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { HerdError } from "../common/errors.ts";
import { inheritedExecArgv, QUIET_FLAGS, SMALL_GATEWAY_FLAGS } from "../common/node-runtime.ts";
import type { HoldSettings, HttpsSettings } from "./gateway.ts";

/**
 * Set in the child's environment: `1`: report over IPC and stop when the
 * parent goes away; `detached`: report over IPC, then live on without it.
 */
/** The gateway's entry module (`herd gateway` without the rest of the CLI), run with this process's Node and flags. */
export const GATEWAY_MAIN = fileURLToPath(new URL("../daemons/gateway-main.ts", import.meta.url));

export const CHILD_ENV = "HERD_GATEWAY_CHILD";

/** Child → parent: listening, or failed to start. */
export type ChildMessage =
  | { type: "ready"; url: string; port: number; metricsUrl?: string; httpsUrl?: string; httpsPort?: number }
  | { type: "failed"; message: string };

/** How the child is started. */
export interface GatewayChildOptions {
  server: string;
  token: string;
  port: number;
  host: string;
  dataDir: string;
  /** Worker processes (`--workers`). */
  workers: number;
  /** Port of the metrics listener (`--metrics-port`), or `off`; unset: the gateway's default (9180, or a free port when taken). */
  metricsPort?: number | "off";
  /** Address of the metrics listener: default 127.0.0.1. */
  metricsHost?: string;
  /** HTTPS beside HTTP (`--https-port`, `--tls-cert`, `--tls-key`); absent: HTTP only. */
  https?: HttpsSettings;
  /** Share of new traces whose spans it records (`--trace-sample`); unset: the gateway's default (1). */
  traceSample?: number;
  /** Bind with SO_REUSEPORT (`--reuse-port`): a successor may bind the same ports. */
  reusePort?: boolean;
  /** Its own session, and no tie to this process once it listens (see above). */
  detached?: boolean;
  /** The CA file the control plane's certificate is signed by (`--ca`), when it serves HTTPS. */
  ca?: string;
  /** Internal ranges route JWKS URLs may reach (`--allow-fetch`). */
  allowFetch?: readonly string[];
  /** The directory route JWKS files are read from (`--jwks-dir`); unset: the gateway's default. */
  jwksDir?: string;
  /** Requests held for a service scaled to zero (`--hold-max`, `--hold-timeout`); unset: 100 and 30 s. */
  hold?: HoldSettings;
  /**
   * `herd up --small`'s gateway: its young generation capped as in a process that serves few
   * requests, no TurboFan, one GC thread (SMALL_GATEWAY_FLAGS; docs/benchmarks.md, Footprint).
   */
  small?: boolean;
  /** Service discovery's internal listener (`--internal-port`; 0: the earlier port, else a free one); served by every worker. */
  internalPort?: number;
}

/** A gateway running in a child process. */
export interface GatewayChild {
  pid: number;
  port: number;
  url: string;
  /** Where the gateway's metrics are (`http://…/metrics`), when it serves them. */
  metricsUrl?: string;
  httpsPort?: number;
  httpsUrl?: string;
  /** SIGTERM, then SIGKILL after `graceMs` (default 10 s); resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts `herd gateway` as a child; resolves once it listens, rejects with its reason if it exits first. */
export async function spawnGatewayChild(options: GatewayChildOptions): Promise<GatewayChild> {
  const child = spawn(
    process.execPath,
    [
      // A primary that only follows the control plane gets the quiet flags; a gateway that proxies does
      // not, unless it is herd up --small's.
      ...inheritedExecArgv(),
      ...(options.small === true ? SMALL_GATEWAY_FLAGS : options.workers > 1 ? QUIET_FLAGS : []),
      GATEWAY_MAIN,
      "--server",
      options.server,
      "--port",
      String(options.port),
      "--host",
      options.host,
      "--data",
      options.dataDir,
      "--workers",
      String(options.workers),
      ...(options.metricsPort === undefined ? [] : ["--metrics-port", String(options.metricsPort)]),
      "--metrics-host",
      options.metricsHost ?? "127.0.0.1",
      ...httpsArgs(options.https),
      ...(options.traceSample === undefined ? [] : ["--trace-sample", String(options.traceSample)]),
      ...(options.reusePort ? ["--reuse-port"] : []),
      ...(options.ca === undefined ? [] : ["--ca", options.ca]),
      ...(options.allowFetch?.length ? ["--allow-fetch", options.allowFetch.join(",")] : []),
      ...(options.jwksDir === undefined ? [] : ["--jwks-dir", options.jwksDir]),
      ...(options.hold?.maxPerService === undefined
        ? []
        : ["--hold-max", String(options.hold.maxPerService)]),
      ...(options.hold?.timeoutMs === undefined ? [] : ["--hold-timeout", `${options.hold.timeoutMs}ms`]),
      ...(options.internalPort === undefined ? [] : ["--internal-port", String(options.internalPort)]),
    ],
    {
      env: {
        ...process.env,
        HERD_TOKEN: options.token,
        [CHILD_ENV]: options.detached ? "detached" : "1",
      },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      detached: options.detached ?? false,
    },
  );
  const ready = await new Promise<Extract<ChildMessage, { type: "ready" }>>((resolve, reject) => {
    let failure: string | undefined;
    child.on("message", (message: ChildMessage) => {
      if (message.type === "ready") resolve(message);
      else if (message.type === "failed") failure = message.message;
    });
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      reject(
        new HerdError(
          "unavailable",
          `the gateway did not start: ${failure ?? `it exited (${signal ?? `code ${code}`})`}`,
        ),
      ),
    );
  });
  if (options.detached) {
    // Nothing ties it to us any more: it outlives this process (and is not waited for).
    child.disconnect();
    child.unref();
  } else {
    // The channel stays open only to tell the child when we are gone; it must not keep us alive.
    child.channel?.unref();
  }
  return {
    pid: child.pid ?? 0,
    port: ready.port,
    url: ready.url,
    metricsUrl: ready.metricsUrl,
    httpsPort: ready.httpsPort,
    httpsUrl: ready.httpsUrl,
    stop: (graceMs) => stopChild(child, graceMs),
  };
}

/** The flags for HTTPS: the port and each certificate/key pair, in order. */
function httpsArgs(https: HttpsSettings | undefined): string[] {
  if (https === undefined) return [];
  const args = ["--https-port", String(https.port)];
  for (const pair of https.certificates) args.push("--tls-cert", pair.cert, "--tls-key", pair.key);
  return args;
}

async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const force = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(force);
}
