/**
 * Test helper: checks an exported object against the Kubernetes OpenAPI
 * schema of its kind, using the validators the kubernetes-models package
 * generates from the Kubernetes API's OpenAPI document (required fields,
 * types, enums, int32, int-or-string and quantity formats). Tests only: the
 * package is a devDependency.
 */

import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { CronJob } from "kubernetes-models/batch/v1/CronJob";
import { Ingress } from "kubernetes-models/networking.k8s.io/v1/Ingress";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";

/** The schema of each kind the export writes; any other kind is an error. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "apps/v1/Deployment": Deployment,
  "apps/v1/StatefulSet": StatefulSet,
  "v1/Service": Service,
  "v1/Secret": Secret,
  "networking.k8s.io/v1/Ingress": Ingress,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "batch/v1/CronJob": CronJob,
};

/** The schema's complaint about `o`, or undefined when it is valid. */
export function schemaError(o: unknown): string | undefined {
  const { apiVersion, kind } = (o ?? {}) as { apiVersion?: string; kind?: string };
  const Model = MODELS[`${apiVersion}/${kind}`];
  if (!Model) return `no schema for ${apiVersion} ${kind}`;
  try {
    // The constructor only fills apiVersion and kind (already set); validate() checks the data as given.
    new Model(structuredClone(o) as never).validate();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
