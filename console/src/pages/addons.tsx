// Add-ons: each of the tenant's databases and caches (herd's own PostgreSQL
// and Redis, or a broker's service) with its plan, its server's state, the apps
// bound to it and the variable each one gets, and its backups. A deployer backs
// one up now, restores a backup (asks to confirm: the data goes back to then),
// or forgets a backup; creating, binding and destroying stay in `herd addons`.
//
//   GET /addons · GET /addons/:addon (state) · POST /addons/:addon/backups,
//   POST …/backups/:id/restore, DELETE …/backups/:id (apps:write)   (docs/addons.md)

import type { Addon, AddonBackup } from "../../../src/model/addon.ts";
import { ActionButton, ErrorBox, Loading, Section, StateBadge } from "../components/ui.tsx";
import { ago, bytes } from "../format.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

type AddonView = Addon & { state: string; instance?: string; node?: string | null };

/** What a backup holds: the databases (postgres), the keyspace (redis), and why it was taken. */
function contentOf(b: AddonBackup): string {
  const what = b.format === "rdb" ? "the keyspace" : b.databases.join(", ") || "no database";
  return b.reason === "detach" && b.app ? `${what} (${b.app}, before its drop)` : what;
}

function Backups(props: { addon: AddonView; mayWrite: boolean; done: () => void }) {
  const { client } = useSession();
  const base = `/addons/${encodeURIComponent(props.addon.name)}/backups`;
  const backups = [...(props.addon.backups ?? [])].reverse();
  if (backups.length === 0) return <p className="small muted">No backups yet.</p>;
  return (
    <div className="scroll">
      <table data-testid={`backups-${props.addon.name}`}>
        <thead>
          <tr>
            <th scope="col">Backup</th>
            <th scope="col">Taken</th>
            <th scope="col">Why</th>
            <th scope="col">Holds</th>
            <th scope="col">Size</th>
            {props.mayWrite ? <th scope="col" aria-label="Actions" /> : null}
          </tr>
        </thead>
        <tbody>
          {backups.map((b) => (
            <tr key={b.id} data-testid={`backup-${b.id}`}>
              <th scope="row">{b.id}</th>
              <td>{ago(b.createdAt)}</td>
              <td>{b.reason ?? "manual"}</td>
              <td>{contentOf(b)}</td>
              <td>{bytes(b.size)}</td>
              {props.mayWrite ? (
                <td>
                  <ActionButton
                    label="Restore"
                    kind="danger"
                    confirm={`Confirm restore of ${b.id} (the data goes back to then)`}
                    testId={`restore-${b.id}`}
                    onAct={async () => {
                      await client.post(`${base}/${encodeURIComponent(b.id)}/restore`, {});
                      props.done();
                    }}
                  />
                  <ActionButton
                    label="Delete"
                    confirm={`Confirm delete ${b.id}`}
                    testId={`delete-backup-${b.id}`}
                    onAct={async () => {
                      await client.call(`${base}/${encodeURIComponent(b.id)}`, { method: "DELETE" });
                      props.done();
                    }}
                  />
                </td>
              ) : null}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function AddonsPage() {
  const { client, can } = useSession();
  const mayWrite = can("apps:write");
  const addons = usePoll(
    async (signal) => {
      const list = await client.get<{ items: Addon[] }>("/addons", { signal });
      return Promise.all(
        list.items.map((a) => client.get<AddonView>(`/addons/${encodeURIComponent(a.name)}`, { signal })),
      );
    },
    5000,
    [client],
  );
  return (
    <div className="page">
      <h1>Add-ons</h1>
      <ErrorBox error={addons.error} />
      {!addons.data ? (
        <Loading what="add-ons" />
      ) : addons.data.length === 0 ? (
        <p className="muted" data-testid="addons-none">
          No add-ons in this tenant. Make one with <code>herd addons create postgres --app APP</code> (or
          redis).
        </p>
      ) : (
        <div>
          {addons.data.map((a) => (
            <Section
              key={a.name}
              title={a.name}
              id={`addon-${a.name}`}
              actions={
                mayWrite ? (
                  <ActionButton
                    label="Back up now"
                    kind="primary"
                    testId={`backup-now-${a.name}`}
                    onAct={async () => {
                      await client.post(`/addons/${encodeURIComponent(a.name)}/backups`, {});
                      addons.reload();
                    }}
                  />
                ) : undefined
              }
            >
              <p data-testid={`addon-state-${a.name}`}>
                <StateBadge state={a.state} />{" "}
                <span className="muted small">
                  {a.kind}
                  {a.broker ? ` (broker ${a.broker.name})` : ""} · plan {a.plan} · made {ago(a.createdAt)}
                  {a.node ? ` · on ${a.node}` : ""}
                  {a.backupPolicy
                    ? ` · backups ${a.backupPolicy.schedule}, keeping ${a.backupPolicy.keep}`
                    : ""}
                </span>
              </p>
              {a.bindings.length === 0 ? (
                <p className="small muted">Bound to no app.</p>
              ) : (
                <ul className="small" data-testid={`bindings-${a.name}`}>
                  {a.bindings.map((b) => (
                    <li key={`${b.app}/${b.var}`}>
                      <Link to={`/apps/${encodeURIComponent(b.app)}`}>{b.app}</Link> gets {b.var}
                    </li>
                  ))}
                </ul>
              )}
              <Backups addon={a} mayWrite={mayWrite} done={addons.reload} />
            </Section>
          ))}
        </div>
      )}
    </div>
  );
}
