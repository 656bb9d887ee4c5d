/**
 * herd.yaml's `autoscale:` as a HorizontalPodAutoscaler (autoscaling/v2).
 * CPU maps onto the resource metric kubelet reports; requests per second,
 * requests in flight and p99 become per-pod custom metrics and a PromQL query
 * an external metric, which a metrics adapter (e.g. prometheus-adapter) must
 * serve under these names: the export says so in its warnings.
 */

import type { IHorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import type { IMetricSpec } from "kubernetes-models/autoscaling/v2/MetricSpec";
import type { AutoscaleSpec } from "../model/service-spec.ts";
import { type ExportNames, labelsOf } from "./kubernetes-names.ts";

/** The custom metric each per-instance figure is read from, per pod. */
export const POD_METRICS = {
  rps: "herd_http_requests_per_second",
  concurrency: "herd_http_requests_in_flight",
  p99: "herd_http_request_duration_p99_milliseconds",
} as const;
/** The external metric a `query` target is read from; the query itself goes in an annotation. */
export const QUERY_METRIC = "herd_autoscale_query";
/** HPA's longest stabilization window. */
const MAX_WINDOW_S = 3600;

export function autoscalerOf(
  names: ExportNames,
  service: string,
  kind: "Deployment" | "StatefulSet",
  a: AutoscaleSpec,
  release: number,
): { hpa: IHorizontalPodAutoscaler; warnings: string[] } {
  const warnings: string[] = [];
  if (a.min === 0) {
    warnings.push(
      `${service}: autoscale min 0 (scale to zero) exported as minReplicas 1: HPA scales to zero only with the HPAScaleToZero feature gate`,
    );
  }
  if (a.target.metric !== "cpu") {
    const name = a.target.metric === "query" ? QUERY_METRIC : POD_METRICS[a.target.metric];
    warnings.push(
      `${service}: autoscale on ${a.target.metric} reads the metric ${name}: a metrics adapter must serve it`,
    );
  }
  const step = { type: "Pods", value: Math.max(1, a.maxStep), periodSeconds: 15 };
  return {
    hpa: {
      apiVersion: "autoscaling/v2",
      kind: "HorizontalPodAutoscaler",
      metadata: {
        name: names.autoscaler(service),
        labels: labelsOf(names, service, release),
        ...(a.target.query ? { annotations: { "herd.dev/autoscale-query": a.target.query } } : {}),
      },
      spec: {
        scaleTargetRef: { apiVersion: "apps/v1", kind, name: names.workload(service) },
        minReplicas: Math.max(1, a.min),
        maxReplicas: Math.max(1, a.max),
        metrics: [metricOf(a)],
        behavior: {
          scaleUp: { stabilizationWindowSeconds: 0, policies: [step] },
          scaleDown: {
            stabilizationWindowSeconds: Math.min(MAX_WINDOW_S, Math.round(a.scaleDownDelayMs / 1000)),
            policies: [step],
          },
        },
      },
    },
    warnings,
  };
}

function metricOf(a: AutoscaleSpec): IMetricSpec {
  const { metric, value } = a.target;
  if (metric === "cpu") {
    return {
      type: "Resource",
      resource: { name: "cpu", target: { type: "Utilization", averageUtilization: Math.round(value * 100) } },
    };
  }
  const target = { type: "AverageValue", averageValue: decimalQuantity(value) };
  if (metric === "query") return { type: "External", external: { metric: { name: QUERY_METRIC }, target } };
  return { type: "Pods", pods: { metric: { name: POD_METRICS[metric] }, target } };
}

/** A number as a Kubernetes quantity: whole numbers as they are, else in thousandths (`m`). */
export function decimalQuantity(n: number): string {
  return Number.isInteger(n) ? String(n) : `${Math.round(n * 1000)}m`;
}
