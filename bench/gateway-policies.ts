// The configuration of bench target (d), shared by bench:gateway and
// bench:gateway-cpu: every gateway policy on, each set so that none triggers,
// so what is measured is the cost of checking them. Metrics are recorded and
// traceparent propagated on every target ((c) too): they are always on.

import { createHash } from "node:crypto";
import type { Consumer, Service } from "../src/model/objects.ts";
import type { StoredObject } from "../src/store/store.ts";

/** The consumer whose API key the load of (d) sends. */
const API_KEY = "hk_bench-key-0123456789abcdefghijklmn";

const CONSUMER: StoredObject = {
  kind: "consumer",
  key: "default/bench",
  revision: 1,
  createRevision: 1,
  value: {
    tenant: "default",
    name: "bench",
    createdAt: new Date(0).toISOString(),
    keys: [
      {
        id: "bench",
        hash: createHash("sha256").update(API_KEY).digest("hex"),
        hint: "hk_benc",
        createdAt: new Date(0).toISOString(),
      },
    ],
    jwt: [],
  } satisfies Consumer,
};

/** The headers every request of (d) carries. */
export const POLICY_HEADERS: Record<string, string> = { "x-api-key": API_KEY };

export const POLICY_NOTE =
  "(d) has API-key auth (a consumer's key, sha256 lookup), a rate limit per consumer, the breaker, " +
  "outlier ejection and the retry budget on; metrics and traceparent are on for (c) and (d) alike";

/** The bench objects with (d)'s policies on the service's routes and the consumer added. */
export function withPolicies(base: StoredObject[]): StoredObject[] {
  return base
    .map((o) => {
      if (o.kind !== "service") return o;
      const service = structuredClone(o.value) as Service;
      service.spec.routes = service.spec.routes.map((r) => ({
        ...r,
        rateLimit: { rate: 1e6, burst: 1e6, per: "consumer" },
        auth: { apiKey: { header: "x-api-key", hideCredentials: false } },
      }));
      service.spec.breaker = { failures: 1000, openMs: 5000 };
      service.spec.outlier = { failures: 1000, ejectionMs: 1000, maxShare: 0.5 };
      return { ...o, value: service };
    })
    .concat([CONSUMER]);
}
