/**
 * Marks an etcd write while it is sent, for the member breaker
 * (etcd-members.ts). Apart from it so that the leader election
 * (leadership.ts), which every server loads, does not load the etcd client
 * (and gRPC, TLS, HTTP/2: about 9 MB) on a server with SQLite.
 */

import { AsyncLocalStorage } from "node:async_hooks";

const writing = new AsyncLocalStorage<true>();

/**
 * Runs `send`, an etcd write, so that the breaker leaves it alone once it is
 * sent: failing it would make the client send it again, and a write that was
 * committed (its answer not yet back) would be applied twice — a create would
 * then fail on itself as a conflict. It still is not sent to a member that is
 * down; once sent it waits for its answer or its deadline.
 */
export function sentOnce<T>(send: () => Promise<T>): Promise<T> {
  return writing.run(true, send);
}

/** Whether the caller runs inside sentOnce: a write already sent. */
export function isSentOnce(): boolean {
  return writing.getStore() === true;
}
