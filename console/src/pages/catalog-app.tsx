// One app in the asset catalog: owners and deployers, every release (slug
// digest, package count and changes, who deployed it, where it runs, the
// secret versions it pinned), the config versions in effect (stable, gray, the
// layer versions they pin), the packages of the chosen release (?release=N),
// the declared dependencies beside those seen, and the calls seen in the traces.
//
//   GET /catalog/apps/:app · GET /catalog/apps/:app/releases/:n/packages?against=   (docs/catalog.md)

import { useState } from "react";
import type {
  CatalogApp,
  CatalogConfig,
  CatalogConfigVersion,
  ReleasePackages,
} from "../../../src/model/catalog.ts";
import { ErrorBox, Loading, Section } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { Link, navigate, useLocation } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

function Packages(props: { app: string; release: number; against?: number }) {
  const { client } = useSession();
  const [filter, setFilter] = useState("");
  const data = usePoll(
    (signal) =>
      client.get<ReleasePackages>(
        `/catalog/apps/${encodeURIComponent(props.app)}/releases/${props.release}/packages`,
        { query: { against: props.against }, signal },
      ),
    0,
    [client, props.app, props.release, props.against],
  );
  const p = data.data;
  const needle = filter.trim().toLowerCase();
  const list = (p?.packages?.packages ?? []).filter((x) => !needle || x.name.toLowerCase().includes(needle));
  return (
    <Section title={`Packages of v${props.release}`} id="packages">
      <ErrorBox error={data.error} />
      {!p ? (
        data.error ? null : (
          <Loading what="packages" />
        )
      ) : !p.packages ? (
        <p className="muted">Unknown: built before herd recorded packages (deploy again to record them).</p>
      ) : (
        <>
          <p className="small muted">
            {p.packages.packages.length} packages from {p.packages.from ?? "nothing installed"}
            {p.packages.lockfile ? `, lockfile ${p.packages.lockfile}` : ""}
          </p>
          {p.changes ? (
            <p className="small" data-testid="package-changes">
              Since v{p.changes.against}:{" "}
              {p.changes.added.length + p.changes.removed.length === 0
                ? "no change"
                : [
                    ...p.changes.removed.map((x) => `− ${x.name}@${x.version}`),
                    ...p.changes.added.map((x) => `+ ${x.name}@${x.version}`),
                  ].join(" · ")}
            </p>
          ) : null}
          {p.packages.packages.length === 0 ? (
            <p className="muted">This release ships no npm packages.</p>
          ) : null}
          {p.packages.packages.length === 0 ? null : (
            <>
              <label className="field inline">
                <span>Filter</span>
                <input
                  type="search"
                  value={filter}
                  maxLength={214}
                  onChange={(e) => setFilter(e.target.value)}
                />
              </label>
              <div className="scroll tall-list">
                <table data-testid="packages">
                  <thead>
                    <tr>
                      <th scope="col">Name</th>
                      <th scope="col">Version</th>
                    </tr>
                  </thead>
                  <tbody>
                    {list.slice(0, 500).map((x) => (
                      <tr key={`${x.name}@${x.version}`}>
                        <th scope="row">{x.name}</th>
                        <td>{x.version}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
              {list.length > 500 ? (
                <p className="small muted">first 500 of {list.length}; filter to narrow</p>
              ) : null}
            </>
          )}
        </>
      )}
    </Section>
  );
}

/** `platform base@4 · middleware redis@1`, or "no lower layer". */
function pins(v: CatalogConfigVersion): string {
  const list = [
    ...(v.platform ? [`platform ${v.platform.name}@${v.platform.version}`] : []),
    ...v.middleware.map((m) => `middleware ${m.name}@${m.version}`),
  ];
  return list.join(" · ") || "no lower layer";
}

function Config({ app, config }: { app: string; config: CatalogConfig }) {
  const { stable, gray } = config;
  const to = gray
    ? [
        ...(gray.share !== undefined ? [`${gray.share}% of instances`] : []),
        ...(gray.instances?.length ? [`instances ${gray.instances.join(", ")}`] : []),
        ...(gray.labels
          ? [
              `labels ${Object.entries(gray.labels)
                .map(([k, v]) => `${k}=${v}`)
                .join(",")}`,
            ]
          : []),
      ].join(", ") || "no instance"
    : "";
  return (
    <Section title="Config in effect" id="config">
      {!stable && !gray ? (
        <p className="muted">No config version yet (herd config set, docs/config.md).</p>
      ) : (
        <table data-testid="catalog-config">
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Pins</th>
              <th scope="col">By</th>
              <th scope="col">Message</th>
            </tr>
          </thead>
          <tbody>
            {stable ? (
              <tr>
                <th scope="row">
                  v{stable.version} <span className="badge good">stable</span>
                </th>
                <td className="small">{pins(stable)}</td>
                <td className="small">
                  {stable.author} · {ago(stable.createdAt)}
                </td>
                <td className="small">{stable.message}</td>
              </tr>
            ) : null}
            {gray ? (
              <tr>
                <th scope="row">
                  v{gray.version} <span className="badge busy">gray</span>
                </th>
                <td className="small">{pins(gray)}</td>
                <td className="small">
                  {gray.by} · {ago(gray.startedAt)} · to {to}
                </td>
                <td className="small">{gray.message}</td>
              </tr>
            ) : null}
          </tbody>
        </table>
      )}
      <p className="small muted">herd config status --app {app} tells which instances applied it.</p>
    </Section>
  );
}

/** Each declared dependency and each undeclared call, with whether the traces saw it. */
function Dependencies({ app, deps }: { app: string; deps: CatalogApp["dependencies"] }) {
  const { declared, observed, drift } = deps;
  const seen = new Set((observed?.calls ?? []).map((c) => `${c.from}>${c.to}`));
  const rows = [
    ...Object.entries(declared?.services ?? {}).flatMap(([service, list]) =>
      list.map((to) => ({ from: `${app}/${service}`, to, declared: true })),
    ),
    ...(drift?.undeclared ?? []).map((u) => ({ ...u, declared: false })),
  ];
  return (
    <Section
      title={declared ? `Dependencies (dependsOn of v${declared.release})` : "Dependencies"}
      id="declared"
    >
      {!declared ? (
        <p className="muted">No release serves: nothing is declared.</p>
      ) : rows.length === 0 ? (
        <p className="muted">
          Its herd.yaml declares no dependsOn{observed ? ", and no undeclared call was seen" : ""}.
        </p>
      ) : (
        <div className="scroll">
          <table data-testid="catalog-dependencies">
            <thead>
              <tr>
                <th scope="col">From</th>
                <th scope="col">To</th>
                <th scope="col">Declared</th>
                <th scope="col">Seen ({observed?.window ?? "traces unavailable"})</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={`${r.from}>${r.to}`}>
                  <td>{r.from}</td>
                  <td>{r.to}</td>
                  <td>{r.declared ? "yes" : <span className="badge bad">undeclared</span>}</td>
                  <td>
                    {!observed ? (
                      <span className="muted">unknown</span>
                    ) : seen.has(`${r.from}>${r.to}`) ? (
                      "yes"
                    ) : (
                      <span className="badge plain">not seen</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}

export function CatalogAppPage({ params }: { params: Record<string, string> }) {
  const { client } = useSession();
  const { search } = useLocation();
  const name = params.app;
  const entry = usePoll(
    (signal) => client.get<CatalogApp>(`/catalog/apps/${encodeURIComponent(name)}`, { signal }),
    15_000,
    [client, name],
  );
  const e = entry.data;
  const chosen = Number(search.get("release")) || e?.release || e?.releases[0]?.version;
  const chosenRelease = e?.releases.find((r) => r.version === chosen);
  return (
    <div className="page">
      <nav className="crumbs" aria-label="breadcrumb">
        <Link to="/catalog">Catalog</Link> / <span>{name}</span>
      </nav>
      <h1>
        {name}{" "}
        {e ? (
          <span className="muted">
            {e.release === null ? "no release" : `serving v${e.release}`} ·{" "}
            <Link to={`/apps/${name}`}>app page</Link>
          </span>
        ) : null}
      </h1>
      <ErrorBox error={entry.error} />
      {!e ? (
        entry.error ? null : (
          <Loading what={name} />
        )
      ) : (
        <>
          <p>
            Owners: {e.owners.join(", ") || "—"} · deployed by: {e.deployers.join(", ") || "—"} · created{" "}
            {ago(e.createdAt)}
          </p>
          <Section title={`Releases (${e.releases.length})`} id="releases">
            <div className="scroll">
              <table data-testid="catalog-releases">
                <thead>
                  <tr>
                    <th scope="col">Release</th>
                    <th scope="col">Created</th>
                    <th scope="col">Slug</th>
                    <th scope="col">Packages</th>
                    <th scope="col">Changes</th>
                    <th scope="col">Deployed by</th>
                    <th scope="col">Runs</th>
                    <th scope="col">Secrets</th>
                    <th scope="col">Description</th>
                  </tr>
                </thead>
                <tbody>
                  {e.releases.map((r) => (
                    <tr key={r.version} aria-current={r.version === chosen ? "true" : undefined}>
                      <th scope="row">
                        <button
                          type="button"
                          className="plain"
                          aria-pressed={r.version === chosen}
                          onClick={() =>
                            navigate(`/catalog/${encodeURIComponent(name)}?release=${r.version}`, {
                              replace: true,
                            })
                          }
                        >
                          v{r.version}
                        </button>
                        {r.current ? <span className="badge good">serving</span> : null}
                      </th>
                      <td>{ago(r.createdAt)}</td>
                      <td className="mono" title={r.slug}>
                        {r.slug.replace(/^sha256:/, "").slice(0, 12)}
                      </td>
                      <td>{r.packages ? r.packages.count : <span className="muted">unknown</span>}</td>
                      <td>{r.changes ? `+${r.changes.added} −${r.changes.removed}` : "—"}</td>
                      <td>{r.deployedBy ?? "—"}</td>
                      <td className="small">
                        {r.runs.length === 0
                          ? "—"
                          : r.runs
                              .map((x) => `${x.service} ${x.running}/${x.instances} ${x.node ?? "pending"}`)
                              .join(", ")}
                      </td>
                      <td className="small">
                        {r.secrets
                          ? Object.entries(r.secrets)
                              .map(([k, v]) => `${k} v${v}`)
                              .join(", ")
                          : "—"}
                      </td>
                      <td className="small">{r.description}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </Section>
          <div className="columns">
            <Config app={name} config={e.config} />
            <Dependencies app={name} deps={e.dependencies} />
          </div>
          <div className="columns">
            {chosen ? (
              <Packages app={name} release={chosen} against={chosenRelease?.changes?.against} />
            ) : null}
            <Section
              title={`Calls seen in the traces (${e.dependencies.observed?.window ?? "15m"})`}
              id="deps"
            >
              {!e.dependencies.observed ? (
                <p className="error">{e.dependencies.observedError ?? "the trace store did not answer"}</p>
              ) : e.dependencies.observed.calls.length === 0 ? (
                <p className="muted">No calls to or from {name} in this window.</p>
              ) : (
                <div className="scroll">
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">From</th>
                        <th scope="col">To</th>
                        <th scope="col">Calls</th>
                        <th scope="col">Errors</th>
                        <th scope="col">p99</th>
                      </tr>
                    </thead>
                    <tbody>
                      {e.dependencies.observed.calls.map((c) => (
                        <tr key={`${c.from}>${c.to}`}>
                          <td>{c.from}</td>
                          <td>{c.to}</td>
                          <td>
                            {c.calls} ({c.rate.toFixed(2)}/s)
                          </td>
                          <td className={c.errorRate >= 0.05 ? "bad" : undefined}>
                            {(c.errorRate * 100).toFixed(1)}%
                          </td>
                          <td>{(c.p99 / 1000).toFixed(1)} ms</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
              <p className="small">
                <Link to="/traces/map">Open the dependency map</Link>
              </p>
            </Section>
          </div>
        </>
      )}
    </div>
  );
}
