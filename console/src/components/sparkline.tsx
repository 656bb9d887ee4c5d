// A small line chart (uPlot) of one series over time, for tables: no axes,
// no legend, the last value beside it.

import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface SparklineProps {
  /** [unix seconds…], [values…] */
  points: [number[], (number | null)[]] | undefined;
  label: string;
  width?: number;
  height?: number;
  /** CSS colour of the line. */
  color?: string;
}

export function Sparkline({
  points,
  label,
  width = 110,
  height = 26,
  color = "var(--accent)",
}: SparklineProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (!box.current || !points || points[0].length < 2) return;
    // uPlot draws on a canvas: it needs a real colour, not a CSS variable.
    const stroke = color.startsWith("var(")
      ? getComputedStyle(box.current).getPropertyValue(color.slice(4, -1)).trim() || "#2f6f4f"
      : color;
    if (!plot.current) {
      plot.current = new uPlot(
        {
          width,
          height,
          pxAlign: false,
          cursor: { show: false },
          legend: { show: false },
          select: { show: false, left: 0, top: 0, width: 0, height: 0 },
          axes: [{ show: false }, { show: false }],
          scales: {
            x: { time: false },
            y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max : 1] },
          },
          series: [{}, { stroke, width: 1.5, fill: `${stroke}22`, points: { show: false } }],
        },
        points,
        box.current,
      );
    } else {
      plot.current.setData(points);
    }
  }, [points, width, height, color]);
  useEffect(
    () => () => {
      plot.current?.destroy();
      plot.current = null;
    },
    [],
  );
  const empty = !points || points[0].length < 2;
  return (
    <div
      className="sparkline"
      role="img"
      aria-label={label}
      ref={box}
      style={{ width, height }}
      data-empty={empty || undefined}
    >
      {empty ? <span className="muted">no data</span> : null}
    </div>
  );
}
