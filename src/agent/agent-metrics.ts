/**
 * A node agent's own metrics, for its `/metrics`: how its talk with the
 * control plane goes (heartbeats, log shipping) and what it runs. The node's
 * and instances' figures (CPU, memory, disk, network, restarts) are not
 * repeated here: they travel in the heartbeats and are exported, linked to
 * apps and nodes, on the control plane's `/metrics` (observe/fleet-metrics.ts).
 *
 *   herd agent --metrics-port 9181 ─► GET /metrics: these + process metrics (CPU, memory, event loop)
 *   herd up (agent in the server's process) ─► appended to the API server's /metrics
 */

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { InstanceStatus } from "../model/protocol.ts";

const STATES: InstanceStatus["state"][] = [
  "starting",
  "up",
  "healthy",
  "unhealthy",
  "exited",
  "failed",
  "stopped",
];

export class AgentMetrics {
  readonly registry = new Registry();
  readonly heartbeats: Counter<"result">;
  readonly heartbeatSeconds: Histogram;
  readonly instanceStarts: Counter<"result">;
  readonly instanceExits: Counter;
  readonly instanceEvictions: Counter;
  readonly logLines: Counter<"result">;

  /**
   * `node` labels every series; `processMetrics` adds the process's CPU,
   * memory and event-loop figures (off when the agent shares a process that
   * already exports them).
   */
  constructor(node: string, statuses: () => InstanceStatus[], processMetrics: boolean) {
    this.registry.setDefaultLabels({ node });
    if (processMetrics) collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.heartbeats = new Counter({
      name: "herd_agent_heartbeats_total",
      help: "Heartbeats sent to the control plane, by result (ok, error).",
      labelNames: ["result"],
      registers,
    });
    this.heartbeatSeconds = new Histogram({
      name: "herd_agent_heartbeat_duration_seconds",
      help: "Time from sending a heartbeat to its answer.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.instanceStarts = new Counter({
      name: "herd_agent_instance_starts_total",
      help: "Instance processes started, by result (ok, failed: could not be started).",
      labelNames: ["result"],
      registers,
    });
    this.instanceExits = new Counter({
      name: "herd_agent_instance_exits_total",
      help: "Instance processes that ended by themselves (not stopped by the agent).",
      registers,
    });
    this.instanceEvictions = new Counter({
      name: "herd_agent_instance_evictions_total",
      help: "Burstable instances over their memory request the agent stopped for node memory pressure.",
      registers,
    });
    this.logLines = new Counter({
      name: "herd_agent_log_lines_total",
      help: "Instance log lines, by result (shipped; dropped: the buffer overflowed or the server refused the batch).",
      labelNames: ["result"],
      registers,
    });
    new Gauge({
      name: "herd_agent_instances",
      help: "Instances this agent has, by the state it reports.",
      labelNames: ["state"],
      registers,
      collect() {
        const counts = new Map<string, number>(STATES.map((s) => [s, 0]));
        for (const s of statuses()) counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
