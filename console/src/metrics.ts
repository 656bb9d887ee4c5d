// Request rate, error ratio and p99 per app over the last half hour, from the
// gateway's metrics (docs/gateway-metrics.md) through the PromQL API: three
// range queries for every app of the tenant at once.

import type { Client } from "./api.ts";

/** [unix seconds…], [values…] as uPlot takes them. */
export type Series = [number[], (number | null)[]];

export interface Red {
  rate: Series;
  errors: Series;
  p99: Series;
}

interface Matrix {
  data: { result: { metric: Record<string, string>; values: [number, string][] }[] };
}

const WINDOW_S = 30 * 60;
const STEP_S = 15;

/** The RED series of every app of the tenant that had traffic (by app name). */
export async function redByApp(
  client: Client,
  tenant: string,
  signal?: AbortSignal,
): Promise<Map<string, Red>> {
  const end = Math.floor(Date.now() / 1000);
  const start = end - WINDOW_S;
  const sel = (extra = "") => `{tenant="${tenant}"${extra}}`;
  const range = (query: string) =>
    client.get<Matrix>("/prom/api/v1/query_range", { query: { query, start, end, step: STEP_S }, signal });
  const [total, failed, p99] = await Promise.all([
    range(`sum by (app) (rate(herd_gateway_requests_total${sel()}[1m]))`),
    range(`sum by (app) (rate(herd_gateway_requests_total${sel(',code=~"5.."')}[1m]))`),
    range(
      `histogram_quantile(0.99, sum by (app, le) (rate(herd_gateway_request_duration_seconds_bucket${sel()}[1m])))`,
    ),
  ]);
  const byApp = (m: Matrix) => new Map(m.data.result.map((r) => [r.metric.app ?? "", r.values] as const));
  const failedBy = byApp(failed);
  const p99By = byApp(p99);
  const out = new Map<string, Red>();
  for (const [app, values] of byApp(total)) {
    const times = values.map(([t]) => t);
    const rates = values.map(([, v]) => num(v));
    const failedAt = new Map((failedBy.get(app) ?? []).map(([t, v]) => [t, num(v)]));
    const errors = times.map((t, i) => {
      const r = rates[i];
      if (r === null) return null;
      return r > 0 ? (failedAt.get(t) ?? 0) / r : 0;
    });
    const p99At = new Map((p99By.get(app) ?? []).map(([t, v]) => [t, num(v)]));
    out.set(app, {
      rate: [times, rates],
      errors: [times, errors],
      p99: [times, times.map((t) => p99At.get(t) ?? null)],
    });
  }
  return out;
}

const num = (v: string): number | null => {
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
};

/** The last value of a series that is a number. */
export function last(series: Series | undefined): number | undefined {
  if (!series) return undefined;
  for (let i = series[1].length - 1; i >= 0; i--) {
    const v = series[1][i];
    if (v !== null) return v;
  }
  return undefined;
}
