// The App page's releases: newest first, which one serves, when each was made
// and by whom (as the release records it; for releases made before herd
// recorded it, from the audit trail, for those who may read it), and a
// rollback to any earlier one for those who may deploy.

import type { AuditEntry } from "../api-types.ts";
import { ActionButton, ErrorBox, Loading, Section, TableHead } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { needsAudit, type ReleaseView, releaseAuthors } from "../release-authors.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";
import type { AppDetail } from "./app.tsx";

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
  const older = needsAudit(releases.data?.items ?? []);
  const audit = usePoll(
    (signal) =>
      mayAudit && older
        ? client.get<{ items: AuditEntry[] }>("/audit", {
            query: { app: name, limit: 1000 },
            signal,
          })
        : Promise.resolve({ items: [] }),
    5000,
    [client, name, older],
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
            <TableHead columns={["Release", "What", "When", "Who", "Slug"]} actions />
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
                  <td data-testid={`release-v${r.version}-by`}>
                    {r.createdBy !== undefined || mayAudit ? (
                      authors.get(r.version)
                    ) : (
                      <span className="muted">—</span>
                    )}
                  </td>
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
      {!mayAudit && older ? (
        <p className="small muted">
          Who made releases older than this herd's record of it is in the audit trail (owners).
        </p>
      ) : null}
    </Section>
  );
}
