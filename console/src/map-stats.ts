// A service's figures on the map. A service that sends no spans of its own
// (an app behind the gateway without tracing) has no calls as a node; then
// the calls into it, as its callers saw them, stand for its own.

import type { CallStats, DependencyMap } from "./api-types.ts";

export type NodeStats = CallStats & { service: string; inCycle: boolean; seenByCallers: boolean };

export function nodeStats(map: DependencyMap): NodeStats[] {
  return map.nodes.map((n) => {
    if (n.calls > 0) return { ...n, seenByCallers: false };
    const into = map.edges.filter((e) => e.to === n.service && e.from !== n.service);
    if (into.length === 0) return { ...n, seenByCallers: false };
    const calls = into.reduce((s, e) => s + e.calls, 0);
    const errors = into.reduce((s, e) => s + e.errors, 0);
    return {
      ...n,
      calls,
      errors,
      rate: into.reduce((s, e) => s + e.rate, 0),
      errorRate: calls === 0 ? 0 : errors / calls,
      p50: Math.max(...into.map((e) => e.p50)),
      p99: Math.max(...into.map((e) => e.p99)),
      totalTime: into.reduce((s, e) => s + e.totalTime, 0),
      seenByCallers: true,
    };
  });
}
