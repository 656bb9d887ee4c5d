/** Aggregation routes (`aggregate`), resolved when the table is built: each part's backend and request (served by aggregate.ts). */

import type { AggregateSpec } from "../model/manifest.ts";
import { type Service, serviceKey } from "../model/objects.ts";
import { Backend } from "./backend.ts";

/** An aggregation route, resolved when the table is built: each part's backend and its request. */
export interface Aggregation {
  readonly parts: readonly AggregatePart[];
  /** Client headers (lowercase names) sent to every part. */
  readonly headers: ReadonlySet<string>;
}

/** One part of an aggregation. */
export interface AggregatePart {
  readonly name: string;
  /** `"name":`, JSON-encoded once for the merged body. */
  readonly key: string;
  readonly backend: Backend;
  /** The path (and query) to request. */
  readonly path: string;
  /** What joins the client's query string to `path` (`?` or `&`), or null to not forward it. */
  readonly queryJoin: string | null;
  readonly timeoutMs: number;
}

/** A route's `aggregate`; a part whose service does not exist stays, always unavailable (a problem). */
export function buildAggregation(
  spec: AggregateSpec,
  service: Service,
  backends: Map<string, Backend>,
  problems: string[],
): Aggregation {
  const parts = spec.parts.map((p): AggregatePart => {
    const key = serviceKey(service.tenant, service.app, p.service);
    let backend = backends.get(key);
    if (backend === undefined) {
      // The part stays in the answer (its key clients expect), always failing as unavailable.
      problems.push(
        `${service.app}/${service.name} aggregates part ${p.name} from ${p.service}, which does not exist`,
      );
      backend = new Backend(key, `${service.app}/${p.service}`, []);
    }
    return {
      name: p.name,
      key: `${JSON.stringify(p.name)}:`,
      backend,
      path: p.path,
      queryJoin: p.query ? (p.path.includes("?") ? "&" : "?") : null,
      timeoutMs: p.timeoutMs,
    };
  });
  return { parts, headers: new Set(spec.headers) };
}
