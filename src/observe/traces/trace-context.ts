/**
 * W3C trace context (`traceparent: 00-<trace id>-<parent id>-<flags>`), for
 * whatever records spans in-process (the gateway): read the incoming header,
 * make ids, write the header to pass on.
 *
 *   incoming traceparent ─► parseTraceparent ─► {traceId, parentId, sampled} | null (start a new trace)
 *   span ids ─► newSpanId / newTraceId ─► formatTraceparent ─► upstream request
 */

import { randomFillSync } from "node:crypto";

export interface TraceContext {
  traceId: string;
  /** The caller's span id: the parent of the span recorded here. */
  parentId: string;
  sampled: boolean;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;

/** The trace context in a `traceparent` header, or null when there is none or it is invalid (then start a new trace). */
export function parseTraceparent(header: string | undefined): TraceContext | null {
  if (!header) return null;
  const m = TRACEPARENT.exec(header.trim());
  if (!m) return null;
  const [, version, traceId, parentId, flags] = m;
  // Version ff is forbidden; version 00 has exactly four fields.
  if (version === "ff" || (version === "00" && header.trim().length !== 55)) return null;
  if (/^0+$/.test(traceId) || /^0+$/.test(parentId)) return null;
  return { traceId, parentId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

/** `00-<traceId>-<spanId>-01|00`. */
export function formatTraceparent(traceId: string, spanId: string, sampled = true): string {
  return `00-${traceId}-${spanId}-${sampled ? "01" : "00"}`;
}

// Random bytes drawn 4 KiB at a time: one syscall per ~500 ids instead of one per id.
const pool = Buffer.alloc(4096);
let offset = pool.length;

function randomHex(bytes: number): string {
  if (offset + bytes > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const hex = pool.toString("hex", offset, offset + bytes);
  offset += bytes;
  // All-zero ids are invalid; a zero draw is astronomically rare but cheap to refuse.
  return /^0+$/.test(hex) ? randomHex(bytes) : hex;
}

/**
 * A new trace id, 32 hex characters: the Unix time in seconds (8 hex digits,
 * as AWS X-Ray and its OpenTelemetry id generator have it), the millisecond
 * within that second (3 digits), then 84 random bits. Traces started at the
 * same time sit together in the span store's trace index (span-store.ts:
 * traceKey), so writing them touches a few pages at the end of the index
 * instead of one random page per span.
 */
export function newTraceId(): string {
  const now = Date.now();
  return (
    Math.floor(now / 1000)
      .toString(16)
      .padStart(8, "0") +
    (now % 1000).toString(16).padStart(3, "0") +
    randomHex(11).slice(1)
  );
}
/** A random 8-byte span id, 16 hex characters. */
export const newSpanId = (): string => randomHex(8);
