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

import type { DeployLogs } from "../controllers/deploy-log.ts";
import type { Deploy } from "../model/objects.ts";
import type { Store } from "../store/store.ts";

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
