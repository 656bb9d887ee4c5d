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

/** `matchers` with the tenant's equality matcher instead of any tenant matcher given. */
export function tenantMatchers(matchers: readonly Matcher[], tenant: string): Matcher[] {
  return [...matchers.filter((m) => m.name !== TENANT_LABEL), { name: TENANT_LABEL, op: "=", value: tenant }];
}

/** A copy of `e` whose every selector reads only `tenant`'s series. */
export function scopeToTenant(e: Expr, tenant: string): Expr {
  switch (e.type) {
    case "number":
    case "string":
      return e;
    case "selector":
      return { ...e, matchers: tenantMatchers(e.matchers, tenant) };
    case "call":
      return { ...e, args: e.args.map((a) => scopeToTenant(a, tenant)) };
    case "aggregate":
      return {
        ...e,
        expr: scopeToTenant(e.expr, tenant),
        ...(e.param ? { param: scopeToTenant(e.param, tenant) } : {}),
      };
    case "binary":
      return { ...e, lhs: scopeToTenant(e.lhs, tenant), rhs: scopeToTenant(e.rhs, tenant) };
    case "neg":
      return { ...e, expr: scopeToTenant(e.expr, tenant) };
  }
}
