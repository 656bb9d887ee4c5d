// Shared config (docs/config.md): the config center's platform and
// middleware namespaces, which apps merge under their own config by pinning
// a version (the app's Config tab). Everyone reads them; a platform admin
// makes a new version (a key or a file; unsets an entry), starts a new
// namespace, and gives a version to some tenants' apps first, to every
// tenant (the promote), or rolls it back from them.
//
//   GET /config/catalog, …/:layer/:name/versions[/:v], …/diff (apps:read)
//   POST …/:layer/:name/versions, …/gray, …/gray/rollback (platform:write)

import { useState } from "react";
import type { CatalogGrayResult } from "../../../src/config-center/catalog-gray.ts";
import {
  type ConfigVersion,
  CATALOG_LAYERS as LAYERS,
  type CatalogLayer as Layer,
  type CatalogNamespace as Namespace,
} from "../../../src/model/config.ts";
import { ActionButton, ErrorBox, Loading, Section, TableHead } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { Link, navigate } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";
import { ChangeForm } from "./app-config.tsx";
import { ConfigHistory, EntryText } from "./app-config-history.tsx";

const pathOf = (layer: string, name: string) =>
  `/config/catalog/${encodeURIComponent(layer)}/${encodeURIComponent(name)}`;

export function SharedConfigPage({ params }: { params: Record<string, string> }) {
  const { client, can } = useSession();
  const catalog = usePoll(
    (signal) => client.get<{ items: Namespace[] }>("/config/catalog", { signal }),
    10_000,
    [client],
  );
  const mayWrite = can("platform:write");
  const open = params.layer && params.name ? { layer: params.layer, name: params.name } : undefined;
  const [tick, setTick] = useState(0);
  const changed = () => {
    catalog.reload();
    setTick((t) => t + 1);
  };
  return (
    <div className="page">
      <h1>Shared config</h1>
      <p className="muted">
        Platform and middleware namespaces: an app pins a version of each it uses (its Config tab) and its own
        config is merged over them, platform first. A new version changes nothing until an app pins it.
      </p>
      <ErrorBox error={catalog.error} />
      <Section title="Namespaces" id="shared-namespaces">
        {!catalog.data ? (
          <Loading what="namespaces" />
        ) : catalog.data.items.length === 0 ? (
          <p className="muted" data-testid="shared-none">
            No shared namespaces yet.
          </p>
        ) : (
          <div className="scroll">
            <table data-testid="shared-namespaces">
              <TableHead columns={["Layer", "Name", "Latest", "Versions"]} />
              <tbody>
                {catalog.data.items.map((n) => (
                  <tr key={`${n.layer}/${n.name}`} data-testid={`shared-${n.layer}-${n.name}`}>
                    <td>{n.layer}</td>
                    <th scope="row">
                      <Link to={`/config/${n.layer}/${encodeURIComponent(n.name)}`}>{n.name}</Link>
                    </th>
                    <td>v{Math.max(...n.versions)}</td>
                    <td>{n.versions.length}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        {mayWrite ? <NewNamespace /> : null}
      </Section>
      {open ? (
        (LAYERS as readonly string[]).includes(open.layer) ? (
          <NamespaceView
            key={`${open.layer}/${open.name}`}
            layer={open.layer as Layer}
            name={open.name}
            versions={
              catalog.data?.items.find((n) => n.layer === open.layer && n.name === open.name)?.versions
            }
            mayWrite={mayWrite}
            tick={tick}
            changed={changed}
          />
        ) : (
          <ErrorBox error={new Error(`no layer ${open.layer}: shared config is platform or middleware`)} />
        )
      ) : null}
    </div>
  );
}

/** A new namespace is opened empty: its first change makes its v1. */
function NewNamespace() {
  const [layer, setLayer] = useState<Layer>("platform");
  const [name, setName] = useState("");
  return (
    <form
      className="row"
      onSubmit={(e) => {
        e.preventDefault();
        if (name) navigate(`/config/${layer}/${encodeURIComponent(name)}`);
      }}
    >
      <label className="field inline">
        <span>New namespace in</span>
        <select
          value={layer}
          onChange={(e) => setLayer(e.target.value as Layer)}
          data-testid="shared-new-layer"
        >
          {LAYERS.map((l) => (
            <option key={l}>{l}</option>
          ))}
        </select>
      </label>
      <label className="field inline">
        <span>Name</span>
        <input value={name} onChange={(e) => setName(e.target.value)} data-testid="shared-new-name" />
      </label>
      <button type="submit" className="plain" disabled={!name} data-testid="shared-new-open">
        Open
      </button>
    </form>
  );
}

function NamespaceView(props: {
  layer: Layer;
  name: string;
  versions: number[] | undefined;
  mayWrite: boolean;
  tick: number;
  changed(): void;
}) {
  const { client } = useSession();
  const path = pathOf(props.layer, props.name);
  const latest = props.versions?.length ? Math.max(...props.versions) : undefined;
  const version = usePoll(
    (signal) =>
      latest === undefined
        ? Promise.resolve(undefined)
        : client.get<ConfigVersion>(`${path}/versions/${latest}`, { signal }),
    0,
    [client, path, latest],
  );
  const v = version.data;
  const names = v ? Object.keys(v.entries).sort() : [];
  return (
    <>
      <Section title={`${props.layer} ${props.name}`} id="shared-namespace">
        <ErrorBox error={version.error} />
        {latest === undefined ? (
          <p className="muted" data-testid="shared-empty">
            No versions yet{props.mayWrite ? ": the first change below makes v1." : "."}
          </p>
        ) : !v ? (
          <Loading what={`${props.name}@${latest}`} />
        ) : (
          <>
            <p data-testid="shared-head">
              {props.name}@{v.version}, {ago(v.createdAt)} by {v.author}
              {v.message ? `: ${v.message}` : ""}
            </p>
            {names.length === 0 ? (
              <p className="muted">No keys or files.</p>
            ) : (
              <div className="scroll">
                <table data-testid="shared-entries">
                  <TableHead columns={["Name", "Value"]} actions={props.mayWrite} />
                  <tbody>
                    {names.map((n) => (
                      <tr key={n} data-testid={`shared-entry-${n}`}>
                        <th scope="row">
                          <code>{n}</code>
                        </th>
                        <td>
                          <EntryText entry={v.entries[n]} />
                        </td>
                        {props.mayWrite ? (
                          <td>
                            <ActionButton
                              label="Unset"
                              confirm={`Confirm unset ${n} (a new version)`}
                              testId={`shared-unset-${n}`}
                              onAct={async () => {
                                await client.post(`${path}/versions`, { unset: [n] });
                                props.changed();
                              }}
                            />
                          </td>
                        ) : null}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </>
        )}
      </Section>
      {props.mayWrite ? <ChangeForm path={path} gray={false} done={props.changed} /> : null}
      {props.mayWrite && latest !== undefined ? (
        <TenantRollout layer={props.layer} name={props.name} path={path} versions={props.versions ?? []} />
      ) : null}
      {latest === undefined ? null : (
        <ConfigHistory
          path={path}
          stable={undefined}
          gray={undefined}
          mayWrite={false}
          tick={props.tick}
          done={props.changed}
        />
      )}
    </>
  );
}

/** A version to some tenants' apps that use the namespace, to every tenant, or rolled back from them. */
function TenantRollout(props: { layer: Layer; name: string; path: string; versions: number[] }) {
  const { client } = useSession();
  const newest = [...props.versions].sort((a, b) => b - a);
  const [version, setVersion] = useState(String(newest[0]));
  const [tenants, setTenants] = useState("");
  const [result, setResult] = useState<{ what: string; out: CatalogGrayResult }>();
  const list = tenants.split(/[\s,]+/).filter(Boolean);
  const run = (suffix: "gray" | "gray/rollback", what: string) => async () => {
    const out = await client.post<CatalogGrayResult>(`${props.path}/${suffix}`, {
      version: Number(version),
      ...(list.length ? { tenants: list } : {}),
    });
    setResult({ what, out });
  };
  const whom = list.length ? `tenants ${list.join(", ")}` : "every tenant";
  return (
    <Section title="Give a version to tenants" id="shared-rollout">
      <p className="small muted">
        The apps of those tenants that pin another version of {props.name} get a new config version pinning
        this one (live, like any change); the others keep theirs. Roll back pins each what it had before.
      </p>
      <form className="row" onSubmit={(e) => e.preventDefault()}>
        <label className="field inline">
          <span>Version</span>
          <select
            value={version}
            onChange={(e) => setVersion(e.target.value)}
            data-testid="shared-gray-version"
          >
            {newest.map((n) => (
              <option key={n} value={n}>
                v{n}
              </option>
            ))}
          </select>
        </label>
        <label className="field inline grow">
          <span>Tenants</span>
          <input
            value={tenants}
            placeholder="empty: every tenant"
            onChange={(e) => setTenants(e.target.value)}
            data-testid="shared-gray-tenants"
          />
        </label>
        <ActionButton
          label={`Give v${version} to ${list.length ? "them" : "every tenant"}`}
          kind="primary"
          confirm={list.length ? undefined : `Confirm v${version} for every tenant's apps`}
          testId="shared-gray"
          onAct={run("gray", `v${version} to ${whom}`)}
        />
        <ActionButton
          label="Roll back"
          kind="danger"
          confirm={`Confirm roll back v${version} from ${whom}`}
          testId="shared-gray-rollback"
          onAct={run("gray/rollback", `v${version} rolled back from ${whom}`)}
        />
      </form>
      {result ? (
        <div className="notice small" data-testid="shared-gray-result">
          <p>
            {result.what}: {result.out.moved.length} app{result.out.moved.length === 1 ? "" : "s"} moved
            {result.out.skipped.length ? `, ${result.out.skipped.length} skipped` : ""}.
          </p>
          <ul>
            {result.out.moved.map((m) => (
              <li key={`${m.tenant}/${m.app}`}>
                {m.tenant}/{m.app}: {props.name}@{m.from} → @{m.to} (its config v{m.appVersion})
              </li>
            ))}
            {result.out.skipped.map((m) => (
              <li key={`${m.tenant}/${m.app}`}>
                {m.tenant}/{m.app} skipped: {m.reason}
              </li>
            ))}
          </ul>
        </div>
      ) : null}
    </Section>
  );
}
