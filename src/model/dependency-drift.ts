/**
 * Declared against observed dependencies: what herd.yaml's dependsOn says
 * against the calls the traces saw (the map of `herd map` and the catalog).
 * Pure: observe/dependency-drift.ts feeds it and turns findings into events
 * and the gauges the built-in alerts read.
 */

import { findCycle, formatCycle, qualify } from "./dependencies.ts";

/** What a service declares and how critical it is, by `app/service`. */
export interface DeclaredService {
  dependsOn?: string[];
  criticality?: "critical" | "normal" | "low";
}

export type DriftFinding =
  /** a call the traces saw that dependsOn does not declare */
  | { kind: "undeclared"; from: string; to: string; message: string }
  /** a cycle among observed calls, at least one of them undeclared */
  | { kind: "undeclared-cycle"; cycle: string[]; from: string; to: string; message: string }
  /** a critical service that depends on (declares or calls) a low one */
  | { kind: "critical-on-low"; from: string; to: string; message: string };

/** A stable key per finding: an event is recorded once per finding while it lasts. */
export function findingKey(f: DriftFinding): string {
  return f.kind === "undeclared-cycle" ? `${f.kind}:${f.cycle.join(">")}` : `${f.kind}:${f.from}>${f.to}`;
}

/**
 * Findings for one tenant. `services` are the tenant's services by
 * `app/service`; `calls` the observed edges (`gateway` and services unknown
 * to the store, e.g. of another tenant, are left out).
 */
export function dependencyDrift(
  services: ReadonlyMap<string, DeclaredService>,
  calls: readonly { from: string; to: string }[],
): DriftFinding[] {
  const findings: DriftFinding[] = [];
  const declared = new Map<string, Set<string>>();
  for (const [node, s] of services)
    declared.set(node, new Set(qualify(node.split("/")[0] ?? "", s.dependsOn)));
  const observed = new Map<string, string[]>();
  const undeclared = new Set<string>();
  for (const c of calls) {
    if (c.from === c.to || !services.has(c.from) || !services.has(c.to)) continue;
    observed.set(c.from, [...(observed.get(c.from) ?? []), c.to]);
    if (!declared.get(c.from)?.has(c.to)) {
      undeclared.add(`${c.from}>${c.to}`);
      findings.push({
        kind: "undeclared",
        from: c.from,
        to: c.to,
        message: `${c.from} calls ${c.to}, which its dependsOn does not declare`,
      });
    }
  }
  // Cycles of what runs: the declared edges (never cyclic: deploys refuse that) and the observed ones.
  const graph = new Map<string, string[]>();
  for (const [node, deps] of declared) graph.set(node, [...deps]);
  for (const [node, tos] of observed) graph.set(node, [...new Set([...(graph.get(node) ?? []), ...tos])]);
  const cycle = findCycle(graph);
  if (cycle) {
    const edges = cycle.slice(1).map((to, i) => [cycle[i] as string, to] as const);
    const hidden = edges.find(([a, b]) => undeclared.has(`${a}>${b}`)) ?? edges[0];
    if (hidden)
      findings.push({
        kind: "undeclared-cycle",
        cycle,
        from: hidden[0],
        to: hidden[1],
        message: `dependency cycle seen in the traces: ${formatCycle(cycle)} (${hidden[0]} → ${hidden[1]} is not declared)`,
      });
  }
  const seen = new Set<string>();
  for (const [from, deps] of graph) {
    if (services.get(from)?.criticality !== "critical") continue;
    for (const to of deps) {
      if (services.get(to)?.criticality !== "low" || seen.has(`${from}>${to}`)) continue;
      seen.add(`${from}>${to}`);
      findings.push({
        kind: "critical-on-low",
        from,
        to,
        message: `${from} is critical but depends on ${to}, which is low: under overload ${to} is shed first`,
      });
    }
  }
  return findings;
}
