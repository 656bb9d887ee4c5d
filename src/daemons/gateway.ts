/**
 * `herd gateway`: one process (`workers` 1) or a primary and workers, until
 * SIGINT or SIGTERM; then it drains (stops accepting, finishes what is in
 * flight, gateway/drain.ts) for up to `drainMs` and exits.
 *
 * Started by another herd process (gateway/cluster-child.ts) it reports its
 * address, or why it could not start, over IPC. An attached child also stops
 * when that parent is gone; a detached one (herd up's) lives on by itself.
 */

import { type GatewayClusterOptions, startGatewayCluster } from "../gateway/cluster.ts";
import { CHILD_ENV, type ChildMessage } from "../gateway/cluster-child.ts";
import { DEFAULT_DRAIN_MS } from "../gateway/drain.ts";
import { startGateway } from "../gateway/gateway.ts";
import { untilSignal } from "./signals.ts";

/** How `herd gateway` runs. */
export interface GatewayDaemonOptions extends GatewayClusterOptions {
  /** How long a stop may drain before open connections are cut (default 10 s). */
  drainMs?: number;
}

/** Whether this process was started by another herd process, and how (cluster-child.ts). */
function parentMode(): "attached" | "detached" | undefined {
  if (process.send === undefined) return undefined;
  const mode = process.env[CHILD_ENV];
  return mode === "1" ? "attached" : mode === "detached" ? "detached" : undefined;
}

/**
 * Starts the gateway (a failure is reported to the parent, then thrown),
 * serves until stopped, drains; resolves with the exit code.
 */
export async function runGateway(start: () => Promise<GatewayDaemonOptions>): Promise<number> {
  const parent = parentMode();
  const tell = (message: ChildMessage) => process.send?.(message);
  if (parent === "detached") {
    // Our output may go to a terminal or pipe that closes while we serve on: never die of that.
    process.stdout.on("error", () => {});
    process.stderr.on("error", () => {});
  }
  // SIGHUP: a control plane that is closing waits for our watch connection; open a new one (later).
  // Handled from the start, so that it never ends this process (its default).
  let reconnect = () => {};
  process.on("SIGHUP", () => reconnect());
  try {
    const options = await start();
    const { workers } = options;
    // One worker is the single-process gateway: no primary in front of it.
    const gateway = workers === 1 ? await startGateway(options) : await startGatewayCluster(options);
    reconnect = () => gateway.reconnect();
    if (parent !== undefined) {
      tell({
        type: "ready",
        url: gateway.url,
        port: gateway.port,
        httpsUrl: gateway.httpsUrl,
        httpsPort: gateway.httpsPort,
        metricsUrl: gateway.metricsUrl,
      });
    } else {
      const secure = gateway.httpsUrl === undefined ? "" : ` and ${gateway.httpsUrl}`;
      process.stdout.write(
        `herd gateway: ${gateway.url}${secure} (${workers} ${workers === 1 ? "process" : "workers"}); metrics: ${gateway.metricsUrl ?? "off"}\n`,
      );
    }
    const parentGone = new Promise<string>((done) => {
      if (parent === "attached") process.once("disconnect", () => done("parent gone"));
    });
    const why = await Promise.race([untilSignal(), parentGone]);
    // A stop on purpose drains (a successor may be taking over the port); a lost parent cuts at once.
    const drainMs = why === "parent gone" ? 0 : (options.drainMs ?? DEFAULT_DRAIN_MS);
    // With SO_REUSEPORT a successor under the same id may serve already: no goodbye that would undo its reports.
    await gateway.close({ drainMs, goodbye: !options.reusePort });
    if (process.connected) process.disconnect?.();
    return 0;
  } catch (err) {
    if (parent !== undefined)
      tell({ type: "failed", message: err instanceof Error ? err.message : String(err) });
    throw err;
  }
}
