/**
 * Fencing: the writes a leader's controllers make carry the leader's claim,
 * and the store refuses them once the claim is gone (leadership.ts).
 *
 *   leadership elected ─► fencing.run(fence, start controllers)
 *        every timer, watch loop and reconcile they start runs in that context
 *   EtcdStore put/delete ─► fencing.getStore() ─► one more compare in the same
 *        etcd transaction: the leader key still has the create revision it had
 *        when this server won (the key dies with the lease, and a new leader
 *        creates it again with a new create revision)
 *        └ compare fails ─► fence.lost() + HerdError unavailable, nothing written
 *
 * Writes made outside the context (API requests, agents' heartbeats) are not
 * fenced: any server may serve those. An AsyncLocalStorage carries the claim
 * so the controllers need not know about leadership at all.
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { HerdError } from "../common/errors.ts";

/** A leader's claim: the leader key and the etcd create revision it had when this server won. */
export interface Fence {
  /** The etcd key of the leader record. */
  key: string;
  /** Its etcd create_revision when this server created it. */
  createRevision: string;
  /** Called when a fenced write found the claim gone: the server steps down. */
  lost(): void;
}

/** The claim of the code running now, if it runs for a leader. */
export const fencing = new AsyncLocalStorage<Fence>();

/** The error of a write refused because its leader was deposed. */
export function fencedError(fence: Fence): HerdError {
  return new HerdError(
    "unavailable",
    `this server is no longer the leader (leader key ${fence.key} no longer has create revision ${fence.createRevision}); the write was not made`,
  );
}
