// The asset catalog: every app with the release it serves, its slug, how many
// packages it ships, where it runs and its owners; and the search "which apps
// ship package X (at version or range Y)?". The search is the address
// (?name=&version=&all=), so an answer is a link.
//
//   GET /catalog/apps · GET /catalog/packages?name=&version=&all=   (docs/catalog.md)

import { type FormEvent, useState } from "react";
import type { CatalogAppSummary, PackageSearch } from "../../../src/model/catalog.ts";
import { ErrorBox, Loading, Section } from "../components/ui.tsx";
import { Link, navigate, useLocation } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

const short = (digest: string | null) => (digest ? digest.replace(/^sha256:/, "").slice(0, 12) : "—");

function SearchResults(props: { name: string; version: string; all: boolean }) {
  const { client } = useSession();
  const found = usePoll(
    (signal) =>
      client.get<PackageSearch>("/catalog/packages", {
        query: { name: props.name, version: props.version || undefined, all: props.all || undefined },
        signal,
      }),
    0,
    [client, props.name, props.version, props.all],
  );
  const r = found.data;
  const what = `${props.name}${props.version ? `@${props.version}` : ""}`;
  return (
    <Section title={`Apps that ship ${what}`} id="search">
      <ErrorBox error={found.error} />
      {!r ? (
        found.error ? null : (
          <Loading what="the search" />
        )
      ) : (
        <>
          {r.items.length === 0 ? (
            <p className="muted" data-testid="search-none">
              No {r.all ? "" : "release in service "}ships {what}.
            </p>
          ) : (
            <div className="scroll">
              <table data-testid="search-results">
                <thead>
                  <tr>
                    <th scope="col">App</th>
                    <th scope="col">Release</th>
                    <th scope="col">Version</th>
                    <th scope="col">Instances</th>
                    <th scope="col">Nodes</th>
                  </tr>
                </thead>
                <tbody>
                  {r.items.map((m) => (
                    <tr key={`${m.tenant}/${m.app}/${m.release}/${m.package.version}`}>
                      <th scope="row">
                        <Link to={`/catalog/${encodeURIComponent(m.app)}?release=${m.release}`}>{m.app}</Link>
                      </th>
                      <td>
                        v{m.release}
                        {m.current ? <span className="badge good">serving</span> : null}
                      </td>
                      <td>
                        {m.package.name}@{m.package.version}
                      </td>
                      <td>
                        {m.running}/{m.instances}
                      </td>
                      <td>{m.nodes.join(", ") || "—"}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          {r.unknown.length > 0 ? (
            <p className="small muted">
              Packages unknown (built before herd recorded them; deploy again to record):{" "}
              {r.unknown.map((u) => `${u.app} v${u.release}`).join(", ")}
            </p>
          ) : null}
        </>
      )}
    </Section>
  );
}

export function CatalogPage() {
  const { client } = useSession();
  const { search } = useLocation();
  const name = search.get("name") ?? "";
  const version = search.get("version") ?? "";
  const all = search.get("all") === "true";
  const [draft, setDraft] = useState({ name, version, all });
  const apps = usePoll(
    (signal) => client.get<{ items: CatalogAppSummary[] }>("/catalog/apps", { signal }),
    10_000,
    [client],
  );
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const next = new URLSearchParams(search);
    // "lodash@^4" in the name field is split as the CLI does (the version is after the last @).
    let n = draft.name.trim();
    let v = draft.version.trim();
    const at = n.lastIndexOf("@");
    if (at > 0 && !v) {
      v = n.slice(at + 1);
      n = n.slice(0, at);
    }
    for (const [k, val] of [
      ["name", n],
      ["version", v],
      ["all", draft.all ? "true" : ""],
    ])
      if (val) next.set(k, val);
      else next.delete(k);
    navigate(`/catalog?${next}`);
  };
  return (
    <div className="page">
      <h1>Asset catalog</h1>
      <form className="row filters card" onSubmit={submit} aria-label="package search">
        <label className="field inline grow">
          <span>Package</span>
          <input
            value={draft.name}
            onChange={(e) => setDraft({ ...draft, name: e.target.value })}
            placeholder="lodash or lodash@4.17.21"
            maxLength={214}
            required
            data-testid="package-name"
          />
        </label>
        <label className="field inline">
          <span>Version or range</span>
          <input
            value={draft.version}
            onChange={(e) => setDraft({ ...draft, version: e.target.value })}
            placeholder="^4.17 (any)"
            maxLength={100}
            size={12}
            data-testid="package-version"
          />
        </label>
        <label className="check">
          <input
            type="checkbox"
            checked={draft.all}
            onChange={(e) => setDraft({ ...draft, all: e.target.checked })}
          />{" "}
          every release kept
        </label>
        <button type="submit" className="primary">
          Find apps
        </button>
      </form>
      {name ? <SearchResults name={name} version={version} all={all} /> : null}
      <Section title="Apps" id="catalog-apps">
        <ErrorBox error={apps.error} />
        {!apps.data ? (
          <Loading what="the catalog" />
        ) : apps.data.items.length === 0 ? (
          <p className="muted">No apps.</p>
        ) : (
          <div className="scroll">
            <table data-testid="catalog-apps">
              <thead>
                <tr>
                  <th scope="col">App</th>
                  <th scope="col">Release</th>
                  <th scope="col">Slug</th>
                  <th scope="col">Packages</th>
                  <th scope="col">Instances</th>
                  <th scope="col">Nodes</th>
                  <th scope="col">Owners</th>
                </tr>
              </thead>
              <tbody>
                {apps.data.items.map((a) => (
                  <tr key={`${a.tenant}/${a.app}`}>
                    <th scope="row">
                      <Link to={`/catalog/${encodeURIComponent(a.app)}`}>{a.app}</Link>
                    </th>
                    <td>{a.release === null ? "—" : `v${a.release}`}</td>
                    <td className="mono">{short(a.slug)}</td>
                    <td>{a.packages ?? <span className="muted">unknown</span>}</td>
                    <td>
                      {a.running}/{a.instances}
                    </td>
                    <td>{a.nodes.join(", ") || "—"}</td>
                    <td>{a.owners.join(", ") || "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Section>
    </div>
  );
}
