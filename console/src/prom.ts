// PromQL range queries as chart data: one series per result, labelled by the
// labels that tell them apart, on one time axis.

/** What a query needs of the API client (api.ts Client has it). */
export interface Getter {
  get<T>(
    path: string,
    options: { query: Record<string, string | number | boolean | undefined>; signal?: AbortSignal },
  ): Promise<T>;
}

/** A chart's data: one time axis (unix seconds), series with a value or null at each time. */
export interface ChartData {
  times: number[];
  series: { label: string; values: (number | null)[] }[];
}

interface Matrix {
  data: { resultType: string; result: { metric: Record<string, string>; values: [number, string][] }[] };
}

/** Time windows of the picker: label → seconds. */
export const WINDOWS: Record<string, number> = {
  "5m": 300,
  "15m": 900,
  "1h": 3600,
  "6h": 6 * 3600,
  "24h": 86_400,
};

/** A step that gives about 120 points over the window (at least 2 s). */
export const stepFor = (windowS: number) => Math.max(2, Math.round(windowS / 120));

/** The label text of one series: the labels that differ between the results, or all of them. */
function seriesLabel(metric: Record<string, string>, varying: string[]): string {
  const keys = varying.length > 0 ? varying : Object.keys(metric).filter((k) => k !== "__name__");
  const text = keys.map((k) => `${k}=${metric[k] ?? ""}`).join(", ");
  return text || metric.__name__ || "value";
}

export async function promRange(
  client: Getter,
  query: string,
  windowS: number,
  signal?: AbortSignal,
  now = Math.floor(Date.now() / 1000),
): Promise<ChartData> {
  const step = stepFor(windowS);
  // Aligned to the step, so the answer's points fall on the chart's grid.
  const end = now - (now % step);
  const start = end - Math.ceil(windowS / step) * step;
  const m = await client.get<Matrix>("/prom/api/v1/query_range", {
    query: { query, start, end, step },
    signal,
  });
  const result = m.data.result.slice(0, 40);
  const keys = new Set(result.flatMap((r) => Object.keys(r.metric)));
  const varying = [...keys].filter(
    (k) => k !== "__name__" && new Set(result.map((r) => r.metric[k])).size > 1,
  );
  const times: number[] = [];
  for (let t = start; t <= end; t += step) times.push(t);
  const index = new Map(times.map((t, i) => [t, i]));
  const series = result.map((r) => {
    const values: (number | null)[] = times.map(() => null);
    for (const [t, v] of r.values) {
      const i = index.get(Math.round(t));
      const n = Number(v);
      if (i !== undefined) values[i] = Number.isFinite(n) ? n : null;
    }
    return { label: seriesLabel(r.metric, varying), values };
  });
  return { times, series };
}
