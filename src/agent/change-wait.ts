/**
 * The agent's long poll for changes: keeps `GET /nodes/:name/wait` open; it
 * returns as soon as what this node should run changed (a service woken from
 * zero, a deploy, a replacement), and the agent heartbeats at once instead of
 * at the next interval. A server without the route (404) leaves the agent on
 * its heartbeats alone.
 */

import type { Logger } from "../common/log.ts";
import type { ControlPlaneCalls } from "./control-plane-calls.ts";

/** How long the control plane keeps the agent's wait open without a change (its default). */
const WAIT_MS = 15_000;

export interface ChangeWait {
  calls: ControlPlaneCalls;
  /** The node's name. */
  node: string;
  log: Logger;
  /** Ends a wait in progress (the agent stopping). */
  signal: AbortSignal;
  /** Whether the agent still runs: the loop ends when it does not. */
  running(): boolean;
  /** Whether heartbeats fail now: then they report it, not the wait. */
  serverAway(): boolean;
  /** What this node should run changed: heartbeat now. */
  changed(): void;
}

/** Follows the node's changes until the agent stops (or the server has no wait route). */
export async function followChanges(w: ChangeWait): Promise<void> {
  const base = `/api/v1/nodes/${encodeURIComponent(w.node)}/wait`;
  let since: number | undefined;
  let failing = false;
  while (w.running()) {
    try {
      const res = await w.calls.get(since === undefined ? base : `${base}?since=${since}`, {
        abort: w.signal,
        waitMs: WAIT_MS,
      });
      if (res.status === 404) {
        res.cancel();
        w.log.info("the control plane has no wait route: new instances start on the next heartbeat");
        return;
      }
      if (!res.ok) throw new Error(`answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
      const { revision } = (await res.json()) as { revision?: unknown };
      if (typeof revision !== "number") throw new Error("answered without a revision");
      if (since !== undefined && revision > since) w.changed();
      since = revision;
      failing = false;
    } catch (err) {
      if (!w.running()) return;
      // A server that is away is the heartbeats' to report; a refusal is said once.
      if (!failing && !w.serverAway())
        w.log.warn("the wait for new instances failed; they start on the next heartbeat meanwhile", { err });
      failing = true;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}
