/**
 * Host and instance metrics of the whole fleet, exported by the control
 * plane's /metrics: agents report in their heartbeats, this keeps the last
 * report of each node in memory (observations, not state: the next heartbeat
 * brings them back after a restart), and a scrape renders them joined with
 * the store's nodes and instances, so every series carries the labels that
 * link it (an instance to its tenant, app, service and node).
 *
 *   heartbeat ─► FleetMetrics.record(node, stats, instance usage)
 *   GET /metrics ─► render(): store nodes + instances × last reports ─► Prometheus text
 */

import type { Instance, Node, NodeState } from "../model/objects.ts";
import type { Heartbeat, InstanceUsage, NodeStats } from "../model/protocol.ts";
import { Informer } from "../store/informer.ts";
import type { Store } from "../store/store.ts";
import type { ScrapeTarget } from "./scrape.ts";

/** A node's last heartbeat figures. */
export interface NodeReport {
  stats: NodeStats | undefined;
  /** Instance id → its last usage. */
  usage: ReadonlyMap<string, InstanceUsage>;
}

const NODE_STATES: readonly NodeState[] = ["ready", "not_ready", "lost"];
/** Instance states in which its process runs (its usage is current). */
const RUNNING = new Set(["ready", "running"]);

export class FleetMetrics {
  /** Where nodes and instances are read: the control plane's informer (no parse of every instance per scrape), or a store. */
  readonly #source: Store | Informer;
  readonly #reports = new Map<string, NodeReport>();

  constructor(source: Store | Informer) {
    this.#source = source;
  }

  /** Keeps a heartbeat's node stats and instance usage (replacing the node's last report). */
  record(node: string, hb: Pick<Heartbeat, "stats" | "instances">): void {
    const usage = new Map<string, InstanceUsage>();
    for (const s of hb.instances) if (s.usage) usage.set(s.id, s.usage);
    this.#reports.set(node, { stats: hb.stats, usage });
  }

  /** A node's last reported figures (also read by `GET /capacity`), while the node is known. */
  report(node: string): NodeReport | undefined {
    return this.#reports.get(node);
  }

  /** The fleet's series in Prometheus text format (0.0.4). */
  async render(): Promise<string> {
    const source = this.#source;
    // The informer as it holds them now, without sync(): a scrape need not wait for the watch
    // (with it, the self-scrape timed out in a loaded 10,000-instance ramp; a moment old is fine here).
    const read = async <T>(kind: "node" | "instance") =>
      source instanceof Informer ? source.list<T>(kind) : (await source.list<T>(kind)).items;
    const nodes = inKeyOrder(await read<Node>("node")).map((o) => o.value);
    const instances = inKeyOrder(await read<Instance>("instance")).map((o) => o.value);
    const out = new TextWriter();
    const known = new Set(nodes.map((n) => n.name));
    for (const name of this.#reports.keys()) if (!known.has(name)) this.#reports.delete(name);

    out.family("herd_node_up", "gauge", "1 while the node's agent sends heartbeats (state ready), else 0.");
    for (const n of nodes) out.sample("herd_node_up", { node: n.name }, n.state === "ready" ? 1 : 0);
    out.family("herd_node_state", "gauge", "The node's state: 1 for the state it is in, 0 for the others.");
    for (const n of nodes) {
      for (const state of NODE_STATES)
        out.sample("herd_node_state", { node: n.name, state }, n.state === state ? 1 : 0);
    }
    out.family("herd_node_schedulable", "gauge", "1 unless the node is cordoned or draining.");
    for (const n of nodes) {
      out.sample("herd_node_schedulable", { node: n.name }, n.schedulable && !n.draining ? 1 : 0);
    }
    out.family(
      "herd_node_capacity_cpu_cores",
      "gauge",
      "CPU cores the node offers to instances (allocatable).",
    );
    for (const n of nodes) out.sample("herd_node_capacity_cpu_cores", { node: n.name }, n.allocatable.cpu);
    out.family(
      "herd_node_capacity_memory_bytes",
      "gauge",
      "Memory the node offers to instances (allocatable).",
    );
    for (const n of nodes)
      out.sample("herd_node_capacity_memory_bytes", { node: n.name }, n.allocatable.memory);

    // A node that stopped reporting has no current figures: its series end (and go stale) rather than freeze.
    const live = nodes.filter((n) => n.state === "ready" && this.#reports.has(n.name));
    const stats = (n: Node) => this.#reports.get(n.name)?.stats;
    /** One family of the live nodes' reported figures, a sample per key of `values` (its label is `label`). */
    const figures = (
      name: string,
      type: "counter" | "gauge",
      help: string,
      label: string,
      values: (s: NodeStats) => Record<string, number> | undefined,
    ) => {
      out.family(name, type, help);
      for (const n of live) {
        const report = stats(n);
        const v = report && values(report);
        if (v)
          for (const [key, value] of Object.entries(v))
            out.sample(name, { node: n.name, [label]: key }, value);
      }
    };
    figures(
      "herd_node_cpu_seconds_total",
      "counter",
      "CPU seconds since boot over all cores, by mode.",
      "mode",
      (s) => s.cpuSeconds,
    );
    figures(
      "herd_node_memory_bytes",
      "gauge",
      "The node's memory: total, and available for new work.",
      "kind",
      (s) => s.memory && { total: s.memory.totalBytes, available: s.memory.availableBytes },
    );
    figures(
      "herd_node_disk_bytes",
      "gauge",
      "The filesystem of the agent's data dir: total and free bytes.",
      "kind",
      (s) => s.disk && { total: s.disk.totalBytes, free: s.disk.freeBytes },
    );
    figures(
      "herd_node_network_bytes_total",
      "counter",
      "Bytes through the node's interfaces (not loopback).",
      "direction",
      (s) => s.network && { receive: s.network.receiveBytes, transmit: s.network.transmitBytes },
    );

    const placed = instances.filter((i) => i.node && i.desired === "running");
    const labels = (i: Instance) => ({
      tenant: i.tenant,
      app: i.app,
      service: i.service,
      instance: i.id,
      node: i.node ?? "",
    });
    const usage = (i: Instance) =>
      RUNNING.has(i.state) && i.node ? this.#reports.get(i.node)?.usage.get(i.id) : undefined;
    out.family("herd_instance_cpu_seconds_total", "counter", "CPU seconds the instance's processes used.");
    for (const i of placed) {
      const u = usage(i);
      if (u?.cpuSeconds !== undefined) out.sample("herd_instance_cpu_seconds_total", labels(i), u.cpuSeconds);
    }
    out.family(
      "herd_instance_cpu_wait_ratio",
      "gauge",
      "Of the instance's runnable time between its agent's last two readings, the share it waited for a CPU.",
    );
    for (const i of placed) {
      const u = usage(i);
      if (u?.cpuWaitShare !== undefined)
        out.sample("herd_instance_cpu_wait_ratio", labels(i), u.cpuWaitShare);
    }
    out.family("herd_instance_memory_bytes", "gauge", "Memory the instance uses (cgroup, or resident set).");
    for (const i of placed) {
      const u = usage(i);
      if (u?.memoryBytes !== undefined) out.sample("herd_instance_memory_bytes", labels(i), u.memoryBytes);
    }
    out.family("herd_instance_restarts_total", "counter", "Times the instance was restarted in place.");
    for (const i of placed) out.sample("herd_instance_restarts_total", labels(i), i.restarts);
    out.family("herd_instance_up", "gauge", "1 while the instance runs and passes its health check, else 0.");
    for (const i of placed) out.sample("herd_instance_up", labels(i), i.state === "running" ? 1 : 0);
    out.family("herd_instance_cpu_limit_cores", "gauge", "CPU cores the instance may use.");
    for (const i of placed) out.sample("herd_instance_cpu_limit_cores", labels(i), i.run.resources.cpu);
    out.family("herd_instance_memory_limit_bytes", "gauge", "Memory the instance may use.");
    for (const i of placed) out.sample("herd_instance_memory_limit_bytes", labels(i), i.run.resources.memory);
    return out.text();
  }
}

/** Objects in key order, as a store lists them (the informer keeps no order); sorts in place. */
function inKeyOrder<T extends { key: string }>(items: T[]): T[] {
  return items.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Prometheus text, written family by family. */
class TextWriter {
  readonly #lines: string[] = [];

  family(name: string, type: "counter" | "gauge", help: string): void {
    this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: Record<string, string>, value: number): void {
    const pairs = Object.entries(labels)
      .map(([k, v]) => `${k}="${v.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`))}"`)
      .join(",");
    this.#lines.push(`${name}{${pairs}} ${value}`);
  }

  text(): string {
    return this.#lines.length === 0 ? "" : `${this.#lines.join("\n")}\n`;
  }
}

/**
 * The metrics endpoint of every ready node whose agent serves one (`herd agent
 * --metrics-port`): scraped as job `herd-agent` while the node is ready.
 */
export async function agentScrapeTargets(source: Store | Informer): Promise<ScrapeTarget[]> {
  const out: ScrapeTarget[] = [];
  // The informer's nodes (in name order, as a store lists them) when there is one: the target
  // list is read before every scrape round, and a store list parses every node.
  const nodes =
    source instanceof Informer
      ? inKeyOrder(source.list<Node>("node"))
      : (await source.list<Node>("node")).items;
  for (const { value: n } of nodes) {
    if (n.state !== "ready" || !n.metricsUrl) continue;
    out.push({
      name: `herd-agent/${n.name}`,
      url: n.metricsUrl,
      labels: { job: "herd-agent", component: "agent", node: n.name },
      createdAt: "",
    });
  }
  return out;
}
