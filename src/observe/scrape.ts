/**
 * Collection: the control plane scrapes Prometheus text endpoints on an
 * interval and writes what it finds into the Tsdb.
 *
 *   targets (herd's own + `scrape_target` objects in the store) ─► every interval: GET url ─► parseText ─► Tsdb.append
 *
 * Registered targets are fetched through the URL guard (common/url-guard.ts:
 * no internal address unless allowed, no redirects, a byte cap); the ones
 * herd found itself (`trusted`: its API, gateways and agents that report a
 * metrics URL) may be on loopback or a private network, and only skip the
 * address check.
 *
 * Every scrape also writes `up` (1 or 0), `scrape_duration_seconds` and
 * `scrape_samples_scraped` for the target, as Prometheus does, so a target
 * that stops answering shows as `up == 0`.
 */

import { UrlGuard } from "../common/url-guard.ts";
import type { Labels } from "./tsdb/labels.ts";
import { parseText } from "./tsdb/text-format.ts";
import type { Tsdb, WriteSeries } from "./tsdb/tsdb.ts";

/** A registered scrape target (store kind `scrape_target`, key = name). */
export interface ScrapeTarget {
  name: string;
  /** Full URL of the text endpoint, e.g. http://10.0.0.5:9100/metrics. */
  url: string;
  /** Added to every series scraped (job defaults to the target's name). */
  labels: Record<string, string>;
  /** Scrape interval in seconds (default: the collector's, 15). */
  intervalSeconds?: number;
  /**
   * As Prometheus's honor_labels: a scraped label wins over the target's
   * (`job`, `instance`, …). Otherwise the target's win and a scraped one
   * that differs is kept as `exported_<name>`.
   */
  honorLabels?: boolean;
  createdAt: string;
  /**
   * Set only by herd, in memory, on targets it found itself (its API server,
   * gateways' and agents' reported metrics URLs): their address is not checked
   * against the URL guard's ranges. Never stored; registered targets never have it.
   */
  trusted?: boolean;
}

/** How the last scrape of a target went. */
export interface TargetHealth {
  name: string;
  url: string;
  labels: Labels;
  health: "up" | "down" | "unknown";
  lastScrape: string | null;
  lastError: string | null;
  lastDurationMs: number | null;
  samples: number;
}

export interface ScraperOptions {
  tsdb: Tsdb;
  /** The current target list (read before every round; cheap). */
  targets: () => Promise<ScrapeTarget[]>;
  /** Default interval (15 s). */
  intervalMs?: number;
  /** Per-scrape timeout (10 s, at most the interval). */
  timeoutMs?: number;
  /** Largest body accepted from a target (16 MiB). */
  maxBytes?: number;
  /** Checks registered targets' URLs (default: a guard that allows no internal address). */
  guard?: UrlGuard;
  /** A target that failed (routine: "scrape") or the storage that failed ("store"). */
  onError?: (target: string, err: Error, kind: "scrape" | "store") => void;
}

/** `job` and `instance` (host:port) labels for a target, the way Prometheus names them. */
export function targetLabels(t: ScrapeTarget): Labels {
  const u = new URL(t.url);
  const port = u.port || (u.protocol === "https:" ? "443" : "80");
  return { job: t.name, instance: `${u.hostname}:${port}`, ...t.labels };
}

/** The target's labels over the scraped ones; a scraped label that differs stays as `exported_<name>`. */
function withTargetLabels(scraped: Labels, base: Labels): Labels {
  const out: Labels = { ...scraped };
  for (const [name, value] of Object.entries(base)) {
    const had = out[name];
    if (had !== undefined && had !== value) out[`exported_${name}`] = had;
    out[name] = value;
  }
  return out;
}

/** For herd's own targets: any address, still no redirects and the byte cap. */
const OWN_TARGETS = new UrlGuard({ allow: ["0.0.0.0/0", "::/0"] });

/** What a target says of a metric family (Prometheus' words: untyped is "unknown"). */
export interface MetricMetadata {
  type: string;
  help: string;
  unit: string;
}

function familyMetadata(types: Map<string, string>, help: Map<string, string>): Map<string, MetricMetadata> {
  const out = new Map<string, MetricMetadata>();
  for (const name of new Set([...types.keys(), ...help.keys()])) {
    const type = types.get(name) ?? "unknown";
    out.set(name, { type: type === "untyped" ? "unknown" : type, help: help.get(name) ?? "", unit: "" });
  }
  return out;
}

export class Scraper {
  readonly #o: Required<Omit<ScraperOptions, "onError">> & Pick<ScraperOptions, "onError">;
  readonly #health = new Map<string, TargetHealth>();
  /** Each target's metric families from its last good scrape (# TYPE / # HELP), for /api/v1/metadata. */
  readonly #metadata = new Map<string, Map<string, MetricMetadata>>();
  readonly #due = new Map<string, number>();
  readonly #running = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: ScraperOptions) {
    const intervalMs = options.intervalMs ?? 15_000;
    this.#o = {
      ...options,
      intervalMs,
      timeoutMs: Math.min(options.timeoutMs ?? 10_000, intervalMs),
      maxBytes: options.maxBytes ?? 16 * 1024 * 1024,
      guard: options.guard ?? new UrlGuard(),
    };
  }

  /** Checks for due targets every second (or every interval, when shorter). */
  start(): void {
    const tick = Math.min(1000, this.#o.intervalMs);
    this.#timer = setInterval(() => void this.#round(), tick);
    this.#timer.unref();
    void this.#round();
  }

  /** Stops scraping; a scrape still in flight stores nothing. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
  }

  async #round(): Promise<void> {
    let targets: ScrapeTarget[];
    try {
      targets = await this.#o.targets();
    } catch (err) {
      if (!this.#stopped) this.#o.onError?.("(target list)", err as Error, "store");
      return;
    }
    if (this.#stopped) return;
    const now = Date.now();
    const names = new Set(targets.map((t) => t.name));
    for (const name of this.#health.keys()) if (!names.has(name)) this.#health.delete(name);
    for (const name of this.#metadata.keys()) if (!names.has(name)) this.#metadata.delete(name);
    for (const t of targets) {
      if (this.#running.has(t.name) || (this.#due.get(t.name) ?? 0) > now) continue;
      this.#due.set(t.name, now + (t.intervalSeconds ? t.intervalSeconds * 1000 : this.#o.intervalMs));
      this.#running.add(t.name);
      void this.scrape(t).finally(() => this.#running.delete(t.name));
    }
  }

  /** Scrapes one target now and stores what it returned (or up=0). */
  async scrape(t: ScrapeTarget): Promise<TargetHealth> {
    const base = targetLabels(t);
    const started = Date.now();
    let series: WriteSeries[] = [];
    let error: string | null = null;
    try {
      const res = await (t.trusted ? OWN_TARGETS : this.#o.guard).fetch(t.url, {
        headers: { accept: "text/plain;version=0.0.4;q=1,*/*;q=0.1" },
        timeoutMs: this.#o.timeoutMs,
        maxBytes: this.#o.maxBytes,
      });
      if (res.status !== 200) throw new Error(`answered HTTP ${res.status}`);
      const text = res.body.toString("utf8");
      const parsed = parseText(text);
      this.#metadata.set(t.name, familyMetadata(parsed.types, parsed.help));
      series = parsed.samples.map((s) => ({
        labels: t.honorLabels ? { ...base, ...s.labels } : withTargetLabels(s.labels, base),
        samples: [[s.timestamp ?? started, s.value]],
      }));
    } catch (err) {
      error =
        (err as Error).name === "TimeoutError"
          ? `timed out after ${this.#o.timeoutMs} ms`
          : (err as Error).message;
      series = [];
      this.#o.onError?.(t.name, new Error(`scraping ${t.url}: ${error}`), "scrape");
    }
    const duration = Date.now() - started;
    const meta = (name: string, value: number): WriteSeries => ({
      labels: { __name__: name, ...base },
      samples: [[started, value]],
    });
    // Prometheus' synthetic series, all of them (no relabeling here: post-relabeling = scraped).
    const scraped = error ? 0 : series.length;
    let added = 0;
    for (const w of series) if (!this.#o.tsdb.hasSeries(w.labels)) added++;
    series.push(
      meta("up", error ? 0 : 1),
      meta("scrape_duration_seconds", duration / 1000),
      meta("scrape_samples_scraped", scraped),
      meta("scrape_samples_post_metric_relabeling", scraped),
      meta("scrape_series_added", added),
    );
    if (this.#stopped) return this.#unknown(t);
    try {
      this.#o.tsdb.append(series);
    } catch (err) {
      // A storage failure must not end the scrape loop (or the process): report it, keep scraping.
      error = `storing the samples failed: ${(err as Error).message}`;
      this.#o.onError?.(t.name, new Error(error), "store");
    }
    const health: TargetHealth = {
      name: t.name,
      url: t.url,
      labels: base,
      health: error ? "down" : "up",
      lastScrape: new Date(started).toISOString(),
      lastError: error,
      lastDurationMs: duration,
      samples: scraped,
    };
    this.#health.set(t.name, health);
    return health;
  }

  /** Metric families as the targets describe them: the distinct entries per family name, as Prometheus' /api/v1/metadata. */
  metadata(): Map<string, MetricMetadata[]> {
    const out = new Map<string, MetricMetadata[]>();
    for (const families of this.#metadata.values()) {
      for (const [name, m] of families) {
        const list = out.get(name) ?? [];
        if (!list.some((x) => x.type === m.type && x.help === m.help && x.unit === m.unit)) list.push(m);
        out.set(name, list);
      }
    }
    return out;
  }

  /** Targets with the outcome of their last scrape. */
  health(targets: ScrapeTarget[]): TargetHealth[] {
    return targets.map((t) => this.#health.get(t.name) ?? this.#unknown(t));
  }

  #unknown(t: ScrapeTarget): TargetHealth {
    return {
      name: t.name,
      url: t.url,
      labels: targetLabels(t),
      health: "unknown",
      lastScrape: null,
      lastError: null,
      lastDurationMs: null,
      samples: 0,
    };
  }
}
