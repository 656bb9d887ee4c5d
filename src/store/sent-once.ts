/**
 * Marks an etcd write while it is sent, for the member breaker
 * (etcd-members.ts). Apart from it so that the leader election
 * (leadership.ts), which every server loads, does not load the etcd client
 * (and gRPC, TLS, HTTP/2: about 9 MB) on a server with SQLite.
 */

import { AsyncLocalStorage } from "node:async_hooks";

/** One write sent with sentOnce, as its attempts went. */
export interface SentWrite {
  /**
   * An attempt of it was sent and failed (its member's connection died, its
   * deadline passed): it may have been committed without its answer coming
   * back, and the client's next attempt then meets the write's own result.
   */
  inDoubt: boolean;
}

const writing = new AsyncLocalStorage<SentWrite>();

/**
 * Runs `send`, an etcd write, so that the breaker leaves it alone once it is
 * sent: failing it would make the client send it again, and a write that was
 * committed (its answer not yet back) would be applied twice — a create would
 * then fail on itself as a conflict. It still is not sent to a member that is
 * down; once sent it waits for its answer or its deadline. The client still
 * sends it again after an attempt that fails on its own: `write.inDoubt` then
 * says so, for the caller to tell its own write from another's.
 */
export function sentOnce<T>(send: () => Promise<T>, write: SentWrite = { inDoubt: false }): Promise<T> {
  return writing.run(write, send);
}

/** The write being sent, when the caller runs inside sentOnce. */
export function sentWrite(): SentWrite | undefined {
  return writing.getStore();
}
