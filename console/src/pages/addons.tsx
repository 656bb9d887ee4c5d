// Add-ons: the tenant's databases and caches (herd's own PostgreSQL and
// Redis, or a broker's service), as `herd addons`. A deployer makes one
// (addon-create.tsx) and works on each (addon-card.tsx: bind, detach,
// rotate, plan, backups, destroy). Below them, the final backups of
// destroyed add-ons: one is restored into a new add-on of its name, or
// forgotten.
//
//   GET /addons, GET /addons/:addon (state), GET /addon-plans, GET /apps,
//   GET /addon-backups (viewer) · POST /addons, DELETE /addon-backups/:id (apps:write)   (docs/addons.md)

import { useState } from "react";
import type { PlanView } from "../../../src/addons/brokers.ts";
import type { Addon, AddonInfo as AddonView, FinalAddonBackup } from "../../../src/model/addon.ts";
import type { App } from "../../../src/model/objects.ts";
import { ActionButton, ErrorBox, Loading, Section, TableHead } from "../components/ui.tsx";
import { ago, bytes } from "../format.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";
import { AddonCard, contentOf } from "./addon-card.tsx";
import { type Created, NewAddon } from "./addon-create.tsx";

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
  const catalog = usePoll(
    async (signal) => {
      const [plans, apps] = await Promise.all([
        client.get<{ items: PlanView[] }>("/addon-plans", { signal }),
        client.get<{ items: App[] }>("/apps", { signal }),
      ]);
      return { plans: plans.items, apps: apps.items.map((a) => a.name) };
    },
    30_000,
    [client],
  );
  const finals = usePoll(
    (signal) => client.get<{ items: FinalAddonBackup[] }>("/addon-backups", { signal }),
    15_000,
    [client],
  );
  const [made, setMade] = useState<Created>();
  const reload = () => {
    addons.reload();
    finals.reload();
  };
  // An add-on's server is an app of the tenant too: it is not offered as an app to bind.
  const servers = new Set((addons.data ?? []).map((a) => a.name));
  const apps = (catalog.data?.apps ?? []).filter((a) => !servers.has(a));
  const plans = catalog.data?.plans ?? [];
  return (
    <div className="page">
      <h1>Add-ons</h1>
      <ErrorBox error={addons.error ?? catalog.error} />
      {mayWrite && catalog.data ? (
        <NewAddon
          plans={plans}
          apps={apps}
          done={(m) => {
            setMade(m);
            reload();
          }}
        />
      ) : null}
      {made ? (
        <p className="notice small" data-testid="addon-made">
          Made <strong>{made.name}</strong>
          {made.app ? (
            <>
              ; <Link to={`/apps/${encodeURIComponent(made.app)}`}>{made.app}</Link> gets{" "}
              <code>{made.vars?.join(", ")}</code> in its new release
            </>
          ) : null}
          .
        </p>
      ) : null}
      {!addons.data ? (
        <Loading what="add-ons" />
      ) : addons.data.length === 0 ? (
        <p className="muted" data-testid="addons-none">
          No add-ons in this tenant. {mayWrite ? "Make one above" : "A deployer makes one here"} or with{" "}
          <code>herd addons create postgres --app APP</code> (or redis).
        </p>
      ) : (
        addons.data.map((a) => (
          <AddonCard key={a.name} addon={a} plans={plans} apps={apps} mayWrite={mayWrite} reload={reload} />
        ))
      )}
      <FinalBackups items={finals.data?.items ?? []} mayWrite={mayWrite} done={reload} />
    </div>
  );
}

function FinalBackups(props: { items: FinalAddonBackup[]; mayWrite: boolean; done: () => void }) {
  const { client } = useSession();
  if (props.items.length === 0) return null;
  return (
    <Section title="Final backups of destroyed add-ons" id="final-backups">
      <div className="scroll">
        <table data-testid="final-backups">
          <TableHead
            columns={["Backup", "Add-on", "Destroyed", "By", "Holds", "Size"]}
            actions={props.mayWrite}
          />
          <tbody>
            {props.items.map((f) => (
              <tr key={f.id} data-testid={`final-${f.id}`}>
                <th scope="row">{f.id}</th>
                <td>
                  {f.addon} ({f.kind}, {f.plan})
                </td>
                <td title={f.destroyedAt}>{ago(f.destroyedAt)}</td>
                <td>{f.destroyedBy}</td>
                <td>{contentOf(f)}</td>
                <td>{bytes(f.size)}</td>
                {props.mayWrite ? (
                  <td>
                    <ActionButton
                      label={`Restore as ${f.addon}`}
                      title="A new add-on of its name, kind and plan, with this backup's data (bind it to apps after)"
                      testId={`final-restore-${f.id}`}
                      onAct={async () => {
                        await client.post("/addons", {
                          kind: f.kind,
                          plan: f.plan,
                          name: f.addon,
                          fromBackup: f.id,
                        });
                        props.done();
                      }}
                    />
                    <ActionButton
                      label="Delete"
                      kind="danger"
                      confirm={`Confirm delete ${f.id} (gone for good)`}
                      testId={`final-delete-${f.id}`}
                      onAct={async () => {
                        await client.call(`/addon-backups/${encodeURIComponent(f.id)}`, { method: "DELETE" });
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
    </Section>
  );
}
