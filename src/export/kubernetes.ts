/**
 * `herd export kubernetes`: an app's current release as Kubernetes manifests.
 * Pure: the release's service specs and counts in, objects and warnings out
 * (the route in api/routes/export.ts reads the store; the CLI writes YAML).
 *
 *   release.services ─┬─ workload (Deployment | StatefulSet + claim)   kubernetes-workload.ts
 *                     ├─ Service (+ headless for pets), Ingress        kubernetes-traffic.ts
 *                     ├─ HorizontalPodAutoscaler                       kubernetes-autoscale.ts
 *                     ├─ affinities, tolerations, PodDisruptionBudget  kubernetes-placement.ts
 *                     ├─ CronJobs from the service's jobs              kubernetes-jobs.ts
 *                     └─ Secret: names and placeholders, never values
 */

import type { ISecret } from "kubernetes-models/v1/Secret";
import { stringify } from "yaml";
import type { ServiceSpec } from "../model/service-spec.ts";
import { autoscalerOf } from "./kubernetes-autoscale.ts";
import { cronJobsOf } from "./kubernetes-jobs.ts";
import { appLabels, exportNames } from "./kubernetes-names.ts";
import { disruptionBudgetOf, schedulingOf } from "./kubernetes-placement.ts";
import { ingressOf, servicesOf } from "./kubernetes-traffic.ts";
import { workloadOf } from "./kubernetes-workload.ts";

/** What is exported: one release of one app. */
export interface KubernetesExportInput {
  app: string;
  release: number;
  /** Each service's spec in the release and its desired instances now. */
  services: Record<string, { spec: ServiceSpec; instances: number }>;
  /** The container image of the release (herd runs a slug; the image is built from it elsewhere). */
  image: string;
}

/** One exported object: apiVersion, kind, metadata (with its name) and the rest. */
export interface KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string };
}

export interface KubernetesExport {
  objects: KubernetesObject[];
  /** What herd does that the manifests do not (gateway policies, scale to zero, custom metrics). */
  warnings: string[];
}

/** The value every exported secret key holds until someone sets it. */
export const SECRET_PLACEHOLDER = "REPLACE_ME";

export function kubernetesManifests(input: KubernetesExportInput): KubernetesExport {
  const names = exportNames(input.app);
  const services = Object.entries(input.services).sort(([a], [b]) => a.localeCompare(b));
  const secretKeys = [...new Set(services.flatMap(([, s]) => Object.values(s.spec.secrets ?? {})))].sort();
  const objects: KubernetesObject[] = [];
  const warnings: string[] = [];
  if (secretKeys.length > 0)
    objects.push(secretOf(names.secret, appLabels(names, input.release), secretKeys));
  for (const [service, { spec, instances }] of services) {
    const { scheduling, warnings: placed } = schedulingOf(names, service, spec.placement);
    warnings.push(...placed);
    const workloadInput = {
      names,
      service,
      spec,
      replicas: instances,
      release: input.release,
      image: input.image,
      ...(secretKeys.length > 0 ? { secretName: names.secret } : {}),
      scheduling,
    };
    const workload = workloadOf(workloadInput);
    objects.push(workload);
    const { cronJobs, warnings: unscheduled } = cronJobsOf({ ...workloadInput, scheduling });
    objects.push(...cronJobs);
    warnings.push(...unscheduled);
    for (const s of servicesOf(names, service, spec, input.release)) objects.push(s);
    if (spec.minAvailable !== undefined) {
      objects.push(disruptionBudgetOf(names, service, spec.minAvailable, input.release));
    }
    if (spec.autoscale) {
      const { hpa, warnings: w } = autoscalerOf(names, service, workload.kind, spec.autoscale, input.release);
      objects.push(hpa);
      warnings.push(...w);
    }
  }
  const { ingress, warnings: w } = ingressOf(
    names,
    services.map(([n, s]) => [n, s.spec]),
    input.release,
  );
  if (ingress) objects.push(ingress);
  warnings.push(...w);
  return { objects, warnings };
}

/** The app's secrets by name, each holding a placeholder: herd never exports a secret's value. */
function secretOf(name: string, labels: Record<string, string>, keys: string[]): ISecret {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name,
      labels,
      annotations: {
        "herd.dev/note": `values are placeholders: set each key (herd secrets lists them) before applying, e.g. kubectl create secret generic ${name} --from-literal=KEY=value`,
      },
    },
    type: "Opaque",
    stringData: Object.fromEntries(keys.map((k) => [k, SECRET_PLACEHOLDER])),
  };
}

/** The file one object is written to with `--out DIR`: `<kind>-<name>.yaml`, kind in lower case. */
export function manifestFileName(o: KubernetesObject): string {
  return `${o.kind.toLowerCase()}-${o.metadata?.name}.yaml`;
}

/** Objects as one YAML stream, `---` between documents; no anchors or aliases, which some tools refuse. */
export function toYaml(objects: KubernetesObject[]): string {
  return objects.map((o) => stringify(o, { lineWidth: 0, aliasDuplicateObjects: false })).join("---\n");
}
