// A time chart (uPlot) of several series with axes and a legend: the Metrics
// page's charts. Series share the x axis (unix seconds); missing points are null.

import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { ChartData } from "../prom.ts";

export type { ChartData };

const PALETTE = ["#2f7d5a", "#c0392b", "#d68910", "#2e86c1", "#8e44ad", "#17a589", "#7f8c8d", "#b9770e"];

/** A value with its unit, for the y axis and the legend. */
export type Unit = "rps" | "pct" | "s" | "bytes" | "cores" | "";

export function formatValue(v: number | null | undefined, unit: Unit): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  if (unit === "pct") return `${(v * 100).toFixed(v < 0.01 ? 2 : 1)}%`;
  if (unit === "s") return v >= 1 ? `${v.toFixed(2)}s` : `${(v * 1000).toFixed(v < 0.01 ? 1 : 0)}ms`;
  if (unit === "bytes") {
    const u = ["B", "K", "M", "G", "T"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < u.length - 1) {
      v /= 1024;
      i++;
    }
    return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)}${u[i]}`;
  }
  if (unit === "rps") return `${v >= 100 ? v.toFixed(0) : v.toFixed(2)}/s`;
  if (unit === "cores") return v.toFixed(v >= 1 ? 2 : 3);
  return Math.abs(v) >= 1000 || Number.isInteger(v) ? String(Math.round(v * 100) / 100) : v.toPrecision(3);
}

export function Chart(props: { data: ChartData | undefined; unit?: Unit; height?: number; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const unit = props.unit ?? "";
  const height = props.height ?? 200;
  const labels = props.data?.series.map((s) => s.label).join("\0");
  // A new set of series (other labels) draws a new chart; new points only update it.
  // biome-ignore lint/correctness/useExhaustiveDependencies: rebuilt when the labels, unit or height change
  useEffect(() => {
    const el = box.current;
    if (!el || !props.data) return;
    const css = getComputedStyle(el);
    const ink = css.getPropertyValue("--muted").trim() || "#777";
    const grid = css.getPropertyValue("--line").trim() || "#8884";
    const axis = { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    plot.current?.destroy();
    plot.current = new uPlot(
      {
        width: Math.max(200, el.clientWidth),
        height,
        legend: { live: true },
        scales: { y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max : 1] } },
        axes: [axis, { ...axis, size: 60, values: (_u, ticks) => ticks.map((t) => formatValue(t, unit)) }],
        series: [
          {},
          ...props.data.series.map((s, i) => ({
            label: s.label,
            stroke: PALETTE[i % PALETTE.length],
            width: 1.5,
            points: { show: false },
            value: (_u: uPlot, v: number | null) => formatValue(v, unit),
          })),
        ],
      },
      [props.data.times, ...props.data.series.map((s) => s.values)] as uPlot.AlignedData,
      el,
    );
    const resize = new ResizeObserver(() =>
      plot.current?.setSize({ width: Math.max(200, el.clientWidth), height }),
    );
    resize.observe(el);
    return () => resize.disconnect();
  }, [labels, unit, height]);
  useEffect(() => {
    if (plot.current && props.data)
      plot.current.setData([
        props.data.times,
        ...props.data.series.map((s) => s.values),
      ] as uPlot.AlignedData);
  }, [props.data]);
  useEffect(
    () => () => {
      plot.current?.destroy();
      plot.current = null;
    },
    [],
  );
  const empty = !props.data || props.data.times.length === 0;
  return (
    <div className="chart" role="img" aria-label={props.label} data-empty={empty || undefined}>
      <div ref={box} />
      {empty ? <p className="muted">no data in this window</p> : null}
    </div>
  );
}
