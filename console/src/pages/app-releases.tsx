// The App page's releases: newest first, which one serves, when each was made
// and by whom (from the audit trail, for those who may read it), and a
// rollback to any earlier one for those who may deploy.

import type { Release } from "../../../src/model/objects.ts";
import type { AuditEntry } from "../api-types.ts";
import { ActionButton, ErrorBox, Loading, Section } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";
import type { AppDetail } from "./app.tsx";

type ReleaseView = Release & { current: boolean };

/**
 * Who made each release, from the audit trail: a deploy call comes before its
 * release (the build runs in between); a rollback call creates its release
 * before it answers (as does a secret change), so its entry is written a moment after. Each release
 * takes the last unused call of its kind up to that moment; a release without
 * one (the remediation engine's rollbacks) shows "—".
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
  for (const r of [...releases].sort((a, b) => a.version - b.version)) {
    const kind = r.rollbackOf ? "rollback" : r.description.startsWith("Secret ") ? "secret" : "deploy";
    const until = new Date(Date.parse(r.createdAt) + (kind === "deploy" ? 0 : AFTER_MS)).toISOString();
    let found = -1;
    for (let i = 0; i < calls.length && calls[i].at <= until; i++) {
      if (calls[i].kind === kind && !used.has(i)) found = i;
    }
    if (found >= 0) {
      used.add(found);
      out.set(r.version, calls[found].actor);
    } else out.set(r.version, "—");
  }
  return out;
}

/** How long after its release a rollback's or a secret change's audit entry may be written. */
const AFTER_MS = 5000;

/** The calls that make releases: a deploy, a rollback, a secret its release uses (set or unset). */
function callKind(route: string): "deploy" | "rollback" | "secret" | "" {
  if (route === "POST /api/v1/apps/:app/deploys") return "deploy";
  if (route === "POST /api/v1/apps/:app/rollback") return "rollback";
  if (/^(PUT|DELETE) \/api\/v1\/apps\/:app\/secrets\/:name$/.test(route)) return "secret";
  return "";
}

export function ReleasesTab({ detail, reload }: { detail: AppDetail; reload(): void }) {
  const { client, can } = useSession();
  const name = detail.app.name;
  const path = `/apps/${encodeURIComponent(name)}`;
  const releases = usePoll(
    (signal) => client.get<{ items: ReleaseView[] }>(`${path}/releases`, { signal }),
    5000,
    [client, name],
  );
  const mayAudit = can("audit:read");
  const audit = usePoll(
    (signal) =>
      mayAudit
        ? client.get<{ items: AuditEntry[] }>("/audit", {
            query: { app: name, limit: 1000 },
            signal,
          })
        : Promise.resolve({ items: [] }),
    5000,
    [client, name],
  );
  const authors = releaseAuthors(releases.data?.items ?? [], audit.data?.items ?? []);
  const mayRollBack = can("apps:write");
  return (
    <Section title="Releases" id="releases">
      <ErrorBox error={releases.error} />
      {!releases.data ? (
        <Loading what="releases" />
      ) : (
        <div className="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Release</th>
                <th scope="col">What</th>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">Slug</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {releases.data.items.map((r) => (
                <tr key={r.version} data-testid={`release-v${r.version}`}>
                  <th scope="row">
                    v{r.version} {r.current ? <span className="badge good">serving</span> : null}
                  </th>
                  <td>
                    {r.description}
                    {r.rollbackOf ? <span className="muted"> (content of v{r.rollbackOf})</span> : null}
                  </td>
                  <td title={r.createdAt}>{ago(r.createdAt)}</td>
                  <td>{mayAudit ? authors.get(r.version) : <span className="muted">—</span>}</td>
                  <td>
                    <code title={r.slug}>{r.slug.slice(0, 12)}</code>
                  </td>
                  <td>
                    {mayRollBack && !r.current ? (
                      <ActionButton
                        label={`Roll back to v${r.version}`}
                        confirm={`Confirm roll back to v${r.version}`}
                        kind="danger"
                        testId={`rollback-v${r.version}`}
                        onAct={async () => {
                          await client.post(`${path}/rollback`, { version: r.version });
                          releases.reload();
                          reload();
                        }}
                      />
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {!mayAudit ? (
        <p className="small muted">Who made each release is in the audit trail (owners).</p>
      ) : null}
    </Section>
  );
}
