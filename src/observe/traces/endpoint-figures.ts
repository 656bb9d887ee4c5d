/**
 * Per-endpoint latency of one service, per release, from the spans its
 * instances send: what a canary's analysis compares route by route
 * (controllers/rollout-controller.ts, model/endpoint-analysis.ts).
 *
 *   app's SERVER span (service app/svc, route = http.route) ─parent─► the gateway's span (herd.instance)
 *        └─ instance ─► release (given by the caller) ─► per (release, route): requests, errors, p50, p99
 *
 * The gateway's span of a proxied request is the parent the upstream sees
 * (gateway/spans.ts), so an app's own server span is tied to the instance,
 * and so to the release, that served it; spans of requests that did not
 * come through the gateway (internal calls) are not counted.
 */

import type { DatabaseSync } from "node:sqlite";
import type { EndpointFigures } from "../../model/endpoint-analysis.ts";
import { SPAN_KINDS } from "./span.ts";

/** Which spans: one service of a tenant over a window, with each instance's release. */
export interface EndpointQuery {
  tenant: string;
  /** `app/service`, the service name its spans carry. */
  service: string;
  /** µs since the epoch, [from, to). */
  from: number;
  to: number;
  /** Instance id → the release it runs. Spans of other instances are left out. */
  releases: Record<string, number>;
  /** Spans read at most (default 50,000). */
  max?: number;
}

/** Reads the window's spans and sums them up per (release, route). */
export function endpointFigures(db: DatabaseSync, q: EndpointQuery): EndpointFigures[] {
  const stmt = db.prepare(
    `SELECT c.route AS route, c.duration AS duration, c.error AS error,
            json_extract(p.attributes, '$."herd.instance"') AS instance
       FROM spans c JOIN spans p
         ON p.trace_key = c.trace_key AND p.trace_id = c.trace_id AND p.span_id = c.parent_id
      WHERE c.start >= ? AND c.start < ? AND c.service = ? AND c.tenant = ? AND c.kind = ? AND p.peer = ?
      LIMIT ?`,
  );
  const rows = stmt.iterate(
    q.from,
    q.to,
    q.service,
    q.tenant,
    SPAN_KINDS.indexOf("server"),
    q.service,
    q.max ?? 50_000,
  ) as Iterable<{ route: string; duration: number; error: number; instance: string | null }>;
  const groups = new Map<string, { route: string; release: number; durations: number[]; errors: number }>();
  for (const row of rows) {
    const release = row.instance === null ? undefined : q.releases[row.instance];
    if (release === undefined) continue;
    const key = `${release} ${row.route}`;
    let g = groups.get(key);
    if (!g) {
      g = { route: row.route, release, durations: [], errors: 0 };
      groups.set(key, g);
    }
    g.durations.push(row.duration);
    if (row.error) g.errors++;
  }
  return [...groups.values()].map((g) => {
    const sorted = g.durations.sort((a, b) => a - b);
    return {
      route: g.route,
      release: g.release,
      requests: sorted.length,
      errors: g.errors,
      p50Ms: quantile(sorted, 0.5) / 1000,
      p99Ms: quantile(sorted, 0.99) / 1000,
    };
  });
}

/** Nearest rank of sorted values (µs). */
function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;
}
