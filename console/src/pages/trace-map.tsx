// The dependency map: services and the calls between them over a window, as
// an interactive graph (components/dep-graph.tsx, loaded on this page only),
// with rates, errors and cycles marked. Selecting a service or a call lists
// its figures and its latest traces; each opens its waterfall.
//
//   GET /traces/map?window=   GET /traces?service=&limit=10

import { lazy, Suspense, useState } from "react";
import type { DependencyMap, TraceSummary } from "../api-types.ts";
import type { Selection } from "../components/dep-graph.tsx";
import { TraceLink, TracesTabs } from "../components/traces-tabs.tsx";
import { ErrorBox, Loading, Section } from "../components/ui.tsx";
import { micros } from "../format.ts";
import { type NodeStats, nodeStats } from "../map-stats.ts";
import { navigate, useLocation } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

const DepGraph = lazy(() => import("../components/dep-graph.tsx"));
const WINDOWS = ["5m", "15m", "1h", "6h"];

function Figures({ s }: { s: NodeStats | DependencyMap["edges"][number] }) {
  return (
    <dl className="figures">
      {"seenByCallers" in s && s.seenByCallers ? (
        <>
          <dt>seen by</dt>
          <dd>its callers (it sends no spans of its own)</dd>
        </>
      ) : null}
      <dt>calls</dt>
      <dd>
        {s.calls} ({s.rate.toFixed(2)}/s)
      </dd>
      <dt>errors</dt>
      <dd className={s.errorRate >= 0.05 ? "bad" : undefined}>
        {s.errors} ({(s.errorRate * 100).toFixed(1)}%)
      </dd>
      <dt>p50 / p99</dt>
      <dd>
        {micros(s.p50)} / {micros(s.p99)}
      </dd>
      <dt>in a cycle</dt>
      <dd>{s.inCycle ? "yes" : "no"}</dd>
    </dl>
  );
}

function LatestTraces({ service }: { service: string }) {
  const { client } = useSession();
  const found = usePoll(
    (signal) =>
      client.get<{ items: TraceSummary[] }>("/traces", {
        query: { service, limit: 10, since: "1h" },
        signal,
      }),
    0,
    [client, service],
  );
  return (
    <>
      <h3>Latest traces through {service}</h3>
      <ErrorBox error={found.error} />
      {!found.data ? (
        <Loading what="traces" />
      ) : found.data.items.length === 0 ? (
        <p className="muted">None in the last hour.</p>
      ) : (
        <ul className="list" data-testid="map-traces">
          {found.data.items.map((t) => (
            <li key={t.traceId}>
              <TraceLink id={t.traceId} /> {t.rootService} <span className="muted">{t.rootName}</span> ·{" "}
              {micros(t.duration)}
              {t.errors > 0 ? <span className="badge bad">{t.errors} errors</span> : null}
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

export function TraceMapPage() {
  const { client, can } = useSession();
  const { search } = useLocation();
  const window = WINDOWS.includes(search.get("window") ?? "") ? (search.get("window") as string) : "15m";
  const map = usePoll(
    (signal) => client.get<DependencyMap>("/traces/map", { query: { window }, signal }),
    15_000,
    [client, window],
  );
  const [selected, setSelected] = useState<Selection>();
  const m = map.data;
  const node =
    selected && "service" in selected && m
      ? nodeStats(m).find((n) => n.service === selected.service)
      : undefined;
  const edge =
    selected && "from" in selected
      ? m?.edges.find((e) => e.from === selected.from && e.to === selected.to)
      : undefined;
  return (
    <div className="page">
      <h1>Traces</h1>
      <TracesTabs current="/traces/map" />
      {!can("telemetry:read") ? (
        <p className="muted">Your role cannot read traces.</p>
      ) : (
        <>
          <div className="row filters">
            <fieldset className="segmented" aria-label="time window">
              {WINDOWS.map((w) => (
                <button
                  key={w}
                  type="button"
                  className="plain"
                  aria-pressed={w === window}
                  onClick={() =>
                    navigate(
                      `/traces/map?${new URLSearchParams({ ...Object.fromEntries(search), window: w })}`,
                      { replace: true },
                    )
                  }
                >
                  {w}
                </button>
              ))}
            </fieldset>
            {m ? (
              <span className="muted small">
                {m.nodes.length} services · {m.edges.length} calls ·{" "}
                {m.cycles.length === 0
                  ? "no cycles"
                  : `cycles: ${m.cycles.map((c) => c.join(" → ")).join("; ")}`}
              </span>
            ) : null}
          </div>
          <ErrorBox error={map.error} />
          <div className="map-layout">
            <Section title="Dependency map">
              {!m ? (
                map.error ? null : (
                  <Loading what="the map" />
                )
              ) : m.nodes.length === 0 ? (
                <p className="muted">No spans in the last {window}.</p>
              ) : (
                <Suspense fallback={<Loading what="the graph" />}>
                  <DepGraph map={m} selected={selected} onSelect={setSelected} />
                  <p className="small muted legend">
                    Circle size: call rate · <span className="bad">red</span>: 5 % errors or more · dashed:
                    part of a cycle · select a service or a call for its traces
                  </p>
                </Suspense>
              )}
            </Section>
            <Section title={node ? node.service : edge ? `${edge.from} → ${edge.to}` : "Selection"}>
              {node ? (
                <>
                  <Figures s={node} />
                  <LatestTraces service={node.service} />
                </>
              ) : edge ? (
                <>
                  <Figures s={edge} />
                  <LatestTraces service={edge.to} />
                </>
              ) : (
                <p className="muted">Select a service or a call on the map.</p>
              )}
            </Section>
          </div>
        </>
      )}
    </div>
  );
}
