/**
 * W3C Trace Context: every request leaves the gateway with a `traceparent`.
 * An incoming valid one keeps its trace id and sampled flag, and the gateway's
 * hop becomes the parent (a new span id); a missing or malformed one starts a
 * new trace. `tracestate` passes through untouched.
 *
 *   00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>
 */

import { randomFillSync } from "node:crypto";

const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let offset = POOL_BYTES;

/** `bytes` random bytes as hex, from a pool refilled in blocks (one syscall per few hundred ids). */
function randomHex(bytes: number): string {
  if (offset + bytes > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const hex = pool.toString("hex", offset, offset + bytes);
  offset += bytes;
  return hex;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = "0".repeat(32);
const ZERO_SPAN = "0".repeat(16);

/** The traceparent to send upstream for a request that arrived with `incoming` (or none). */
export function nextTraceparent(incoming: string | undefined): string {
  if (incoming !== undefined) {
    const m = TRACEPARENT.exec(incoming.trim());
    if (m !== null && m[1] !== ZERO_TRACE && m[2] !== ZERO_SPAN) return `00-${m[1]}-${randomHex(8)}-${m[3]}`;
  }
  return `00-${randomHex(16)}-${randomHex(8)}-01`;
}
