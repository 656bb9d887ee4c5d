// Top-N: the services and routes with the most calls, the slowest p99, or
// the most time spent, over a window.
//
//   GET /traces/top?window=&by=&limit=

import type { CallStats, TopN } from "../api-types.ts";
import { TracesTabs } from "../components/traces-tabs.tsx";
import { ErrorBox, Loading, Section } from "../components/ui.tsx";
import { micros } from "../format.ts";
import { Link, navigate, useLocation } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

const BY = { calls: "calls", latency: "p99 latency", time: "time spent" } as const;
type By = keyof typeof BY;
const WINDOWS = ["5m", "15m", "1h", "6h"];

function Rows(props: { rows: (CallStats & { service: string; route?: string })[]; routes: boolean }) {
  if (props.rows.length === 0) return <p className="muted">No calls in this window.</p>;
  return (
    <div className="scroll">
      <table>
        <thead>
          <tr>
            <th scope="col">{props.routes ? "Route" : "Service"}</th>
            <th scope="col">Calls</th>
            <th scope="col">Rate</th>
            <th scope="col">Errors</th>
            <th scope="col">p50</th>
            <th scope="col">p99</th>
            <th scope="col">Time spent</th>
          </tr>
        </thead>
        <tbody>
          {props.rows.map((r) => (
            <tr key={`${r.service}\0${r.route ?? ""}`}>
              <th scope="row">
                <Link
                  to={`/traces?${new URLSearchParams({ service: r.service, ...(r.route ? { route: r.route } : {}) })}`}
                >
                  {r.service}
                  {r.route ? <span className="muted"> {r.route}</span> : null}
                </Link>
              </th>
              <td>{r.calls}</td>
              <td>{r.rate.toFixed(2)}/s</td>
              <td className={r.errorRate >= 0.05 ? "bad" : undefined}>{(r.errorRate * 100).toFixed(1)}%</td>
              <td>{micros(r.p50)}</td>
              <td>{micros(r.p99)}</td>
              <td>{micros(r.totalTime)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function TraceTopPage() {
  const { client, can } = useSession();
  const { search } = useLocation();
  const by: By = (search.get("by") ?? "") in BY ? (search.get("by") as By) : "calls";
  const window = WINDOWS.includes(search.get("window") ?? "") ? (search.get("window") as string) : "15m";
  const top = usePoll(
    (signal) => client.get<TopN>("/traces/top", { query: { by, window, limit: 10 }, signal }),
    15_000,
    [client, by, window],
  );
  const set = (k: string, v: string) =>
    navigate(`/traces/top?${new URLSearchParams({ ...Object.fromEntries(search), [k]: v })}`, {
      replace: true,
    });
  return (
    <div className="page">
      <h1>Traces</h1>
      <TracesTabs current="/traces/top" />
      {!can("telemetry:read") ? (
        <p className="muted">Your role cannot read traces.</p>
      ) : (
        <>
          <div className="row filters">
            <fieldset className="segmented" aria-label="order by">
              {(Object.keys(BY) as By[]).map((b) => (
                <button
                  key={b}
                  type="button"
                  className="plain"
                  aria-pressed={b === by}
                  onClick={() => set("by", b)}
                >
                  {BY[b]}
                </button>
              ))}
            </fieldset>
            <fieldset className="segmented" aria-label="time window">
              {WINDOWS.map((w) => (
                <button
                  key={w}
                  type="button"
                  className="plain"
                  aria-pressed={w === window}
                  onClick={() => set("window", w)}
                >
                  {w}
                </button>
              ))}
            </fieldset>
          </div>
          <ErrorBox error={top.error} />
          {!top.data ? (
            top.error ? null : (
              <Loading what="Top-N" />
            )
          ) : (
            <div className="columns">
              <Section title={`Services by ${BY[by]}`}>
                <Rows rows={top.data.services} routes={false} />
              </Section>
              <Section title={`Routes by ${BY[by]}`}>
                <Rows rows={top.data.routes} routes />
              </Section>
            </div>
          )}
        </>
      )}
    </div>
  );
}
