/**
 * Names and labels of exported objects. herd's app and service names are DNS
 * labels of at most 40 characters, so `<app>-<service>` can pass the 63 that
 * Service names and label values allow: longer ones are cut and end in a hash.
 */

import { createHash } from "node:crypto";

/** The names of one app's exported objects. */
export interface ExportNames {
  app: string;
  /** The Deployment or StatefulSet, and its Service: `<app>-<service>`. */
  workload(service: string): string;
  /** A pet's headless Service, which governs its StatefulSet's pod names. */
  headless(service: string): string;
  /** The HorizontalPodAutoscaler of an autoscaled service. */
  autoscaler(service: string): string;
  /** The app's one Secret and one Ingress. */
  secret: string;
  ingress: string;
}

const MAX_LABEL = 63;

/** `name` when it fits in `max` characters (63); else its start and an 8-character hash of the whole. */
export function fitLabel(name: string, max = MAX_LABEL): string {
  if (name.length <= max) return name;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 8);
  return `${name.slice(0, max - 9).replace(/-+$/, "")}-${hash}`;
}

export function exportNames(app: string): ExportNames {
  return {
    app,
    workload: (service) => fitLabel(`${app}-${service}`),
    headless: (service) => fitLabel(`${app}-${service}-pods`),
    autoscaler: (service) => fitLabel(`${app}-${service}`),
    secret: fitLabel(`${app}-secrets`),
    ingress: fitLabel(app),
  };
}

/** What selects a service's pods: stable across releases. */
export function selectorOf(names: ExportNames, service: string): Record<string, string> {
  return { "app.kubernetes.io/name": names.app, "app.kubernetes.io/component": fitLabel(service) };
}

/** The labels of a service's objects and pods: the selector, the release and who made them. */
export function labelsOf(names: ExportNames, service: string, release: number): Record<string, string> {
  return {
    ...selectorOf(names, service),
    "app.kubernetes.io/version": `v${release}`,
    "app.kubernetes.io/managed-by": "herd",
  };
}

/** The labels of the app-wide objects (Secret, Ingress). */
export function appLabels(names: ExportNames, release: number): Record<string, string> {
  return {
    "app.kubernetes.io/name": names.app,
    "app.kubernetes.io/version": `v${release}`,
    "app.kubernetes.io/managed-by": "herd",
  };
}
