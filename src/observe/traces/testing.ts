/**
 * Span fixtures for the traces tests: spans with readable ids, and OTLP
 * bodies built from them.
 */

import type { Span } from "./span.ts";

/** A hex id of `length` characters from a small number (1 → 000…001). */
export const hexId = (n: number, length: 16 | 32 = 16): string => n.toString(16).padStart(length, "0");

/** A span with defaults for everything not given: service web, server kind, ok, 1 ms, started `start` µs. */
export function makeSpan(p: Partial<Span> & { trace?: number; id?: number; parent?: number }): Span {
  const { trace, id, parent, ...rest } = p;
  return {
    traceId: hexId(trace ?? 1, 32),
    spanId: hexId(id ?? 1),
    parentId: parent === undefined ? null : hexId(parent),
    service: "web",
    name: "GET /",
    kind: "server",
    start: 1_700_000_000_000_000,
    duration: 1000,
    status: "ok",
    statusCode: null,
    attributes: {},
    ...rest,
  };
}
