// Who made each release of an app: the release records it (`createdBy`);
// releases made before herd recorded it are matched to the audit trail
// (owners and platform admins may read it).

import type { Release } from "../../src/model/objects.ts";
import type { AuditEntry } from "./api-types.ts";

/** GET /apps/:app/releases items. */
export type ReleaseView = Release & { current: boolean };

/** Whether some release does not record who made it (only then is the audit trail needed). */
export function needsAudit(releases: readonly ReleaseView[]): boolean {
  return releases.some((r) => r.createdBy === undefined);
}

/**
 * Who made each release: its `createdBy`, or for an older release that has
 * none, a guess from the audit trail. The audit entry of a call is
 * written as its reply leaves: a deploy's usually before its release (the
 * build runs after the reply) but not always (a quick build), a rollback's
 * and a secret change's just after. Each release takes the last unused call
 * of its kind up to 5 s after it was made (the last: a failed deploy before
 * it made no release); a release without one (the remediation engine's
 * rollbacks before releases recorded who made them) shows "—".
 */
export function releaseAuthors(
  releases: readonly ReleaseView[],
  audit: readonly AuditEntry[],
): Map<number, string> {
  const calls = audit
    .filter((e) => e.status < 300)
    .map((e) => ({ ...e, kind: callKind(e.route) }))
    .filter((e) => e.kind !== "")
    .sort((a, b) => a.at.localeCompare(b.at));
  const used = new Set<number>();
  const out = new Map<number, string>();
  const sorted = [...releases].sort((a, b) => a.version - b.version);
  /** The last unused call of the release's kind up to AFTER_MS after it (of `actor` when given). */
  const take = (r: ReleaseView, actor?: string): string | undefined => {
    const kind = r.rollbackOf ? "rollback" : r.description.startsWith("Secret ") ? "secret" : "deploy";
    const until = new Date(Date.parse(r.createdAt) + AFTER_MS).toISOString();
    let found = -1;
    for (let i = 0; i < calls.length && calls[i].at <= until; i++) {
      if (calls[i].kind === kind && !used.has(i) && (actor === undefined || calls[i].actor === actor))
        found = i;
    }
    if (found < 0) return undefined;
    used.add(found);
    return calls[found].actor;
  };
  // Releases that record who made them first take their own calls, so older ones are not matched to them.
  for (const r of sorted) {
    if (r.createdBy === undefined) continue;
    out.set(r.version, r.createdBy);
    take(r, r.createdBy);
  }
  for (const r of sorted) if (r.createdBy === undefined) out.set(r.version, take(r) ?? "—");
  return new Map([...out].sort(([a], [b]) => a - b));
}

/** How long after its release the call's audit entry may be written (it is written as the reply leaves). */
const AFTER_MS = 5000;

/** The calls that make releases: a deploy, a rollback, a secret its release uses (set or unset). */
function callKind(route: string): "deploy" | "rollback" | "secret" | "" {
  if (route === "POST /api/v1/apps/:app/deploys") return "deploy";
  if (route === "POST /api/v1/apps/:app/rollback") return "rollback";
  if (/^(PUT|DELETE) \/api\/v1\/apps\/:app\/secrets\/:name$/.test(route)) return "secret";
  return "";
}
