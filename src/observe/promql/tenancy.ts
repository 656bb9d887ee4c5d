/**
 * Limits a query to one tenant's series: every selector of the parsed query
 * gets `tenant="<tenant>"`, replacing any tenant matcher the user wrote.
 *
 *   parsePromql(text) ─► scopeToTenant(expr, "acme") ─► engine
 *
 * Because the matcher is on every selector (inside functions, aggregations,
 * both sides of `or`/`and`/`unless`), no expression can read a series of
 * another tenant, nor a platform series (herd's own, without a tenant label).
 * What a query does with the series it read (`label_replace` writing a
 * `tenant` label, say) only relabels the tenant's own data.
 */

import type { Matcher } from "../tsdb/labels.ts";
import type { Expr } from "./parser.ts";

/** The series label that says whose a series is. */
export const TENANT_LABEL = "tenant";

/**
 * `matchers` with the tenant's equality matcher instead of any tenant matcher
 * given; with `platform`, series without a tenant (herd's own) match too.
 */
export function tenantMatchers(matchers: readonly Matcher[], tenant: string, platform = false): Matcher[] {
  const own: Matcher = platform
    ? { name: TENANT_LABEL, op: "=~", value: `${tenant.replace(/[^a-z0-9-]/g, "")}|` }
    : { name: TENANT_LABEL, op: "=", value: tenant };
  return [...matchers.filter((m) => m.name !== TENANT_LABEL), own];
}

/**
 * A copy of `e` whose every selector reads only `tenant`'s series (and, with
 * `platform`, the series that belong to no tenant).
 */
export function scopeToTenant(e: Expr, tenant: string, platform = false): Expr {
  switch (e.type) {
    case "number":
    case "string":
      return e;
    case "selector":
      return { ...e, matchers: tenantMatchers(e.matchers, tenant, platform) };
    case "subquery":
      return { ...e, expr: scopeToTenant(e.expr, tenant, platform) };
    case "call":
      return { ...e, args: e.args.map((a) => scopeToTenant(a, tenant, platform)) };
    case "aggregate":
      return {
        ...e,
        expr: scopeToTenant(e.expr, tenant, platform),
        ...(e.param ? { param: scopeToTenant(e.param, tenant, platform) } : {}),
      };
    case "binary":
      return {
        ...e,
        lhs: scopeToTenant(e.lhs, tenant, platform),
        rhs: scopeToTenant(e.rhs, tenant, platform),
      };
    case "neg":
      return { ...e, expr: scopeToTenant(e.expr, tenant, platform) };
  }
}
