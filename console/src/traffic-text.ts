// How the console words traffic policies: a route's policies one short
// phrase each, and a service's breaker, outlier ejection, criticality and
// concurrency limit (the Traffic tab, pages/app-traffic.tsx).

import type { Route, ServiceSpec } from "../../src/model/service-spec.ts";

/** A route's policies, one short phrase each. */
export function routePolicies(r: Partial<Route>): string[] {
  const out: string[] = [];
  if (r.methods?.length) out.push(r.methods.join(" "));
  if (r.match === "exact") out.push("exact path");
  if (r.headers && Object.keys(r.headers).length) out.push(`headers ${Object.keys(r.headers).join(", ")}`);
  if (r.rewrite !== undefined) out.push(`rewrite → ${r.rewrite}`);
  if (r.rateLimit) out.push(`rate ${r.rateLimit.rate}/s, burst ${r.rateLimit.burst}, per ${r.rateLimit.per}`);
  if (r.balance && r.balance.kind !== "round_robin")
    out.push(
      r.balance.kind === "hash"
        ? `sticky by ${r.balance.on}${"name" in r.balance ? ` ${r.balance.name}` : ""}`
        : "least request",
    );
  const t = r.timeouts;
  if (t)
    for (const [k, label] of [
      ["connectMs", "connect"],
      ["requestMs", "request"],
      ["idleMs", "idle"],
    ] as const)
      if (t[k] !== undefined) out.push(`${label} timeout ${t[k]} ms`);
  if (r.auth?.apiKey) out.push("API key");
  if (r.auth?.jwt) out.push("JWT");
  if (r.cors) out.push(`CORS ${r.cors.origins.join(" ")}`);
  if (r.split) out.push(`split ${r.split.to.map((x) => `${x.service} ${x.weight}%`).join(", ")}`);
  if (r.mirror) out.push(`mirror ${r.mirror.percent}% → ${r.mirror.service}`);
  if (r.aggregate) out.push(`aggregate ${r.aggregate.parts.map((p) => p.name).join(", ")}`);
  if (r.fallback) out.push(`fallback ${r.fallback.status}`);
  return out;
}

/** A service's traffic policy in words, per field (undefined: the policy is off or at its default). */
export const POLICY_TEXT = {
  breaker: (v: ServiceSpec["breaker"]) =>
    v ? `opens after ${v.failures} failures, for ${v.openMs} ms` : "off",
  outlier: (v: ServiceSpec["outlier"]) =>
    v
      ? `ejects after ${v.failures} failures for ${v.ejectionMs} ms, at most ${Math.round(v.maxShare * 100)}% of instances`
      : "off",
  criticality: (v: ServiceSpec["criticality"]) => v ?? "normal",
  concurrency: (v: ServiceSpec["concurrency"]) => (v === undefined ? "no limit" : `at most ${v} in flight`),
} as const;
