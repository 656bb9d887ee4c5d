// Metrics: the tenant's request rate, errors and latency percentiles (the
// gateway's figures), CPU and memory per instance, and any PromQL query as a
// chart, over a window picked at the top. The query, app and window are in the
// address (?q=&app=&window=), so a chart is a link.
//
//   PromQL query_range (GET /prom/api/v1/query_range), every 15 s

import { type FormEvent, useState } from "react";
import type { App } from "../../../src/model/objects.ts";
import { Chart, type Unit } from "../components/chart.tsx";
import { ErrorBox, Section } from "../components/ui.tsx";
import { promRange, WINDOWS } from "../prom.ts";
import { navigate, useLocation } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

/** A label selector of the tenant (and app, when one is chosen). */
export function selector(tenant: string, app: string, extra = ""): string {
  const parts = [`tenant="${tenant}"`];
  if (app) parts.push(`app="${app.replace(/["\\]/g, "")}"`);
  if (extra) parts.push(extra);
  return `{${parts.join(",")}}`;
}

/** The standard charts: title, unit, PromQL. */
export function standardCharts(tenant: string, app: string): { title: string; unit: Unit; query: string }[] {
  const by = app ? "service" : "app";
  const sel = (extra = "") => selector(tenant, app, extra);
  const hist = `rate(herd_gateway_request_duration_seconds_bucket${sel()}[1m])`;
  return [
    {
      title: "Requests",
      unit: "rps",
      query: `sum by (${by}) (rate(herd_gateway_requests_total${sel()}[1m]))`,
    },
    {
      title: "Errors (5xx)",
      unit: "rps",
      query: `sum by (${by}) (rate(herd_gateway_requests_total${sel('code=~"5.."')}[1m]))`,
    },
    {
      title: "Latency p50 · p90 · p99",
      unit: "s",
      query: [0.5, 0.9, 0.99]
        .map(
          (q) => `label_replace(histogram_quantile(${q}, sum by (le) (${hist})), "p", "${q * 100}", "", "")`,
        )
        .join(" or "),
    },
    {
      title: "CPU per instance",
      unit: "cores",
      query: `sum by (instance) (rate(herd_instance_cpu_seconds_total${sel()}[1m]))`,
    },
    {
      title: "Memory per instance",
      unit: "bytes",
      query: `sum by (instance) (herd_instance_memory_bytes${sel()})`,
    },
  ];
}

function PromChart(props: { title: string; query: string; unit: Unit; windowS: number }) {
  const { client } = useSession();
  const data = usePoll((signal) => promRange(client, props.query, props.windowS, signal), 15_000, [
    client,
    props.query,
    props.windowS,
  ]);
  return (
    <Section title={props.title}>
      <ErrorBox error={data.error} />
      <Chart data={data.data} unit={props.unit} label={props.title} />
      <details className="small">
        <summary>PromQL</summary>
        <code>{props.query}</code>
      </details>
    </Section>
  );
}

export function MetricsPage() {
  const { client, tenant, can } = useSession();
  const { search } = useLocation();
  const windowLabel = WINDOWS[search.get("window") ?? ""] ? (search.get("window") as string) : "15m";
  const windowS = WINDOWS[windowLabel];
  const app = search.get("app") ?? "";
  const query = search.get("q") ?? "";
  const [draft, setDraft] = useState(query);
  const apps = usePoll((signal) => client.get<{ items: App[] }>("/apps", { signal }), 0, [client]);
  const set = (key: string, value: string) => {
    const next = new URLSearchParams(search);
    if (value) next.set(key, value);
    else next.delete(key);
    navigate(`/charts?${next}`, { replace: true });
  };
  const run = (e: FormEvent) => {
    e.preventDefault();
    set("q", draft.trim());
  };
  if (!can("telemetry:read"))
    return (
      <div className="page">
        <h1>Metrics</h1>
        <p className="muted">Your role cannot read metrics.</p>
      </div>
    );
  return (
    <div className="page">
      <h1>Metrics</h1>
      <form className="row filters card" onSubmit={run}>
        <label className="field inline">
          <span>App</span>
          <select value={app} onChange={(e) => set("app", e.target.value)} data-testid="metrics-app">
            <option value="">all apps</option>
            {(apps.data?.items ?? []).map((a) => (
              <option key={a.name}>{a.name}</option>
            ))}
          </select>
        </label>
        <fieldset className="segmented" aria-label="time window">
          {Object.keys(WINDOWS).map((w) => (
            <button
              key={w}
              type="button"
              className="plain"
              aria-pressed={w === windowLabel}
              onClick={() => set("window", w)}
            >
              {w}
            </button>
          ))}
        </fieldset>
        <label className="field inline grow">
          <span>PromQL</span>
          <input
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            placeholder={`e.g. sum by (app) (rate(herd_gateway_requests_total{tenant="${tenant}"}[1m]))`}
            maxLength={2000}
            data-testid="promql"
          />
        </label>
        <button type="submit" className="primary">
          Run
        </button>
      </form>
      {query ? <PromChart title={query} query={query} unit="" windowS={windowS} /> : null}
      <div className="grid2">
        {standardCharts(tenant, app).map((c) => (
          <PromChart key={c.title} title={c.title} query={c.query} unit={c.unit} windowS={windowS} />
        ))}
      </div>
    </div>
  );
}
