/**
 * The control plane's metrics: storage, collection, pushed points and the
 * API server's own exporter, started and stopped together.
 *
 *   scraper ──┐
 *   POST write ─► IngestQueue ─► Tsdb (<data>/metrics/) ◄── PromQL engine ◄── alert rules
 *                                        ▲ (read-only, own threads)
 *                                 QueryPool workers ◄── query API
 *   maintenance timer ────────────┘   (flush, downsample, retention, size limit)
 */

import { join } from "node:path";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Logger } from "../common/log.ts";
import type { UrlGuard } from "../common/url-guard.ts";
import type { Service } from "../model/objects.ts";
import type { Informer } from "../store/informer.ts";
import type { Store } from "../store/store.ts";
import { FleetMetrics } from "./fleet-metrics.ts";
import { IngestQueue } from "./ingest.ts";
import { promqlPool } from "./promql/jobs.ts";
import type { QueryLimits, QueryPool } from "./query-pool.ts";
import { RemoteWriter } from "./remote-write.ts";
import { Scraper, type ScrapeTarget } from "./scrape.ts";
import { Tsdb, type TsdbOptions } from "./tsdb/tsdb.ts";

export interface MetricsOptions {
  /** The data dir; metrics live in `<dataDir>/metrics/`. */
  dataDir: string;
  store: Store;
  /** Where the fleet's series read nodes and instances (absent: whole-kind store lists per scrape). */
  informer?: Informer;
  logger: Logger;
  /** Retention, downsampling and size limit of the storage. */
  storage?: Omit<TsdbOptions, "dir">;
  /** How often targets are scraped (default 15 s). */
  scrapeIntervalMs?: number;
  /** Points that may wait to be written before pushes get 429 (default 500,000). */
  ingestQueuePoints?: number;
  /** How often retention, downsampling and the size limit run (default 60 s). */
  maintainEveryMs?: number;
  /** Timeout, concurrency and sample limits of the query API (query-pool.ts). */
  query?: QueryLimits;
  /** Checks registered scrape targets' URLs (default: no internal address allowed). */
  guard?: UrlGuard;
  /** Sends every stored sample on to a Prometheus remote write receiver (remote-write.ts); the guard checks its URL. */
  remoteWrite?: { url: string; headers?: Record<string, string> };
}

/** The store kind holding registered scrape targets. */
export const TARGET_KIND = "scrape_target";

/** The API server's own exporter: process metrics plus requests by route and status. */
export class ApiSelfMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<"method" | "route" | "status">;
  readonly duration: Histogram<"method" | "route">;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: "herd_api_requests_total",
      help: "API requests answered, by method, route pattern and status code.",
      labelNames: ["method", "route", "status"],
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: "herd_api_request_duration_seconds",
      help: "Time to answer API requests, by method and route pattern.",
      labelNames: ["method", "route"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [this.registry],
    });
  }
}

/**
 * Gauges read from the store when /metrics is scraped, so the built-in alert
 * rules (observe/alerts/defaults.ts) stay PromQL: crash loops, failing
 * health checks and failed services (node loss is `herd_node_up`, from
 * fleet-metrics.ts).
 */
export function stateGauges(registry: Registry, store: Store): void {
  const services = async () => (await store.list<Service>("service")).items.map((o) => o.value);
  const labels = (s: Service) => ({ tenant: s.tenant, app: s.app, service: s.name });
  /** Of a service's failures in a row, those that were failed health checks (the rest are crashes). */
  const unhealthy = (s: Service) => (s.crashes > 0 ? Math.min(s.crashes, s.unhealthy ?? 0) : 0);
  new Gauge({
    name: "herd_service_crashes",
    help: "Crashes (the process exited or could not start) among the service's failures in a row without reaching running.",
    labelNames: ["tenant", "app", "service"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of await services()) this.set(labels(s), s.crashes - unhealthy(s));
    },
  });
  new Gauge({
    name: "herd_service_unhealthy",
    help: "Failed health checks (never healthy within the startup time, or unhealthy after running) among the service's failures in a row without reaching running.",
    labelNames: ["tenant", "app", "service"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of await services()) this.set(labels(s), unhealthy(s));
    },
  });
  new Gauge({
    name: "herd_service_failed",
    help: "1 while herd has given up on the service (state failed: crash loop or failed rollout), else 0.",
    labelNames: ["tenant", "app", "service"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of await services()) this.set(labels(s), s.state === "failed" ? 1 : 0);
    },
  });
}

export class Metrics {
  readonly tsdb: Tsdb;
  readonly queue: IngestQueue;
  /** The query API's PromQL: worker threads with a timeout, a concurrency and a sample limit. */
  readonly queries: QueryPool;
  readonly scraper: Scraper;
  readonly self = new ApiSelfMetrics();
  /** Nodes' and instances' figures from the heartbeats, exported beside `self`. */
  readonly fleet: FleetMetrics;
  /** Components sharing this process whose metrics go on the API server's /metrics too (herd up's agent). */
  readonly alsoExport: (() => Promise<string>)[] = [];
  /** Targets found rather than registered (gateways and agents that report a metrics URL); set by the server. */
  discovered: () => ScrapeTarget[] | Promise<ScrapeTarget[]> = () => [];
  /** The remote write of the stored samples, with `--metrics-remote-write`. */
  readonly remoteWriter: RemoteWriter | undefined;
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #maintainEveryMs: number;
  #maintainTimer: NodeJS.Timeout | undefined;
  /** The API server's base URL once it listens: herd's own scrape target. */
  selfUrl: string | undefined;

  constructor(options: MetricsOptions) {
    this.#store = options.store;
    this.#logger = options.logger;
    this.fleet = new FleetMetrics(options.informer ?? options.store);
    const dir = join(options.dataDir, "metrics");
    this.tsdb = new Tsdb({ ...options.storage, dir });
    this.queries = promqlPool(dir, options.query);
    this.queue = new IngestQueue(this.tsdb, options.ingestQueuePoints);
    if (options.remoteWrite) {
      const writer = new RemoteWriter({
        url: options.remoteWrite.url,
        ...(options.remoteWrite.headers ? { headers: options.remoteWrite.headers } : {}),
        ...(options.guard ? { guard: options.guard } : {}),
      });
      this.remoteWriter = writer;
      this.tsdb.onAppend((series) => writer.add(series));
    }
    this.#maintainEveryMs = options.maintainEveryMs ?? 60_000;
    stateGauges(this.self.registry, options.store);
    this.scraper = new Scraper({
      tsdb: this.tsdb,
      targets: () => this.targets(),
      intervalMs: options.scrapeIntervalMs,
      guard: options.guard,
      onError: (target, err, kind) =>
        kind === "scrape"
          ? this.#logger.debug("scrape failed", { target, err: err.message })
          : this.#logger.warn("metrics collection failed", { target, err: err.message }),
    });
  }

  /** Registered targets (store), herd's own API server, and the discovered ones (gateways, agents). */
  async targets(): Promise<ScrapeTarget[]> {
    const registered = (await this.#store.list<ScrapeTarget>(TARGET_KIND)).items.map((o) => o.value);
    // honorLabels: the fleet series name their herd instance in `instance`, which must not become host:port.
    const own: ScrapeTarget[] = this.selfUrl
      ? [
          {
            name: "herd-api",
            url: `${this.selfUrl}/metrics`,
            labels: { component: "api" },
            honorLabels: true,
            createdAt: "",
            trusted: true,
          },
        ]
      : [];
    // What herd found itself may be on loopback or a private network; registered targets pass the guard.
    const found = (await this.discovered()).map((t) => ({ ...t, trusted: true }));
    return [...own, ...found, ...registered.map(({ trusted: _, ...t }) => t)];
  }

  start(): void {
    this.scraper.start();
    this.#maintainTimer = setInterval(() => {
      try {
        this.tsdb.maintain();
      } catch (err) {
        this.#logger.error("metrics maintenance failed", { err });
      }
    }, this.#maintainEveryMs);
    this.#maintainTimer.unref();
  }

  close(): void {
    this.scraper.stop();
    clearInterval(this.#maintainTimer);
    void this.remoteWriter?.close();
    void this.queries.close();
    this.tsdb.close();
  }
}
