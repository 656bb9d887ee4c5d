/**
 * herd.yaml's `placement:` and `minAvailable:` as pod scheduling: node
 * selector, pod (anti-)affinity to the app's services by their labels,
 * topology spread, tolerations, and a PodDisruptionBudget.
 */

import type { IPodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import type { IPodAffinityTerm } from "kubernetes-models/v1/PodAffinityTerm";
import type { IPodSpec } from "kubernetes-models/v1/PodSpec";
import type { IWeightedPodAffinityTerm } from "kubernetes-models/v1/WeightedPodAffinityTerm";
import type { PlacementSpec } from "../model/placement.ts";
import { type ExportNames, labelsOf, selectorOf } from "./kubernetes-names.ts";

/** herd places apart and together by node. */
const NODE = "kubernetes.io/hostname";

/** The pod spec fields placement fills. */
export type Scheduling = Pick<
  IPodSpec,
  "nodeSelector" | "affinity" | "tolerations" | "topologySpreadConstraints"
>;

/** The pod spec fields of a placement; `binpack` is a scheduler setting, said as a warning. */
export function schedulingOf(
  names: ExportNames,
  service: string,
  p: PlacementSpec | undefined,
): { scheduling: Scheduling; warnings: string[] } {
  if (!p) return { scheduling: {}, warnings: [] };
  const warnings =
    p.strategy === "binpack"
      ? [`${service}: placement strategy binpack is a scheduler profile (MostAllocated), not a pod field`]
      : [];
  const terms = (list: { service: string; required: boolean }[] | undefined) => {
    const term = (s: string): IPodAffinityTerm => ({
      labelSelector: { matchLabels: selectorOf(names, s) },
      topologyKey: NODE,
    });
    const required = (list ?? []).filter((t) => t.required).map((t) => term(t.service));
    const preferred: IWeightedPodAffinityTerm[] = (list ?? [])
      .filter((t) => !t.required)
      .map((t) => ({ weight: 100, podAffinityTerm: term(t.service) }));
    if (required.length === 0 && preferred.length === 0) return undefined;
    return {
      ...(required.length > 0 ? { requiredDuringSchedulingIgnoredDuringExecution: required } : {}),
      ...(preferred.length > 0 ? { preferredDuringSchedulingIgnoredDuringExecution: preferred } : {}),
    };
  };
  const podAffinity = terms(p.affinity);
  const podAntiAffinity = terms(p.antiAffinity);
  const scheduling: Scheduling = {
    ...(p.nodeSelector ? { nodeSelector: p.nodeSelector } : {}),
    ...(podAffinity || podAntiAffinity
      ? {
          affinity: {
            ...(podAffinity ? { podAffinity } : {}),
            ...(podAntiAffinity ? { podAntiAffinity } : {}),
          },
        }
      : {}),
    ...(p.spreadBy
      ? {
          topologySpreadConstraints: [
            {
              maxSkew: 1,
              topologyKey: p.spreadBy,
              whenUnsatisfiable: "ScheduleAnyway",
              labelSelector: { matchLabels: selectorOf(names, service) },
            },
          ],
        }
      : {}),
    ...(p.tolerations
      ? {
          tolerations: p.tolerations.map((t) =>
            t.value === undefined
              ? { key: t.key, operator: "Exists" }
              : { key: t.key, operator: "Equal", value: t.value },
          ),
        }
      : {}),
  };
  return { scheduling, warnings };
}

/** minAvailable as a PodDisruptionBudget: drains keep that many of the service's pods. */
export function disruptionBudgetOf(
  names: ExportNames,
  service: string,
  minAvailable: number,
  release: number,
): IPodDisruptionBudget {
  return {
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: { name: names.workload(service), labels: labelsOf(names, service, release) },
    spec: { minAvailable, selector: { matchLabels: selectorOf(names, service) } },
  };
}
