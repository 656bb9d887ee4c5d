/**
 * What spans add up to, as pure functions over rows: one trace as a tree,
 * the service dependency map (with cycles flagged), and Top-N services and
 * routes. The store feeds rows in (SpanStore.scan); nothing here does I/O.
 *
 *   SpanRow… ─► DependencyMapBuilder.add ─► {nodes, edges (rate, errors, p50, p99), cycles}
 *   SpanRow… ─► TopBuilder.add           ─► services and routes by calls | latency | time
 *   Span[]   ─► traceTree                ─► roots with children and offsets
 */

import { isEntrySpan, type Span, spanPeer } from "./span.ts";
import type { SpanRow } from "./span-store.ts";

/** Latency samples of one series: exact up to `cap`, then a uniform reservoir. */
export class Samples {
  readonly #values: number[] = [];
  readonly #cap: number;
  #seen = 0;
  #rand = 0x9e3779b9;

  constructor(cap = 20_000) {
    this.#cap = cap;
  }

  add(v: number): void {
    this.#seen++;
    if (this.#values.length < this.#cap) {
      this.#values.push(v);
      return;
    }
    // xorshift: deterministic, no Math.random, good enough for a reservoir.
    this.#rand ^= this.#rand << 13;
    this.#rand ^= this.#rand >>> 17;
    this.#rand ^= this.#rand << 5;
    const j = (this.#rand >>> 0) % this.#seen;
    if (j < this.#cap) this.#values[j] = v;
  }

  /** Nearest-rank percentiles (p in 0..100) of what was added. */
  percentiles(...ps: number[]): number[] {
    const sorted = Float64Array.from(this.#values).sort();
    return ps.map((p) =>
      sorted.length === 0 ? 0 : sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)],
    );
  }
}

/** Calls, errors and latency of one thing over a window. Latencies in µs. */
export interface CallStats {
  calls: number;
  /** Calls per second over the window. */
  rate: number;
  errors: number;
  /** errors / calls, 0..1. */
  errorRate: number;
  p50: number;
  p99: number;
  /** Sum of durations (µs): where the time goes. */
  totalTime: number;
}

class StatsBuilder {
  calls = 0;
  errors = 0;
  total = 0;
  readonly samples = new Samples();

  add(duration: number, error: boolean, weight: number): void {
    this.calls += weight;
    if (error) this.errors += weight;
    this.total += duration * weight;
    this.samples.add(duration);
  }

  result(windowSeconds: number): CallStats {
    const [p50, p99] = this.samples.percentiles(50, 99);
    return {
      calls: this.calls,
      rate: round3(this.calls / windowSeconds),
      errors: this.errors,
      errorRate: this.calls === 0 ? 0 : round3(this.errors / this.calls),
      p50,
      p99,
      totalTime: this.total,
    };
  }
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

export interface MapNode extends CallStats {
  service: string;
  /** Part of a cycle of calls. */
  inCycle: boolean;
}

export interface MapEdge extends CallStats {
  from: string;
  to: string;
  inCycle: boolean;
}

export interface DependencyMap {
  /** Window, µs since the epoch. */
  from: number;
  to: number;
  nodes: MapNode[];
  edges: MapEdge[];
  /** Each cycle's services (a strongly connected group, or one service calling itself). */
  cycles: string[][];
}

/**
 * Builds the dependency map. An edge A → B is counted for every span of B
 * whose parent span is in A (latency and error are the child's), and for
 * every span of A naming a peer B in `peer.service` (a client or producer
 * span, or the gateway's span of a proxied request) that has no child span
 * in another service (an uninstrumented callee, e.g. a database or an app
 * that sends no spans; latency and error are the caller's span's; the store
 * tells which have children). A node's stats are its entry spans (server,
 * consumer, roots).
 */
export class DependencyMapBuilder {
  readonly #edges = new Map<string, { from: string; to: string; stats: StatsBuilder }>();
  readonly #nodes = new Map<string, StatsBuilder>();

  /** One span, read by SpanStore.scan with `parents: true`. */
  add(row: SpanRow): void {
    if (isEntrySpan(row.kind, row.parentId)) this.#node(row.service).add(row.duration, row.error, row.weight);
    if (row.parentService !== null && row.parentService !== row.service) {
      this.#edge(row.parentService, row.service).add(row.duration, row.error, row.weight);
    }
    if (row.peer !== null && !row.calledThrough) {
      this.#edge(row.service, row.peer).add(row.duration, row.error, row.weight);
    }
  }

  result(from: number, to: number): DependencyMap {
    const seconds = Math.max(1e-6, (to - from) / 1e6);
    const services = new Set(this.#nodes.keys());
    for (const e of this.#edges.values()) {
      services.add(e.from);
      services.add(e.to);
    }
    const names = [...services].sort();
    const cycles = findCycles(
      names,
      [...this.#edges.values()].map((e) => [e.from, e.to]),
    );
    const inCycle = new Map<string, number>();
    cycles.forEach((c, i) => {
      for (const s of c) inCycle.set(s, i);
    });
    const nodes = names.map((service) => ({
      service,
      ...(this.#nodes.get(service) ?? new StatsBuilder()).result(seconds),
      inCycle: inCycle.has(service),
    }));
    const edges = [...this.#edges.values()]
      .map((e) => ({
        from: e.from,
        to: e.to,
        ...e.stats.result(seconds),
        // Both ends in the same cycle (a self-call is a cycle of one).
        inCycle: inCycle.has(e.from) && inCycle.get(e.from) === inCycle.get(e.to),
      }))
      .sort((a, b) => a.from.localeCompare(b.from) || a.to.localeCompare(b.to));
    return { from, to, nodes, edges, cycles };
  }

  #node(service: string): StatsBuilder {
    let n = this.#nodes.get(service);
    if (!n) {
      n = new StatsBuilder();
      this.#nodes.set(service, n);
    }
    return n;
  }

  #edge(from: string, to: string): StatsBuilder {
    const key = `${from}\0${to}`;
    let e = this.#edges.get(key);
    if (!e) {
      e = { from, to, stats: new StatsBuilder() };
      this.#edges.set(key, e);
    }
    return e.stats;
  }
}

/**
 * Cycles in a directed graph: Tarjan's strongly connected components with
 * more than one member, plus nodes with an edge to themselves. Each cycle's
 * members are sorted; cycles are sorted by their first member.
 */
export function findCycles(
  nodes: readonly string[],
  edges: readonly (readonly [string, string])[],
): string[][] {
  const next = new Map<string, string[]>();
  for (const n of nodes) next.set(n, []);
  const selfLoops = new Set<string>();
  for (const [a, b] of edges) {
    if (!next.has(a)) next.set(a, []);
    if (!next.has(b)) next.set(b, []);
    next.get(a)?.push(b);
    if (a === b) selfLoops.add(a);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  let counter = 0;
  // Iterative, so a long call chain cannot overflow the JS stack.
  for (const start of next.keys()) {
    if (index.has(start)) continue;
    const work: { node: string; i: number }[] = [{ node: start, i: 0 }];
    index.set(start, counter);
    low.set(start, counter++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const frame = work[work.length - 1];
      const out = next.get(frame.node) ?? [];
      if (frame.i < out.length) {
        const w = out[frame.i++];
        if (!index.has(w)) {
          index.set(w, counter);
          low.set(w, counter++);
          stack.push(w);
          onStack.add(w);
          work.push({ node: w, i: 0 });
        } else if (onStack.has(w)) {
          low.set(frame.node, Math.min(low.get(frame.node) ?? 0, index.get(w) ?? 0));
        }
        continue;
      }
      work.pop();
      const v = frame.node;
      if (work.length > 0) {
        const parent = work[work.length - 1].node;
        low.set(parent, Math.min(low.get(parent) ?? 0, low.get(v) ?? 0));
      }
      if (low.get(v) === index.get(v)) {
        const group: string[] = [];
        let w: string | undefined;
        do {
          w = stack.pop();
          if (w === undefined) break;
          onStack.delete(w);
          group.push(w);
        } while (w !== v);
        if (group.length > 1 || selfLoops.has(v)) cycles.push(group.sort());
      }
    }
  }
  return cycles.sort((a, b) => a[0].localeCompare(b[0]));
}

export type TopBy = "calls" | "latency" | "time";

export interface TopEntry extends CallStats {
  service: string;
  /** Set for routes. */
  route?: string;
}

export interface TopN {
  from: number;
  to: number;
  by: TopBy;
  services: TopEntry[];
  routes: TopEntry[];
}

/**
 * Top-N over entry spans (server, consumer, roots): by calls, by p99 latency,
 * or by total time spent. An entry span naming the peer it called with no
 * child span there (the gateway's span of a request proxied to an app that
 * sends no spans of its own) counts for that peer too, under the same route:
 * it is the only record of the peer's call. Rows come from SpanStore.scan
 * with `calledThrough: true`.
 */
export class TopBuilder {
  readonly #services = new Map<string, StatsBuilder>();
  readonly #routes = new Map<string, { service: string; route: string; stats: StatsBuilder }>();

  add(row: SpanRow): void {
    if (!isEntrySpan(row.kind, row.parentId)) return;
    this.#count(row.service, row);
    if (row.peer !== null && row.peer !== row.service && !row.calledThrough) this.#count(row.peer, row);
  }

  #count(service: string, row: SpanRow): void {
    let s = this.#services.get(service);
    if (!s) {
      s = new StatsBuilder();
      this.#services.set(service, s);
    }
    s.add(row.duration, row.error, row.weight);
    const key = `${service}\0${row.route}`;
    let r = this.#routes.get(key);
    if (!r) {
      r = { service, route: row.route, stats: new StatsBuilder() };
      this.#routes.set(key, r);
    }
    r.stats.add(row.duration, row.error, row.weight);
  }

  result(from: number, to: number, by: TopBy, limit: number): TopN {
    const seconds = Math.max(1e-6, (to - from) / 1e6);
    const key = (e: CallStats) => (by === "calls" ? e.calls : by === "latency" ? e.p99 : e.totalTime);
    const order = (a: TopEntry, b: TopEntry) =>
      key(b) - key(a) || a.service.localeCompare(b.service) || (a.route ?? "").localeCompare(b.route ?? "");
    const services = [...this.#services].map(([service, s]) => ({ service, ...s.result(seconds) }));
    const routes = [...this.#routes.values()].map((r) => ({
      service: r.service,
      route: r.route,
      ...r.stats.result(seconds),
    }));
    return {
      from,
      to,
      by,
      services: services.sort(order).slice(0, limit),
      routes: routes.sort(order).slice(0, limit),
    };
  }
}

/** One span in a trace tree; `offset` is µs from the trace's start. */
export interface SpanNode extends Span {
  offset: number;
  depth: number;
  children: SpanNode[];
}

export interface TraceTree {
  traceId: string;
  /** µs since the epoch. */
  start: number;
  duration: number;
  spans: number;
  errors: number;
  services: string[];
  /** Spans without a stored parent (normally one). */
  roots: SpanNode[];
}

/** A trace's spans as a tree, children by start time; spans whose parent is missing become roots. */
export function traceTree(traceId: string, spans: readonly Span[]): TraceTree {
  const start = spans.reduce((m, s) => Math.min(m, s.start), Number.POSITIVE_INFINITY);
  const end = spans.reduce((m, s) => Math.max(m, s.start + s.duration), 0);
  const nodes = new Map<string, SpanNode>();
  for (const s of spans) nodes.set(s.spanId, { ...s, offset: s.start - start, depth: 0, children: [] });
  const roots: SpanNode[] = [];
  for (const n of nodes.values()) {
    const parent = n.parentId === null ? undefined : nodes.get(n.parentId);
    // A span naming itself as parent is treated as a root, so the tree stays a tree.
    if (parent && parent !== n) parent.children.push(n);
    else roots.push(n);
  }
  const byStart = (a: SpanNode, b: SpanNode) => a.start - b.start || a.spanId.localeCompare(b.spanId);
  const seen = new Set<SpanNode>();
  const walk = (root: SpanNode) => {
    // Depth-first and iterative, so a deep trace cannot overflow the JS stack.
    const work = [{ node: root, depth: 0 }];
    while (work.length > 0) {
      const item = work.pop();
      if (!item || seen.has(item.node)) continue;
      seen.add(item.node);
      item.node.depth = item.depth;
      item.node.children.sort(byStart);
      for (const c of item.node.children) work.push({ node: c, depth: item.depth + 1 });
    }
  };
  for (const r of roots) walk(r);
  // Bad data can make parents loop (a → b → a): cut each loop at its earliest span, which becomes a root.
  for (const n of [...nodes.values()].sort(byStart)) {
    if (seen.has(n)) continue;
    const parent = n.parentId === null ? undefined : nodes.get(n.parentId);
    if (parent) parent.children = parent.children.filter((c) => c !== n);
    roots.push(n);
    walk(n);
  }
  roots.sort(byStart);
  return {
    traceId,
    start: spans.length ? start : 0,
    duration: spans.length ? end - start : 0,
    spans: spans.length,
    errors: spans.filter((s) => s.status === "error").length,
    // The services it went through: each span's own, and the peer a span called (the gateway's upstream).
    services: [...new Set(spans.flatMap((s) => [s.service, spanPeer(s) ?? s.service]))].sort(),
    roots,
  };
}
