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
} from "../model/load.ts";
import type { ReleaseFigures } from "../model/progressive.ts";
import {
  I_ERRORS,
  I_FIELDS,
  I_INFLIGHT,
  I_LATENCY,
  I_REQUESTS,
  S_ERRORS,
  S_FIELDS,
  S_INFLIGHT,
  S_LATENCY,
  S_REQUESTS,
  S_SHED,
  S_WAITING,
  Track,
} from "./load-track.ts";

/** How long reports are kept. */
export const RETAIN_MS = 10 * 60_000;
/** How long a service's latest request time is remembered after its last report (scale to zero reads it). */
const REMEMBER_LAST_REQUEST_MS = 24 * 3_600_000;
/** A reporter silent this long says nothing about now (its gauges are 0, its window ends now). */
const STALE_MS = 2_500;

/** Slots kept per reporter and service: a report a second for RETAIN_MS, and some slack. */
const MAX_SLOTS = RETAIN_MS / 1000 + 40;
const BUCKETS = LATENCY_BUCKETS_MS.length + 1;

interface Reporter {
  /** When its latest report arrived. */
  lastAt: number;
  /** Its reports per service. */
  services: Map<string, Track>;
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
  /** Σ inflight × intervalMs. */
  inflightMs: number;
  latency: number[];
}

/** What the reports of a service add up to over a window, over every reporter. */
interface Sums {
  requests: number;
  errors: number;
  shed: number;
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
  /**
   * Since when the figures are known: the control plane's start (gateways
   * report every second while there is traffic and nothing when there is none,
   * so a second without a report is a second without traffic), or the first
   * report's interval if that began earlier.
   */
  #since: number;
  #prunedAt = Number.NEGATIVE_INFINITY;

  constructor(clock: Clock) {
    this.#clock = clock;
    this.#since = clock.now();
  }

  /** Takes one reporter's interval (a validated LoadReport). */
  record(reporterId: string, report: LoadReport): void {
    const now = this.#clock.now();
    this.#since = Math.min(this.#since, now - report.intervalMs);
    let reporter = this.#reporters.get(reporterId);
    if (reporter === undefined) {
      reporter = { lastAt: now, services: new Map() };
      this.#reporters.set(reporterId, reporter);
    }
    reporter.lastAt = now;
    // The gateway's clock → ours, for its request times.
    const offset = now - report.at;
    for (const load of report.services) {
      let track = reporter.services.get(load.service);
      if (track === undefined) {
        track = new Track(MAX_SLOTS);
        reporter.services.set(load.service, track);
      }
      track.push(now, report.intervalMs, load);
      if (load.lastRequestAt !== undefined) {
        const at = Math.min(now, load.lastRequestAt + offset);
        if (at > (this.#lastRequest.get(load.service) ?? Number.NEGATIVE_INFINITY))
          this.#lastRequest.set(load.service, at);
      }
    }
    if (now - this.#prunedAt >= 1000) this.#prune(now);
  }

  /** Drops reports older than RETAIN_MS, reporters with none left, and old request times. */
  #prune(now: number): void {
    this.#prunedAt = now;
    for (const [id, reporter] of this.#reporters) {
      for (const [key, track] of reporter.services) {
        track.dropBefore(now - RETAIN_MS);
        if (track.size === 0) reporter.services.delete(key);
      }
      if (reporter.services.size === 0 && now - reporter.lastAt > RETAIN_MS) this.#reporters.delete(id);
    }
    for (const [key, at] of this.#lastRequest) {
      if (now - at > REMEMBER_LAST_REQUEST_MS) this.#lastRequest.delete(key);
    }
  }

  /** Reports held, counted per reporter and service, and the bytes they take. */
  held(): { entries: number; bytes: number } {
    let entries = 0;
    let bytes = 0;
    for (const reporter of this.#reporters.values()) {
      for (const track of reporter.services.values()) {
        entries += track.size;
        bytes += track.bytes();
      }
    }
    return { entries, bytes };
  }

  /** Reporters heard from in the last RETAIN_MS. */
  get reporters(): number {
    return this.#reporters.size;
  }

  /** How much of a window ending now the reports cover. */
  #covered(now: number, windowMs: number): number {
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
      latency: new Array<number>(BUCKETS).fill(0),
      instances: new Map(),
      any: false,
    };
    for (const reporter of this.#reporters.values()) {
      const track = reporter.services.get(serviceKey);
      if (track === undefined || track.size === 0) continue;
      sums.any = true;
      const live = now - reporter.lastAt <= STALE_MS;
      const end = live ? reporter.lastAt : now;
      const { at, interval, data } = track;
      const newest = track.newest();
      // Gauges "now": only from the reporter's latest report, and only while it reports.
      if (live && at[newest] === reporter.lastAt) sums.waiting += data[newest * S_FIELDS + S_WAITING];
      // A report is in the window when the middle of its interval is.
      let from = track.size;
      while (from > 0) {
        const p = track.slot(from - 1);
        if (at[p] - interval[p] / 2 <= end - windowMs) break;
        from--;
      }
      if (from === track.size) continue;
      for (let i = from; i < track.size; i++) {
        const p = track.slot(i);
        const o = p * S_FIELDS;
        sums.requests += data[o + S_REQUESTS];
        sums.errors += data[o + S_ERRORS];
        sums.shed += data[o + S_SHED];
        sums.inflightMs += data[o + S_INFLIGHT] * interval[p];
        for (let b = 0; b < BUCKETS; b++) sums.latency[b] += data[o + S_LATENCY + b];
      }
      const windowStart = at[track.slot(from)];
      for (const [id, inst] of track.instances) {
        if (inst.lastAt < windowStart) continue;
        let s = sums.instances.get(id);
        if (s === undefined) {
          s = {
            release: inst.release,
            releaseAt: inst.lastAt,
            requests: 0,
            errors: 0,
            inflightMs: 0,
            latency: new Array<number>(BUCKETS).fill(0),
          };
          sums.instances.set(id, s);
        } else if (inst.lastAt > s.releaseAt) {
          s.release = inst.release;
          s.releaseAt = inst.lastAt;
        }
        const d = inst.data;
        for (let i = from; i < track.size; i++) {
          const p = track.slot(i);
          const o = p * I_FIELDS;
          s.requests += d[o + I_REQUESTS];
          s.errors += d[o + I_ERRORS];
          s.inflightMs += d[o + I_INFLIGHT] * interval[p];
          for (let b = 0; b < BUCKETS; b++) s.latency[b] += d[o + I_LATENCY + b];
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

  releases(serviceKey: string, windowMs: number): ReleaseFigures[] {
    const sums = this.#sum(serviceKey, windowMs, this.#clock.now());
    const byRelease = new Map<number, { requests: number; errors: number; latency: number[] }>();
    for (const s of sums.instances.values()) {
      let r = byRelease.get(s.release);
      if (r === undefined) {
        r = { requests: 0, errors: 0, latency: new Array<number>(BUCKETS).fill(0) };
        byRelease.set(s.release, r);
      }
      r.requests += s.requests;
      r.errors += s.errors;
      for (let b = 0; b < BUCKETS; b++) r.latency[b] += s.latency[b];
    }
    return [...byRelease]
      .sort(([a], [b]) => a - b)
      .map(([release, r]) => {
        const figures: ReleaseFigures = {
          release,
          requests: r.requests,
          errors: r.errors,
          errorRate: r.requests > 0 ? r.errors / r.requests : 0,
        };
        const p50 = quantileMs(0.5, r.latency);
        if (p50 !== undefined) {
          figures.p50Ms = p50;
          figures.p99Ms = quantileMs(0.99, r.latency);
        }
        return figures;
      });
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
