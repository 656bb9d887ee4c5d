/**
 * Live load figures: what gateways see each second, for the decisions that
 * cannot wait for a 15 s scrape (autoscaling, scale to zero, remediation).
 *
 *   gateway ──PUT /api/v1/gateways/:id/load every second──► control plane LoadFigures
 *                                                             ├─ autoscaler (controllers/)
 *                                                             └─ remediation engine
 *
 * A report covers one interval (about a second) of one gateway; the control
 * plane keeps a few minutes of them in memory, per service and per instance,
 * and sums over gateways. Nothing here goes through the object store.
 */

/** Upper bounds (ms) of the latency histogram every report carries; a last count is for slower ones. */
export const LATENCY_BUCKETS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000] as const;

/** The body of `PUT /api/v1/gateways/:id/load`: one gateway's interval. */
export interface LoadReport {
  /** End of the interval, ms since the epoch (the gateway's clock). */
  at: number;
  /** Length of the interval, ms (about 1000). */
  intervalMs: number;
  /** Services that had traffic, in-flight or held requests in the interval. */
  services: ServiceLoad[];
}

/** One service's traffic through one gateway in one interval. */
export interface ServiceLoad {
  /** Service key: `<tenant>/<app>/<service>`. */
  service: string;
  /** Responses finished in the interval. */
  requests: number;
  /** Of those, failures: 5xx from an instance, or no instance reached (connect error, timeout). */
  errors: number;
  /** Refused by the gateway's own policies (rate limit, concurrency, shedding, breaker open). */
  shed: number;
  /** Requests being proxied at the end of the interval. */
  inflight: number;
  /** Requests held waiting for an instance (scale to zero) at the end of the interval. */
  waiting: number;
  /** When the latest request for this service arrived, ms since the epoch. */
  lastRequestAt?: number;
  /** Counts per LATENCY_BUCKETS_MS bound, plus one for slower; length LATENCY_BUCKETS_MS.length + 1. */
  latency: number[];
  /** Per instance the gateway sent to. */
  instances: InstanceLoad[];
}

/** One instance's share of a ServiceLoad. */
export interface InstanceLoad {
  instance: string;
  /** The release the instance runs. */
  release: number;
  requests: number;
  errors: number;
  inflight: number;
  latency: number[];
}

/** A service's figures over a window, summed over gateways. */
export interface ServiceFigures {
  /** Responses per second. */
  rps: number;
  /** errors / requests (0 without requests). */
  errorRate: number;
  requests: number;
  errors: number;
  shed: number;
  /** Mean in-flight requests over the window (sum over gateways). */
  inflight: number;
  /** Requests held for a cold start now. */
  waiting: number;
  /** Undefined without requests in the window. */
  p50Ms?: number;
  p99Ms?: number;
  /** Latest request arrival seen by any gateway, ms since the epoch. */
  lastRequestAt?: number;
  /** How much of the window reports cover, ms (less than the window right after a start). */
  coveredMs: number;
}

/** One instance's figures over a window. */
export interface InstanceFigures {
  instance: string;
  release: number;
  rps: number;
  errorRate: number;
  requests: number;
  errors: number;
  inflight: number;
  p99Ms?: number;
}

import type { ReleaseFigures } from "./progressive.ts";

/** The control plane's read side of the live figures (implemented in observe/live-load.ts). */
export interface LoadFigures {
  /** Figures of one service over the last `windowMs`; undefined when no gateway reported it. */
  service(serviceKey: string, windowMs: number): ServiceFigures | undefined;
  /** Figures per instance of one service over the last `windowMs`. */
  instances(serviceKey: string, windowMs: number): InstanceFigures[];
  /**
   * Figures per release of one service over the last `windowMs` (its
   * instances' counts and latency histograms summed by the release they run):
   * what a canary's analysis compares. Optional: stand-ins in tests may lack it.
   */
  releases?(serviceKey: string, windowMs: number): ReleaseFigures[];
}
