/**
 * With several servers (docs/high-availability.md) a deploy is built by the
 * server that received it but rolled out by the leader, whose "done" line
 * lands in the leader's deploy log. A server following a deploy's log ends it
 * from the Deploy object instead: once the deploy has finished and no "done"
 * line arrived here, it writes one with the deploy's state and message.
 *
 *   GET …/deploys/:id/log ─► follow the local log ─┐
 *   store.watch(deploy)  ─► finished, no local done ─► append done ─► the follow ends
 */

import type { DeployLogEntry, DeployLogs } from "../controllers/deploy-log.ts";
import type { Deploy } from "../model/objects.ts";
import type { Store } from "../store/store.ts";
import type { GatewayBook } from "./gateway-book.ts";

/** How long the local controller gets to write its own "done" line first. */
const GRACE_MS = 500;

/** Watches deploy `key` from `revision` until `signal` ends; appends "done" to `logs` if it finishes elsewhere. */
export async function endLogWhenFinished(
  store: Store,
  logs: DeployLogs,
  key: string,
  id: string,
  revision: number,
  signal: AbortSignal,
): Promise<void> {
  try {
    for await (const ev of store.watch<Deploy>({ kinds: ["deploy"], fromRevision: revision - 1, signal })) {
      if (ev.key !== key || ev.type !== "put") continue;
      const d = ev.object.value;
      if (d.state !== "succeeded" && d.state !== "failed") continue;
      await new Promise((resolve) => setTimeout(resolve, GRACE_MS));
      if (signal.aborted || logs.read(id).some((e) => e.type === "done")) return;
      logs.append(id, "done", d.message ?? d.state, d.state);
      return;
    }
  } catch {
    // The watch ended (store closing, history compacted): the follow ends with the request.
  }
}

/** How long a deploy's "done" waits for the gateways to serve it (they apply a change in milliseconds). */
const APPLIED_MS = 10_000;

/**
 * A succeeded deploy's "done" line, held until the gateways serve what it
 * rolled out: the deploy ends once the store says so, and each gateway
 * applies that from its watch a moment later, so "v2 is serving at …" said
 * before could meet a 404 or v1 from a request sent at once. A gateway still
 * behind after APPLIED_MS is named in the line.
 */
export async function whenServed(
  gateways: Pick<GatewayBook, "configVersion" | "untilApplied">,
  entry: DeployLogEntry,
  signal: AbortSignal,
  timeoutMs = APPLIED_MS,
): Promise<DeployLogEntry> {
  if (entry.type !== "done" || entry.state !== "succeeded") return entry;
  const behind = await gateways.untilApplied(gateways.configVersion, timeoutMs, signal);
  if (behind.length === 0) return entry;
  return {
    ...entry,
    message: `${entry.message} (not yet applied by gateway ${behind.join(", ")} after ${timeoutMs / 1000} s)`,
  };
}
