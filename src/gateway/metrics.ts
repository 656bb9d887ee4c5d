/**
 * The gateway's request metrics, in Prometheus text format (exposition 0.0.4).
 *
 * Recording is plain arithmetic on objects made when a table is built: each
 * route has a RouteStats (kept across table rebuilds while the route and its
 * service stay), holding one Series per service it sends to. Per response the
 * proxy calls `Series.record`: a short scan for the (code, outcome) counter,
 * one bucket search, two additions. Text is made only when scraped.
 *
 * A scrape collects Families (plain data, so they cross IPC as JSON) from
 * every process, merges them (counters and histogram buckets add up; gauges
 * add up or take the largest, as each family says) and renders them.
 */

import type { ServiceCounters } from "./load-recorder.ts";
import type { Backend, RouteTable } from "./route-table.ts";

/** Upper bounds of the latency histogram, ms (rendered in seconds: 0.001 … 10). */
export const BOUNDS_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];

/**
 * Who answered and why, as the `outcome` label. `upstream`: an instance's
 * answer, relayed whole. `client_closed`: the client left before any answer
 * (code 499, as nginx logs it); `incomplete`: the answer was cut after its
 * head (the client left or the instance broke off). Every other outcome is an
 * answer the gateway made itself; `fallback_*` is the route's fallback, given
 * for that reason.
 */
export const OUTCOMES = [
  "upstream",
  "client_closed",
  "incomplete",
  "no_route",
  "rate_limited",
  "too_large",
  "circuit_open",
  "shed",
  "unavailable",
  "bad_gateway",
  "timeout",
  "fallback_circuit_open",
  "fallback_shed",
  "fallback_unavailable",
  "fallback_bad_gateway",
  "fallback_timeout",
  "cors_preflight",
  "invalid",
  "status",
  "unauthorized",
  "aggregate",
  "fallback_degraded",
] as const;

/** Indexes into OUTCOMES (integers, so the hot path compares numbers). */
export const UPSTREAM = 0;
export const CLIENT_CLOSED = 1;
export const INCOMPLETE = 2;
export const NO_ROUTE = 3;
export const RATE_LIMITED = 4;
export const TOO_LARGE = 5;
export const CIRCUIT_OPEN = 6;
export const SHED = 7;
export const UNAVAILABLE = 8;
export const BAD_GATEWAY = 9;
export const TIMEOUT = 10;
export const FALLBACK_CIRCUIT_OPEN = 11;
export const FALLBACK_SHED = 12;
export const FALLBACK_UNAVAILABLE = 13;
export const FALLBACK_BAD_GATEWAY = 14;
export const FALLBACK_TIMEOUT = 15;
export const CORS_PREFLIGHT = 16;
export const INVALID = 17;
export const STATUS = 18;
export const UNAUTHORIZED = 19;
/** An aggregation route's merged answer (aggregate.ts); its parts are not counted one by one. */
export const AGGREGATE = 20;
/** The route's fallback, given because its service is switched to it (degraded, Service.traffic.fallback). */
export const FALLBACK_DEGRADED = 21;

/** A (code, outcome) pair as one number: code × 32 + outcome. */
export const OUTCOME_SLOTS = 32;

/**
 * The counters of one route × service (or of requests no route took): a
 * count per (status code, outcome) and a latency histogram.
 */
export class Series {
  /** Rendered label pairs, e.g. `route="a.test/",tenant="default",app="shop",service="web"`. */
  readonly labels: string;
  /** (code, outcome) keys seen, and their counts at the same index. A route sees a handful. */
  readonly keys: number[] = [];
  readonly counts: number[] = [];
  /** Per bound of BOUNDS_MS, then +Inf; not cumulative (rendering adds them up). */
  readonly buckets: number[] = new Array<number>(BOUNDS_MS.length + 1).fill(0);
  /** Sum of durations, ms. */
  sumMs = 0;
  count = 0;
  /** The route label and the `tenant/app/service` key ("" when none), for the spans of these requests. */
  readonly route: string;
  readonly service: string;
  /** The calling `app/service` of internal requests (internal-listener.ts), "" for public routes. */
  caller = "";
  /** The service's live load counters (load-recorder.ts); null for requests no route took. */
  readonly load: ServiceCounters | null;

  constructor(labels: string, route = "none", service = "", load: ServiceCounters | null = null) {
    this.labels = labels;
    this.route = route;
    this.service = service;
    this.load = load;
  }

  /** Counts one response: its status code, outcome (an OUTCOMES index) and how long it took. */
  record(code: number, outcome: number, ms: number): void {
    const key = code * OUTCOME_SLOTS + outcome;
    const keys = this.keys;
    let i = 0;
    while (i < keys.length && keys[i] !== key) i++;
    if (i === keys.length) {
      keys.push(key);
      this.counts.push(1);
    } else this.counts[i]++;
    let b = 0;
    while (b < BOUNDS_MS.length && ms > BOUNDS_MS[b]) b++;
    this.buckets[b]++;
    this.sumMs += ms;
    this.count++;
  }
}

/** The label pairs of a service's series: `tenant`, `app` and `service` from its key `tenant/app/service`. */
function serviceLabels(route: string, serviceKey: string): string {
  const [tenant = "", app = "", service = ""] = serviceKey.split("/");
  return labelText({ route, tenant, app, service });
}

/**
 * A route's series: one for its own service and, for a traffic split, one per
 * other service it sends to (made on first use). Kept across table rebuilds
 * while the route's identity and service stay, so counters only grow.
 */
export class RouteStats {
  /** The route as the `route` label shows it, e.g. `shop.test/api POST`. */
  readonly route: string;
  /** The series of the route's own service. */
  readonly home: Series;
  readonly #service: string;
  readonly #others = new Map<string, Series>();

  /** `caller`: the calling `app/service` of internal requests (a `caller` label, and named in spans). */
  constructor(route: string, serviceKey: string, load: ServiceCounters | null = null, caller = "") {
    this.route = route;
    this.#service = serviceKey;
    const labels = serviceLabels(route, serviceKey);
    this.home = new Series(
      caller === "" ? labels : `${labels},${labelText({ caller })}`,
      route,
      serviceKey,
      load,
    );
    this.home.caller = caller;
  }

  /** The series for requests this route sends to `backend` (another service only with a split). */
  of(backend: Backend): Series {
    if (backend.service === this.#service) return this.home;
    let series = this.#others.get(backend.service);
    if (series === undefined) {
      series = new Series(
        serviceLabels(this.route, backend.service),
        this.route,
        backend.service,
        backend.load,
      );
      this.#others.set(backend.service, series);
    }
    return series;
  }

  /** Every series of the route. */
  all(): Series[] {
    return [this.home, ...this.#others.values()];
  }
}

/**
 * The `route` label for a route: host and path, then what else tells it
 * apart (`exact`, methods, headers), e.g. `shop.test/api exact GET x-v=2`.
 */
export function routeLabel(r: {
  host: string;
  path: string;
  match?: string;
  methods?: string[];
  headers?: Record<string, string>;
}): string {
  const parts = [`${r.host.toLowerCase()}${r.path}`];
  if (r.match === "exact") parts.push("exact");
  if (r.methods && r.methods.length > 0) parts.push([...r.methods].sort().join(","));
  const headers = Object.entries(r.headers ?? {})
    .map(([k, v]) => `${k.toLowerCase()}=${v}`)
    .sort();
  if (headers.length > 0) parts.push(headers.join("&"));
  return parts.join(" ");
}

/** The series of requests no route took (404, malformed requests, the status page): `route="none"`. */
export function unroutedSeries(): Series {
  return new Series(labelText({ route: "none", tenant: "", app: "", service: "" }));
}

/** One sample: a value, or for a histogram the sum plus bucket counts (per bound, then +Inf; not cumulative). */
export interface Sample {
  /** Rendered label pairs (labelText), "" for none. */
  labels: string;
  value: number;
  buckets?: number[];
  count?: number;
}

/** A metric family: name, help, type, how samples from several processes combine, and samples. */
export interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  /** How two processes' samples with the same labels combine. */
  merge: "sum" | "max";
  samples: Sample[];
}

/** Label values escaped as the text format wants: backslash, double quote and newline. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

/** `a="1",b="2"` from an object of label names and values. */
export function labelText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([name, value]) => `${name}="${escapeLabelValue(value)}"`)
    .join(",");
}

function joinLabels(a: string, b: string): string {
  return a === "" ? b : b === "" ? a : `${a},${b}`;
}

/** Numbers as Prometheus reads them (it needs +Inf, -Inf, NaN spelled so). */
function formatValue(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Number.POSITIVE_INFINITY) return "+Inf";
  if (n === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(n);
}

function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

const LE = BOUNDS_MS.map((ms) => `le="${ms / 1000}"`);

/** Renders families as Prometheus text (0.0.4): HELP and TYPE, then samples; histograms cumulative. */
export function renderText(families: Iterable<Family>): string {
  const lines: string[] = [];
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      if (f.type !== "histogram") {
        lines.push(`${f.name}${s.labels === "" ? "" : `{${s.labels}}`} ${formatValue(s.value)}`);
        continue;
      }
      const buckets = s.buckets ?? [];
      let cumulative = 0;
      for (let b = 0; b < LE.length; b++) {
        cumulative += buckets[b] ?? 0;
        lines.push(`${f.name}_bucket{${joinLabels(s.labels, LE[b])}} ${cumulative}`);
      }
      const count = s.count ?? cumulative + (buckets[LE.length] ?? 0);
      lines.push(`${f.name}_bucket{${joinLabels(s.labels, 'le="+Inf"')}} ${count}`);
      const braces = s.labels === "" ? "" : `{${s.labels}}`;
      lines.push(`${f.name}_sum${braces} ${formatValue(s.value)}`, `${f.name}_count${braces} ${count}`);
    }
  }
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}

/** The content type of renderText's output. */
export const TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * Adds `families` into `into` (keyed by family name, then by labels):
 * counters and histograms add up; gauges add up or take the larger value as
 * their `merge` says. Samples are copied, never shared with the input.
 */
export function mergeFamilies(into: Map<string, Family>, families: Iterable<Family>): void {
  for (const f of families) {
    let target = into.get(f.name);
    if (target === undefined) {
      target = { name: f.name, help: f.help, type: f.type, merge: f.merge, samples: [] };
      into.set(f.name, target);
    }
    const byLabels = new Map(target.samples.map((s) => [s.labels, s]));
    for (const s of f.samples) {
      const have = byLabels.get(s.labels);
      if (have === undefined) {
        const copy: Sample = { labels: s.labels, value: s.value };
        if (s.buckets !== undefined) copy.buckets = [...s.buckets];
        if (s.count !== undefined) copy.count = s.count;
        target.samples.push(copy);
        byLabels.set(s.labels, copy);
        continue;
      }
      if (f.merge === "max") {
        have.value = Math.max(have.value, s.value);
        continue;
      }
      have.value += s.value;
      if (s.count !== undefined) have.count = (have.count ?? 0) + s.count;
      if (s.buckets !== undefined) {
        const buckets = have.buckets ?? [];
        for (let b = 0; b < s.buckets.length; b++) buckets[b] = (buckets[b] ?? 0) + s.buckets[b];
        have.buckets = buckets;
      }
    }
  }
}

/** Only the families that count since a process started (counters, histograms): what outlives a dead process. */
export function cumulativeOnly(families: Iterable<Family>): Family[] {
  return [...families].filter((f) => f.type !== "gauge");
}

/** What a proxy process knows about its own traffic (a GatewayProxy, without importing it). */
export interface ProxyState {
  table: RouteTable;
  inflight: number;
  unrouted: Series;
  /** Service discovery's internal listener in this process, when it runs one (internal-listener.ts). */
  internal: { series(): Series[] } | null;
  /** Client connections open now (internal listener included). */
  openConnections(): Promise<number>;
}

/**
 * One process's request counters and live gauges. Series of routes no longer
 * in the table are gone (their counters restart if the route comes back,
 * which Prometheus reads as a reset).
 */
export async function processFamilies(proxy: ProxyState): Promise<Family[]> {
  const series: Series[] = [proxy.unrouted];
  for (const entry of proxy.table.entries()) series.push(...entry.stats.all());
  if (proxy.internal !== null) series.push(...proxy.internal.series());
  const requests: Sample[] = [];
  const durations: Sample[] = [];
  for (const s of series) {
    if (s.count === 0) continue;
    for (let i = 0; i < s.keys.length; i++) {
      const code = Math.floor(s.keys[i] / OUTCOME_SLOTS);
      const outcome = OUTCOMES[s.keys[i] % OUTCOME_SLOTS];
      requests.push({ labels: `${s.labels},code="${code}",outcome="${outcome}"`, value: s.counts[i] });
    }
    durations.push({ labels: s.labels, value: s.sumMs / 1000, buckets: [...s.buckets], count: s.count });
  }
  const now = Date.now();
  const breakers: Sample[] = [];
  const ejected: Sample[] = [];
  for (const backend of proxy.table.backends.values()) {
    const { breaker, outlier } = backend.policies;
    const labels = serviceOnlyLabels(backend.service);
    if (breaker !== null) {
      const state = breaker.state(now);
      for (const s of ["closed", "open", "half_open"]) {
        breakers.push({ labels: `${labels},state="${s}"`, value: s === state ? 1 : 0 });
      }
    }
    if (outlier !== null) ejected.push({ labels, value: outlier.ejectedCount(now) });
  }
  return [
    {
      name: "herd_gateway_requests_total",
      help: "Responses by route, service, status code and outcome (upstream: the instance's answer; others: the gateway's own).",
      type: "counter",
      merge: "sum",
      samples: requests,
    },
    {
      name: "herd_gateway_request_duration_seconds",
      help: "Time from a request's arrival to the end of its response, by route and service.",
      type: "histogram",
      merge: "sum",
      samples: durations,
    },
    {
      name: "herd_gateway_inflight_requests",
      help: "Requests being proxied now.",
      type: "gauge",
      merge: "sum",
      samples: [{ labels: "", value: proxy.inflight }],
    },
    {
      name: "herd_gateway_open_connections",
      help: "Client connections open now.",
      type: "gauge",
      merge: "sum",
      samples: [{ labels: "", value: await proxy.openConnections() }],
    },
    {
      name: "herd_gateway_breaker_state",
      help: "Gateway processes whose circuit breaker for the service is in this state.",
      type: "gauge",
      merge: "sum",
      samples: breakers,
    },
    {
      name: "herd_gateway_ejected_endpoints",
      help: "Instances of the service out of rotation by outlier ejection (the most any gateway process has ejected).",
      type: "gauge",
      merge: "max",
      samples: ejected,
    },
  ];
}

function serviceOnlyLabels(serviceKey: string): string {
  const [tenant = "", app = "", service = ""] = serviceKey.split("/");
  return labelText({ tenant, app, service });
}

/** What the table says, the same in every process: its version, its routes, each service's running instances. */
export function tableFamilies(table: RouteTable, workers: number): Family[] {
  const endpoints: Sample[] = [];
  for (const backend of table.backends.values()) {
    endpoints.push({ labels: serviceOnlyLabels(backend.service), value: backend.endpoints.length });
  }
  return [
    {
      name: "herd_gateway_table_version",
      help: "The control-plane revision the routing table was built from.",
      type: "gauge",
      merge: "max",
      samples: [{ labels: "", value: table.version }],
    },
    {
      name: "herd_gateway_routes",
      help: "Routes in the routing table.",
      type: "gauge",
      merge: "max",
      samples: [{ labels: "", value: table.routeCount }],
    },
    {
      name: "herd_gateway_endpoints",
      help: "Running instances of the service the gateway can send to.",
      type: "gauge",
      merge: "max",
      samples: endpoints,
    },
    {
      name: "herd_gateway_workers",
      help: "Gateway processes serving requests.",
      type: "gauge",
      merge: "max",
      samples: [{ labels: "", value: workers }],
    },
  ];
}
