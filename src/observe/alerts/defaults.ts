/**
 * The built-in rules, evaluated for the whole platform. An API rule of the
 * same name in the `default` tenant replaces one (`disabled: true` turns it
 * off); deleting that rule brings the built-in back.
 *
 * Latency SLO burn (multi-window, as in Google's SRE workbook): the SLO is
 * 99 % of a route's requests answered within 0.5 s, so the error budget is
 * 1 %. Over a window w the share of slow requests is
 *
 *   slow(w) = 1 − rate(duration_bucket{le="0.5"}[w]) / rate(duration_count[w])
 *
 * and the burn rate is slow(w) / 0.01. The rule fires when the burn rate is
 * above 14.4 (2 % of a 30-day budget gone in one hour) over both the last
 * hour and the last 5 minutes: the long window says it is significant, the
 * short one that it is still happening (so it resolves soon after it stops).
 */

import type { AlertRule } from "../../model/alerts.ts";

const BY_ROUTE = "tenant, app, route";

/** Share of slow requests (over 0.5 s) per route over `w`. */
const slowShare = (w: string) =>
  `(1 - sum by (${BY_ROUTE}) (rate(herd_gateway_request_duration_seconds_bucket{le="0.5"}[${w}])) / sum by (${BY_ROUTE}) (rate(herd_gateway_request_duration_seconds_count[${w}])))`;

export const DEFAULT_RULES: readonly AlertRule[] = [
  {
    name: "instance-crash-loop",
    source: "default",
    // herd_service_crashes: of a service's failures in a row (without reaching running), those where the
    // process exited or could not start. A failing health check is health-check-failing, not a crash.
    expr: "max by (tenant, app, service) (herd_service_crashes)",
    op: ">=",
    threshold: 3,
    for: "1m",
    severity: "critical",
    annotations: {
      summary: "{{ $labels.app }}/{{ $labels.service }} is crash-looping ({{ $value }} crashes in a row)",
    },
  },
  {
    name: "health-check-failing",
    source: "default",
    // herd_service_unhealthy: of those failures, the ones where the process ran but never passed (or stopped
    // passing) its health check.
    expr: "max by (tenant, app, service) (herd_service_unhealthy)",
    op: ">=",
    threshold: 3,
    for: "1m",
    severity: "critical",
    annotations: {
      summary:
        "{{ $labels.app }}/{{ $labels.service }} fails its health check ({{ $value }} instances in a row were not healthy)",
    },
  },
  {
    name: "service-failed",
    source: "default",
    // herd_service_failed: 1 while herd has given up on the service (crash loop, failed rollout). It fires
    // once and stays firing until a deploy or `herd scale` retries (or the app is destroyed).
    expr: "max by (tenant, app, service) (herd_service_failed)",
    op: "==",
    threshold: 1,
    for: "0s",
    severity: "critical",
    annotations: {
      summary:
        "{{ $labels.app }}/{{ $labels.service }} has failed: herd stopped retrying (see herd status; a deploy or herd scale retries)",
    },
  },
  {
    name: "undeclared-dependency",
    source: "default",
    // herd_dependency_drift (observe/dependency-drift.ts): a call the traces saw that dependsOn does not declare.
    expr: 'max by (tenant, app, from, to) (herd_dependency_drift{kind="undeclared"})',
    op: "==",
    threshold: 1,
    for: "0s",
    severity: "warning",
    annotations: {
      summary: "{{ $labels.from }} calls {{ $labels.to }}, which its dependsOn does not declare",
    },
  },
  {
    name: "undeclared-dependency-cycle",
    source: "default",
    expr: 'max by (tenant, app, from, to) (herd_dependency_drift{kind="undeclared-cycle"})',
    op: "==",
    threshold: 1,
    for: "0s",
    severity: "critical",
    annotations: {
      summary:
        "a dependency cycle runs through {{ $labels.from }} → {{ $labels.to }}, a call nobody declared",
    },
  },
  {
    name: "node-lost",
    source: "default",
    // herd_node_up: 1 while the node's agent heartbeats (state ready), else 0.
    expr: "max by (node) (herd_node_up)",
    op: "==",
    threshold: 0,
    for: "1m",
    severity: "critical",
    annotations: { summary: "node {{ $labels.node }} is not ready (no heartbeat)" },
  },
  {
    name: "route-error-rate",
    source: "default",
    // Only routes with some traffic (30 requests in 5 minutes): two 503s while an app starts are not an outage.
    expr: `sum by (${BY_ROUTE}) (rate(herd_gateway_requests_total{code=~"5.."}[5m])) / sum by (${BY_ROUTE}) (rate(herd_gateway_requests_total[5m])) and sum by (${BY_ROUTE}) (rate(herd_gateway_requests_total[5m])) > 0.1`,
    op: ">",
    threshold: 0.05,
    for: "5m",
    severity: "warning",
    annotations: {
      summary:
        "route {{ $labels.route }} of {{ $labels.app }}: a share of {{ $value }} of its requests fail with 5xx (over 0.05)",
    },
  },
  {
    name: "latency-slo-burn",
    source: "default",
    expr: `${slowShare("1h")} > 0.144 and ${slowShare("5m")} > 0.144`,
    for: "2m",
    severity: "critical",
    annotations: {
      summary:
        "route {{ $labels.route }} of {{ $labels.app }} burns its latency budget fast: {{ $value }} of requests over 0.5 s in the last hour (SLO 99 %)",
    },
  },
];
