// Traces: search (service, app, route, status, slower than, how far back),
// newest first; each result opens its waterfall. The filters are the address
// (?service=&app=&route=&status=&minDuration=&since=), so a search is a link.
//
//   GET /traces?…   (api/routes/traces.ts; µs)

import { type FormEvent, useState } from "react";
import type { TraceSummary } from "../api-types.ts";
import { TraceLink, TracesTabs } from "../components/traces-tabs.tsx";
import { ErrorBox, Loading, Section } from "../components/ui.tsx";
import { ago, micros } from "../format.ts";
import { navigate, useLocation } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

const FIELDS = ["service", "app", "route", "status", "minDuration", "since"] as const;

export function TracesPage() {
  const { client, can } = useSession();
  const { search } = useLocation();
  const current = Object.fromEntries(FIELDS.map((f) => [f, search.get(f) ?? ""])) as Record<
    (typeof FIELDS)[number],
    string
  >;
  const [draft, setDraft] = useState(current);
  const key = FIELDS.map((f) => current[f]).join("\0");
  const found = usePoll(
    (signal) =>
      client.get<{ items: TraceSummary[] }>("/traces", {
        query: { ...Object.fromEntries(FIELDS.map((f) => [f, current[f] || undefined])), limit: 50 },
        signal,
      }),
    10_000,
    [client, key],
  );
  const traces = found.data?.items;
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const next = new URLSearchParams(search);
    for (const f of FIELDS) {
      const v = draft[f].trim();
      if (v) next.set(f, v);
      else next.delete(f);
    }
    navigate(`/traces?${next}`);
  };
  const field = (name: (typeof FIELDS)[number], label: string, placeholder: string) => (
    <label className="field inline">
      <span>{label}</span>
      <input
        value={draft[name]}
        placeholder={placeholder}
        maxLength={200}
        size={12}
        onChange={(e) => setDraft({ ...draft, [name]: e.target.value })}
      />
    </label>
  );
  return (
    <div className="page">
      <h1>Traces</h1>
      <TracesTabs current="/traces" />
      {!can("telemetry:read") ? (
        <p className="muted">Your role cannot read traces.</p>
      ) : (
        <>
          <form className="row filters card" onSubmit={submit} aria-label="trace search">
            {field("service", "Service", "hello/web")}
            {field("app", "App", "hello")}
            {field("route", "Route", "GET /")}
            <label className="field inline">
              <span>Status</span>
              <select value={draft.status} onChange={(e) => setDraft({ ...draft, status: e.target.value })}>
                <option value="">any</option>
                <option value="ok">ok</option>
                <option value="error">error</option>
              </select>
            </label>
            {field("minDuration", "Slower than", "100ms")}
            {field("since", "Since", "1h")}
            <button type="submit" className="primary">
              Search
            </button>
          </form>
          <Section title={traces ? `Traces (${traces.length})` : "Traces"}>
            <ErrorBox error={found.error} />
            {!traces ? (
              found.error ? null : (
                <Loading what="traces" />
              )
            ) : traces.length === 0 ? (
              <p className="muted">No trace matches in this window.</p>
            ) : (
              <div className="scroll">
                <table data-testid="trace-results">
                  <thead>
                    <tr>
                      <th scope="col">Trace</th>
                      <th scope="col">Root</th>
                      <th scope="col">Duration</th>
                      <th scope="col">Spans</th>
                      <th scope="col">Errors</th>
                      <th scope="col">Services</th>
                      <th scope="col">Started</th>
                    </tr>
                  </thead>
                  <tbody>
                    {traces.map((t) => (
                      <tr key={t.traceId}>
                        <th scope="row">
                          <TraceLink id={t.traceId} />
                        </th>
                        <td>
                          {t.rootService} <span className="muted">{t.rootName}</span>
                        </td>
                        <td>{micros(t.duration)}</td>
                        <td>{t.spans}</td>
                        <td>{t.errors > 0 ? <span className="badge bad">{t.errors}</span> : 0}</td>
                        <td className="small">{t.services.join(", ")}</td>
                        <td>{ago(t.start / 1000)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </Section>
        </>
      )}
    </div>
  );
}
