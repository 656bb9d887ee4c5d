// The dependency map as a graph: services as circles (size by call rate, red
// when their error ratio is high), calls as arrows labelled with rate and
// error ratio, cycles dashed. Laid out once with d3-force, drawn as SVG; a
// node or an arrow is a button (click or Enter) that selects it. Loaded only
// by the map page (React.lazy), so d3 is not in the first load.

import {
  forceCenter,
  forceCollide,
  forceLink,
  forceManyBody,
  forceSimulation,
  type SimulationNodeDatum,
} from "d3-force";
import { type KeyboardEvent, useMemo } from "react";
import type { DependencyMap } from "../api-types.ts";
import { nodeStats } from "../map-stats.ts";

export type Selection = { service: string } | { from: string; to: string } | undefined;

interface Placed extends SimulationNodeDatum {
  id: string;
  x: number;
  y: number;
}

const W = 900;
const H = 520;
const BAD = 0.05;

/** Where each service goes: a force layout run to rest (deterministic: same map, same picture). */
export function layout(map: DependencyMap): Map<string, { x: number; y: number }> {
  const nodes: Placed[] = map.nodes.map((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, map.nodes.length);
    return { id: n.service, x: W / 2 + Math.cos(a) * 200, y: H / 2 + Math.sin(a) * 160 };
  });
  const known = new Set(nodes.map((n) => n.id));
  const links = map.edges
    .filter((e) => e.from !== e.to && known.has(e.from) && known.has(e.to))
    .map((e) => ({ source: e.from, target: e.to }));
  const sim = forceSimulation<Placed>(nodes)
    .force(
      "link",
      forceLink<Placed, { source: string; target: string }>(links)
        .id((d) => d.id)
        .distance(150),
    )
    .force("charge", forceManyBody().strength(-500))
    .force("collide", forceCollide(50))
    .force("center", forceCenter(W / 2, H / 2))
    .stop();
  for (let i = 0; i < 300; i++) sim.tick();
  const pad = 60;
  return new Map(
    nodes.map((n) => [
      n.id,
      { x: Math.min(W - pad, Math.max(pad, n.x)), y: Math.min(H - 30, Math.max(30, n.y)) },
    ]),
  );
}

const pct = (r: number) => `${(r * 100).toFixed(r < 0.01 && r > 0 ? 2 : 1)}%`;
const rate = (r: number) => `${r >= 10 ? r.toFixed(0) : r.toFixed(2)}/s`;

export default function DepGraph(props: {
  map: DependencyMap;
  selected: Selection;
  onSelect: (s: Selection) => void;
}) {
  const { map, selected, onSelect } = props;
  const at = useMemo(() => layout(map), [map]);
  const nodes = useMemo(() => nodeStats(map), [map]);
  const maxRate = Math.max(1e-9, ...nodes.map((n) => n.rate));
  const radius = (r: number) => 14 + 16 * Math.sqrt(r / maxRate);
  const radiusOf = new Map(nodes.map((n) => [n.service, radius(n.rate)]));
  // The drawing is cropped to the services (and their labels), so a small map is not lost in a big box.
  const xs = [...at.values()].map((p) => p.x);
  const ys = [...at.values()].map((p) => p.y);
  const x0 = Math.min(...xs) - 90;
  const y0 = Math.min(...ys) - 80;
  const w = Math.max(360, Math.max(...xs) + 90 - x0);
  const h = Math.max(220, Math.max(...ys) + 70 - y0);
  const press = (s: Selection) => (e: KeyboardEvent) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onSelect(s);
    }
  };
  const isNode = (s: string) => selected && "service" in selected && selected.service === s;
  const isEdge = (f: string, t: string) =>
    selected && "from" in selected && selected.from === f && selected.to === t;
  return (
    // biome-ignore lint/a11y/useSemanticElements: an SVG drawing holds the buttons, not a form
    <svg
      viewBox={`${x0 - (w - (Math.max(...xs) + 90 - x0)) / 2} ${y0} ${w} ${h}`}
      width={w}
      height={h}
      className="depgraph"
      role="group"
      aria-label="service dependency map"
      data-testid="dep-graph"
    >
      <defs>
        <marker
          id="arrow"
          viewBox="0 0 10 10"
          refX="9"
          refY="5"
          markerWidth="7"
          markerHeight="7"
          orient="auto"
        >
          <path d="M0,0 L10,5 L0,10 z" className="arrowhead" />
        </marker>
      </defs>
      {map.edges.map((e) => {
        const a = at.get(e.from);
        const b = at.get(e.to);
        if (!a || !b) return null;
        const bad = e.errorRate >= BAD;
        const cls = `edge${bad ? " bad" : ""}${e.inCycle ? " cycle" : ""}${isEdge(e.from, e.to) ? " selected" : ""}`;
        const label = `${e.from} → ${e.to}: ${rate(e.rate)}, ${pct(e.errorRate)} errors, p99 ${(e.p99 / 1000).toFixed(1)} ms${e.inCycle ? ", in a cycle" : ""}`;
        let d: string;
        let lx: number;
        let ly: number;
        if (e.from === e.to) {
          const r = radiusOf.get(e.from) ?? 20;
          d = `M${a.x - 8},${a.y - r} C${a.x - 50},${a.y - r - 60} ${a.x + 50},${a.y - r - 60} ${a.x + 8},${a.y - r}`;
          lx = a.x;
          ly = a.y - r - 50;
        } else {
          const dx = b.x - a.x;
          const dy = b.y - a.y;
          const len = Math.max(1, Math.hypot(dx, dy));
          const ra = radiusOf.get(e.from) ?? 20;
          const rb = (radiusOf.get(e.to) ?? 20) + 3;
          // A slight curve, so A → B and B → A do not overlap.
          const mx = (a.x + b.x) / 2 - (dy / len) * 24;
          const my = (a.y + b.y) / 2 + (dx / len) * 24;
          d = `M${a.x + (dx / len) * ra},${a.y + (dy / len) * ra} Q${mx},${my} ${b.x - (dx / len) * rb},${b.y - (dy / len) * rb}`;
          lx = mx;
          ly = my;
        }
        return (
          // biome-ignore lint/a11y/useSemanticElements: an SVG shape cannot be a <button>
          <g
            key={`${e.from}>${e.to}`}
            className={cls}
            role="button"
            tabIndex={0}
            aria-label={label}
            aria-pressed={isEdge(e.from, e.to) || false}
            onClick={() => onSelect({ from: e.from, to: e.to })}
            onKeyDown={press({ from: e.from, to: e.to })}
            data-testid={`edge-${e.from}>${e.to}`}
          >
            <title>{label}</title>
            <path d={d} fill="none" className="hit" />
            <path d={d} fill="none" markerEnd="url(#arrow)" />
            <text x={lx} y={ly} textAnchor="middle" className="edge-label">
              {rate(e.rate)}
              {e.errorRate > 0 ? ` · ${pct(e.errorRate)}` : ""}
            </text>
          </g>
        );
      })}
      {nodes.map((n) => {
        const p = at.get(n.service);
        if (!p) return null;
        const r = radius(n.rate);
        const bad = n.errorRate >= BAD;
        const label = `${n.service}: ${rate(n.rate)}, ${pct(n.errorRate)} errors, p99 ${(n.p99 / 1000).toFixed(1)} ms${n.inCycle ? ", in a cycle" : ""}`;
        return (
          // biome-ignore lint/a11y/useSemanticElements: an SVG shape cannot be a <button>
          <g
            key={n.service}
            className={`node${bad ? " bad" : ""}${n.inCycle ? " cycle" : ""}${isNode(n.service) ? " selected" : ""}`}
            transform={`translate(${p.x},${p.y})`}
            role="button"
            tabIndex={0}
            aria-label={label}
            aria-pressed={isNode(n.service) || false}
            onClick={() => onSelect({ service: n.service })}
            onKeyDown={press({ service: n.service })}
            data-testid={`node-${n.service}`}
          >
            <title>{label}</title>
            <circle r={r} />
            <text y={r + 15} textAnchor="middle" className="node-label">
              {n.service}
            </text>
            <text y={r + 29} textAnchor="middle" className="node-rate">
              {rate(n.rate)}
              {n.errorRate > 0 ? ` · ${pct(n.errorRate)}` : ""}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
