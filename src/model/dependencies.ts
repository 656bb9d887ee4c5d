/**
 * Dependencies between services: `dependsOn: [db, otherapp/web]` in herd.yaml.
 * A graph whose nodes are `app/service`; an edge a → b means a needs b running
 * first. Pure: the controllers feed it the store's services, the set apply its
 * apps.
 */

import { Type as T } from "@sinclair/typebox";
import type { FieldProblem } from "../common/errors.ts";

const DEP_PATTERN = "^[a-z][a-z0-9-]{0,39}(/[a-z][a-z0-9-]{0,39})?$";

/** `dependsOn:` of a service: names of the same app's services, or `app/service` of another app. */
export const DependsOnSchema = T.Array(
  T.String({ pattern: DEP_PATTERN, description: "a service of this app, or app/service of another app" }),
  { maxItems: 32, uniqueItems: true, description: "at most 32 services this one needs running first" },
);

/** Edges by node: node → the nodes it depends on. */
export type DependencyGraph = ReadonlyMap<string, readonly string[]>;

/** `app/service` of each name in a service's dependsOn (a bare name is the same app's). */
export function qualify(app: string, deps: readonly string[] | undefined): string[] {
  return (deps ?? []).map((d) => (d.includes("/") ? d : `${app}/${d}`));
}

/**
 * The first cycle found, as the path that closes it (`[a, b, a]`), or
 * undefined. Nodes are visited in sorted order so the answer is stable.
 */
export function findCycle(graph: DependencyGraph): string[] | undefined {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (node: string): string[] | undefined => {
    const s = state.get(node);
    if (s === "done") return undefined;
    if (s === "open") return [...path.slice(path.indexOf(node)), node];
    state.set(node, "open");
    path.push(node);
    for (const next of [...(graph.get(node) ?? [])].sort()) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(node, "done");
    return undefined;
  };
  for (const node of [...graph.keys()].sort()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return undefined;
}

/** `a/web → b/api → a/web`. */
export function formatCycle(cycle: readonly string[]): string {
  return cycle.join(" → ");
}

/**
 * Nodes in waves: every node of a wave depends only on nodes of earlier waves
 * (or on nodes outside the graph). Throws on a cycle: check with findCycle first.
 */
export function dependencyWaves(graph: DependencyGraph): string[][] {
  const waves: string[][] = [];
  const placed = new Set<string>();
  const left = new Set(graph.keys());
  while (left.size > 0) {
    const wave = [...left]
      .filter((n) => (graph.get(n) ?? []).every((d) => placed.has(d) || !graph.has(d) || d === n))
      .sort();
    if (wave.length === 0) throw new Error(`dependency cycle among ${[...left].join(", ")}`);
    for (const n of wave) {
      placed.add(n);
      left.delete(n);
    }
    waves.push(wave);
  }
  return waves;
}

/**
 * herd.yaml's dependsOn beyond its schema: a bare name is a service of this
 * herd.yaml, not the service itself, and the app's services form no cycle.
 * Other apps' names are checked at deploy (controllers/dependencies.ts).
 */
export function dependsOnProblems(services: Record<string, { dependsOn?: string[] }>): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const graph = new Map<string, string[]>();
  for (const [name, s] of Object.entries(services)) {
    const local = (s.dependsOn ?? []).filter((d) => !d.includes("/"));
    (s.dependsOn ?? []).forEach((d, n) => {
      const field = `services.${name}.dependsOn.${n}`;
      if (d === name) problems.push({ field, message: `${name} cannot depend on itself` });
      else if (!d.includes("/") && !(d in services))
        problems.push({
          field,
          message: `no service ${d} in this herd.yaml (services: ${Object.keys(services).join(", ")}); another app's is app/service`,
        });
    });
    graph.set(
      name,
      local.filter((d) => d !== name && d in services),
    );
  }
  if (problems.length > 0) return problems;
  const cycle = findCycle(graph);
  if (cycle)
    problems.push({
      field: `services.${cycle[0]}.dependsOn`,
      message: `dependency cycle: ${formatCycle(cycle)}`,
    });
  return problems;
}
