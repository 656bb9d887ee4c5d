/**
 * How requests reach exported services: a ClusterIP Service per listening
 * service (plus a headless one governing a pet's StatefulSet), and one Ingress
 * for the app whose rules are herd.yaml's routes (host, path, prefix or exact).
 * Gateway policies an Ingress cannot say are listed as warnings.
 */

import type { IHTTPIngressPath } from "kubernetes-models/networking.k8s.io/v1/HTTPIngressPath";
import type { IIngress } from "kubernetes-models/networking.k8s.io/v1/Ingress";
import type { IService } from "kubernetes-models/v1/Service";
import type { IServicePort } from "kubernetes-models/v1/ServicePort";
import type { Route, ServiceSpec } from "../model/service-spec.ts";
import { appLabels, type ExportNames, labelsOf, selectorOf } from "./kubernetes-names.ts";
import { CONTAINER_PORT, listens } from "./kubernetes-workload.ts";

/** The Service in front of a listening service's pods; for a pet also the headless Service its StatefulSet needs. */
export function servicesOf(
  names: ExportNames,
  service: string,
  spec: ServiceSpec,
  release: number,
): IService[] {
  const port: IServicePort = { name: "http", port: 80, targetPort: "http", protocol: "TCP" };
  const out: IService[] = [];
  if (listens(spec)) {
    out.push({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: names.workload(service), labels: labelsOf(names, service, release) },
      spec: { type: "ClusterIP", selector: selectorOf(names, service), ports: [port] },
    });
  }
  if (spec.mode === "pet") {
    out.push({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: names.headless(service), labels: labelsOf(names, service, release) },
      spec: {
        clusterIP: "None",
        selector: selectorOf(names, service),
        ports: [{ ...port, port: CONTAINER_PORT }],
        publishNotReadyAddresses: true,
      },
    });
  }
  return out;
}

/** Route fields that are gateway policies with no Ingress equivalent. */
const UNTRANSLATED: (keyof Route)[] = [
  "methods",
  "headers",
  "rewrite",
  "rateLimit",
  "balance",
  "fallback",
  "cors",
  "mirror",
  "split",
  "aggregate",
  "auth",
  "timeouts",
];

/** Service fields that are gateway policies with no Kubernetes equivalent. */
const UNTRANSLATED_SERVICE: (keyof ServiceSpec)[] = [
  "breaker",
  "outlier",
  "probe",
  "concurrency",
  "criticality",
];

/** The app's Ingress (absent when no service has routes), and what of the routes and services it leaves out. */
export function ingressOf(
  names: ExportNames,
  services: [string, ServiceSpec][],
  release: number,
): { ingress?: IIngress; warnings: string[] } {
  const warnings: string[] = [];
  const byHost = new Map<string, IHTTPIngressPath[]>();
  for (const [service, spec] of services) {
    const policies = UNTRANSLATED_SERVICE.filter((f) => spec[f] !== undefined);
    if (policies.length > 0)
      warnings.push(`service ${service}: ${policies.join(", ")} not expressed (herd's gateway policies)`);
    for (const route of spec.routes) {
      const left = UNTRANSLATED.filter((f) => route[f] !== undefined);
      if (left.length > 0) {
        warnings.push(
          `route ${route.host}${route.path} of ${service}: ${left.join(", ")} not expressed in the Ingress (herd's gateway policies)`,
        );
      }
      const paths = byHost.get(route.host) ?? [];
      paths.push({
        path: route.path,
        pathType: route.match === "exact" ? "Exact" : "Prefix",
        backend: { service: { name: names.workload(service), port: { name: "http" } } },
      });
      byHost.set(route.host, paths);
    }
  }
  if (byHost.size === 0) return { warnings };
  return {
    ingress: {
      apiVersion: "networking.k8s.io/v1",
      kind: "Ingress",
      metadata: { name: names.ingress, labels: appLabels(names, release) },
      spec: { rules: [...byHost].map(([host, paths]) => ({ host, http: { paths } })) },
    },
    warnings,
  };
}
