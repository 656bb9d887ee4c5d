/**
 * Passive outlier ejection: an endpoint that fails `consecutiveFailures` times
 * in a row (5xx or connection failures; with `unreachableOnly`, connection
 * failures only) is taken out of the rotation for
 * `baseEjectionMs × number of times it was ejected` (capped), but never more
 * than `maxEjectedShare` of a service's endpoints at once (at least one of
 * two or more; never a lone endpoint). Readmission is by
 * time: the endpoint comes back and its next failures count again.
 */

export interface OutlierOptions {
  consecutiveFailures: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
  /** 0..1: the largest share of endpoints ejected at the same time. */
  maxEjectedShare: number;
  /**
   * Count only connections refused, reset or unreachable (`unreachable()`),
   * not 5xx or timeouts: an instance that is not there, not one that answers
   * badly. Every service without an `outlier` policy has such a detector
   * (UNREACHABLE_OUTLIER), so a gateway stops sending to a dead instance on
   * its own, also while the control plane is away.
   */
  unreachableOnly?: boolean;
}

export const DEFAULT_OUTLIER: OutlierOptions = {
  consecutiveFailures: 5,
  baseEjectionMs: 30_000,
  maxEjectionMs: 300_000,
  maxEjectedShare: 0.5,
};

/** The detector of a service without an `outlier` policy: 3 refused connections in a row eject for 10 s (then 20 s, …). */
export const UNREACHABLE_OUTLIER: OutlierOptions = {
  consecutiveFailures: 3,
  baseEjectionMs: 10_000,
  maxEjectionMs: 300_000,
  maxEjectedShare: 0.5,
  unreachableOnly: true,
};

interface EndpointHealth {
  failures: number;
  ejections: number;
  ejectedUntil: number;
}

export class OutlierDetector {
  readonly options: OutlierOptions;
  readonly #endpoints = new Map<string, EndpointHealth>();
  /** When the last ejection ends: before then some endpoint may be out (a cheap check per request). */
  #ejectionsEndAt = 0;

  constructor(options: Partial<OutlierOptions> = {}) {
    this.options = { ...DEFAULT_OUTLIER, ...options };
  }

  /** Whether any endpoint may be ejected at `now`. */
  anyEjected(now: number): boolean {
    return now < this.#ejectionsEndAt;
  }

  /** Whether the endpoint is out of the rotation at `now`. */
  isEjected(endpoint: string, now: number): boolean {
    const h = this.#endpoints.get(endpoint);
    return h !== undefined && h.ejectedUntil > now;
  }

  /**
   * Records a response from an endpoint. `total` is how many endpoints the
   * service has (for the ejection cap). Returns true when this ejected it.
   */
  record(endpoint: string, success: boolean, now: number, total: number): boolean {
    // An unreachable-only detector hears of its failures through unreachable().
    if (!success && this.options.unreachableOnly) return false;
    return this.#record(endpoint, success, now, total);
  }

  /**
   * Records a connection to the endpoint that failed (refused, reset,
   * unreachable). Only an unreachable-only detector counts it here; a full
   * one has counted it through record() already.
   */
  unreachable(endpoint: string, now: number, total: number): boolean {
    return this.options.unreachableOnly === true && this.#record(endpoint, false, now, total);
  }

  #record(endpoint: string, success: boolean, now: number, total: number): boolean {
    let h = this.#endpoints.get(endpoint);
    if (h === undefined) {
      if (success) return false;
      h = { failures: 0, ejections: 0, ejectedUntil: 0 };
      this.#endpoints.set(endpoint, h);
    }
    if (success) {
      h.failures = 0;
      return false;
    }
    if (h.ejectedUntil > now) return false;
    h.failures++;
    if (h.failures < this.options.consecutiveFailures) return false;
    // A lone endpoint is never ejected (there would be nothing to send to); otherwise at least one may be.
    const allowed = total > 1 ? Math.max(1, Math.floor(total * this.options.maxEjectedShare)) : 0;
    if (this.ejectedCount(now) + 1 > allowed) return false;
    h.ejections++;
    h.failures = 0;
    h.ejectedUntil = now + Math.min(this.options.maxEjectionMs, this.options.baseEjectionMs * h.ejections);
    this.#ejectionsEndAt = Math.max(this.#ejectionsEndAt, h.ejectedUntil);
    return true;
  }

  ejectedCount(now: number): number {
    let n = 0;
    for (const h of this.#endpoints.values()) if (h.ejectedUntil > now) n++;
    return n;
  }
}
