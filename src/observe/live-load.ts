/**
 * The control plane's live load figures (model/load.ts `LoadFigures`): the
 * last ten minutes of every gateway process's one-second reports, in memory,
 * summed over reporters when read.
 *
 *   PUT /gateways/:id/load ─► LiveLoad.record(id, report)
 *        per reporter, per service: entries {at (received), intervalMs, ServiceLoad}, oldest dropped past 10 min
 *   autoscaler, remediation, GET /apps/:app/load ─► service(key, window) / instances(key, window)
 *
 * Times are the control plane's: a report counts when it arrived (a
 * gateway's clock may be off); its `lastRequestAt` is moved by the same
 * offset. A reporter's window ends at its latest report while it reports
 * (so a window holds whole intervals, not a second that is still in the
 * gateway), else now. Seconds a reporter said nothing about a service count
 * as zero: gateways send only what had traffic.
 */

import type { Clock } from "../common/clock.ts";
import {
  type InstanceFigures,
  LATENCY_BUCKETS_MS,
  type LoadFigures,
  type LoadReport,
  type ServiceFigures,
  type ServiceLoad,
} from "../model/load.ts";

/** How long reports are kept. */
export const RETAIN_MS = 10 * 60_000;
/** How long a service's latest request time is remembered after its last report (scale to zero reads it). */
const REMEMBER_LAST_REQUEST_MS = 24 * 3_600_000;
/** A reporter silent this long says nothing about now (its gauges are 0, its window ends now). */
const STALE_MS = 2_500;

interface Entry {
  /** When the report arrived (control-plane clock, ms). */
  at: number;
  intervalMs: number;
  load: ServiceLoad;
}

interface Reporter {
  /** When its latest report arrived. */
  lastAt: number;
  /** Its entries per service, oldest first. */
  services: Map<string, Entry[]>;
}

/** Sums `from` into `into` (histograms of the same length). */
function addHistogram(into: number[], from: readonly number[]): void {
  for (let b = 0; b < into.length; b++) into[b] += from[b] ?? 0;
}

/**
 * The latency at quantile `q` (0..1) of a histogram over LATENCY_BUCKETS_MS,
 * interpolated linearly within its bucket (as Prometheus' histogram_quantile);
 * the slowest bucket has no upper bound, so a quantile there is its lower
 * bound. Undefined for an empty histogram.
 */
export function quantileMs(q: number, histogram: readonly number[]): number | undefined {
  let total = 0;
  for (const n of histogram) total += n;
  if (total <= 0) return undefined;
  const rank = q * total;
  let below = 0;
  for (let b = 0; b < histogram.length; b++) {
    const n = histogram[b];
    if (n > 0 && below + n >= rank) {
      if (b >= LATENCY_BUCKETS_MS.length) return LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.length - 1];
      const lower = b === 0 ? 0 : LATENCY_BUCKETS_MS[b - 1];
      const upper = LATENCY_BUCKETS_MS[b];
      return lower + ((upper - lower) * Math.max(0, rank - below)) / n;
    }
    below += n;
  }
  return LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.length - 1];
}

/** One instance's sums over a window. */
interface InstanceSums {
  release: number;
  releaseAt: number;
  requests: number;
  errors: number;
  inflightMs: number;
  latency: number[];
}

/** What one reporter's entries of a service add up to over a window. */
interface Sums {
  requests: number;
  errors: number;
  shed: number;
  /** Σ inflight × intervalMs. */
  inflightMs: number;
  waiting: number;
  latency: number[];
  instances: Map<string, InstanceSums>;
  any: boolean;
}

/** The live figures of every service, from the gateways' reports. */
export class LiveLoad implements LoadFigures {
  readonly #clock: Clock;
  readonly #reporters = new Map<string, Reporter>();
  /** Latest request arrival per service (control-plane clock). */
  readonly #lastRequest = new Map<string, number>();
  /** Since when reports cover time: the first report's interval start; undefined before any. */
  #since: number | undefined;
  #prunedAt = Number.NEGATIVE_INFINITY;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Takes one reporter's interval (a validated LoadReport). */
  record(reporterId: string, report: LoadReport): void {
    const now = this.#clock.now();
    this.#since ??= now - report.intervalMs;
    let reporter = this.#reporters.get(reporterId);
    if (reporter === undefined) {
      reporter = { lastAt: now, services: new Map() };
      this.#reporters.set(reporterId, reporter);
    }
    reporter.lastAt = now;
    // The gateway's clock → ours, for its request times.
    const offset = now - report.at;
    for (const load of report.services) {
      let entries = reporter.services.get(load.service);
      if (entries === undefined) {
        entries = [];
        reporter.services.set(load.service, entries);
      }
      entries.push({ at: now, intervalMs: report.intervalMs, load });
      if (load.lastRequestAt !== undefined) {
        const at = Math.min(now, load.lastRequestAt + offset);
        if (at > (this.#lastRequest.get(load.service) ?? Number.NEGATIVE_INFINITY))
          this.#lastRequest.set(load.service, at);
      }
    }
    if (now - this.#prunedAt >= 1000) this.#prune(now);
  }

  /** Drops entries older than RETAIN_MS, reporters with none left, and old request times. */
  #prune(now: number): void {
    this.#prunedAt = now;
    for (const [id, reporter] of this.#reporters) {
      for (const [key, entries] of reporter.services) {
        let drop = 0;
        while (drop < entries.length && now - entries[drop].at > RETAIN_MS) drop++;
        if (drop === entries.length) reporter.services.delete(key);
        else if (drop > 0) entries.splice(0, drop);
      }
      if (reporter.services.size === 0 && now - reporter.lastAt > RETAIN_MS) this.#reporters.delete(id);
    }
    for (const [key, at] of this.#lastRequest) {
      if (now - at > REMEMBER_LAST_REQUEST_MS) this.#lastRequest.delete(key);
    }
  }

  /** Entries held (one per reporter, service and report): what the memory grows with. */
  get entries(): number {
    let n = 0;
    for (const reporter of this.#reporters.values())
      for (const e of reporter.services.values()) n += e.length;
    return n;
  }

  /** Reporters heard from in the last RETAIN_MS. */
  get reporters(): number {
    return this.#reporters.size;
  }

  /** How much of a window ending now the reports cover. */
  #covered(now: number, windowMs: number): number {
    if (this.#since === undefined) return 0;
    return Math.max(0, Math.min(windowMs, now - this.#since));
  }

  /** Each reporter's entries of a service over the window, summed over reporters. */
  #sum(serviceKey: string, windowMs: number, now: number): Sums {
    const sums: Sums = {
      requests: 0,
      errors: 0,
      shed: 0,
      inflightMs: 0,
      waiting: 0,
      latency: new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0),
      instances: new Map(),
      any: false,
    };
    for (const reporter of this.#reporters.values()) {
      const entries = reporter.services.get(serviceKey);
      if (entries === undefined) continue;
      sums.any = true;
      const live = now - reporter.lastAt <= STALE_MS;
      const end = live ? reporter.lastAt : now;
      const last = entries[entries.length - 1];
      // Gauges "now": only from the reporter's latest report, and only while it reports.
      if (live && last.at === reporter.lastAt) sums.waiting += last.load.waiting;
      // An interval is in the window when its middle is.
      for (let i = entries.length - 1; i >= 0; i--) {
        const e = entries[i];
        if (e.at - e.intervalMs / 2 <= end - windowMs) break;
        const load = e.load;
        sums.requests += load.requests;
        sums.errors += load.errors;
        sums.shed += load.shed;
        sums.inflightMs += load.inflight * e.intervalMs;
        addHistogram(sums.latency, load.latency);
        for (const inst of load.instances) {
          let s = sums.instances.get(inst.instance);
          if (s === undefined) {
            s = {
              release: inst.release,
              releaseAt: e.at,
              requests: 0,
              errors: 0,
              inflightMs: 0,
              latency: new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0),
            };
            sums.instances.set(inst.instance, s);
          } else if (e.at > s.releaseAt) {
            s.release = inst.release;
            s.releaseAt = e.at;
          }
          s.requests += inst.requests;
          s.errors += inst.errors;
          s.inflightMs += inst.inflight * e.intervalMs;
          addHistogram(s.latency, inst.latency);
        }
      }
    }
    return sums;
  }

  service(serviceKey: string, windowMs: number): ServiceFigures | undefined {
    const now = this.#clock.now();
    const sums = this.#sum(serviceKey, windowMs, now);
    const lastRequestAt = this.#lastRequest.get(serviceKey);
    if (!sums.any && lastRequestAt === undefined) return undefined;
    const coveredMs = this.#covered(now, windowMs);
    const seconds = coveredMs / 1000;
    const figures: ServiceFigures = {
      rps: seconds > 0 ? sums.requests / seconds : 0,
      errorRate: sums.requests > 0 ? sums.errors / sums.requests : 0,
      requests: sums.requests,
      errors: sums.errors,
      shed: sums.shed,
      inflight: coveredMs > 0 ? sums.inflightMs / coveredMs : 0,
      waiting: sums.waiting,
      coveredMs,
    };
    const p50 = quantileMs(0.5, sums.latency);
    if (p50 !== undefined) {
      figures.p50Ms = p50;
      figures.p99Ms = quantileMs(0.99, sums.latency);
    }
    if (lastRequestAt !== undefined) figures.lastRequestAt = lastRequestAt;
    return figures;
  }

  instances(serviceKey: string, windowMs: number): InstanceFigures[] {
    const now = this.#clock.now();
    const sums = this.#sum(serviceKey, windowMs, now);
    const coveredMs = this.#covered(now, windowMs);
    const seconds = coveredMs / 1000;
    const list: InstanceFigures[] = [];
    for (const [instance, s] of sums.instances) {
      const figures: InstanceFigures = {
        instance,
        release: s.release,
        rps: seconds > 0 ? s.requests / seconds : 0,
        errorRate: s.requests > 0 ? s.errors / s.requests : 0,
        requests: s.requests,
        errors: s.errors,
        inflight: coveredMs > 0 ? s.inflightMs / coveredMs : 0,
      };
      const p99 = quantileMs(0.99, s.latency);
      if (p99 !== undefined) figures.p99Ms = p99;
      list.push(figures);
    }
    return list.sort((a, b) => (a.instance < b.instance ? -1 : a.instance > b.instance ? 1 : 0));
  }
}
