/**
 * W3C Trace Context: every request leaves the gateway with a `traceparent`.
 * An incoming valid one keeps its trace id and sampled flag, and the gateway's
 * hop becomes the parent (a new span id); a missing or malformed one starts a
 * new trace. `tracestate` passes through untouched. When the gateway records
 * spans, spans.ts makes the header instead (its hop's ids are the span ids).
 *
 *   00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>
 */

import { newSpanId, newTraceId, parseTraceparent } from "../observe/traces/trace-context.ts";

/** The traceparent to send upstream for a request that arrived with `incoming` (or none). */
export function nextTraceparent(incoming: string | undefined): string {
  const context = parseTraceparent(incoming);
  if (context !== null) return `00-${context.traceId}-${newSpanId()}-${context.sampled ? "01" : "00"}`;
  return `00-${newTraceId()}-${newSpanId()}-01`;
}
