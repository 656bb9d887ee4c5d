// How figures read in the console.

/** "3 s ago", "5 min ago", "2 h ago", else the date. */
export function ago(iso: string | number | undefined, now = Date.now()): string {
  if (iso === undefined) return "—";
  const t = typeof iso === "number" ? iso : Date.parse(iso);
  if (!Number.isFinite(t)) return "—";
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  return new Date(t).toISOString().slice(0, 16).replace("T", " ");
}

export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

export function cores(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return "—";
  return `${n >= 10 ? n.toFixed(0) : n >= 1 ? n.toFixed(1) : n.toFixed(2)} cpu`;
}

/** A figure with a unit, short: 12.3 req/s, 4.1 %, 230 ms. */
export function figure(n: number | undefined, unit: "rps" | "pct" | "s"): string {
  if (n === undefined || !Number.isFinite(n)) return "—";
  if (unit === "rps") return `${n >= 100 ? n.toFixed(0) : n.toFixed(1)} req/s`;
  if (unit === "pct") return `${(n * 100).toFixed(n < 0.01 ? 2 : 1)} %`;
  return n >= 1 ? `${n.toFixed(2)} s` : `${(n * 1000).toFixed(n < 0.01 ? 1 : 0)} ms`;
}

/** A duration in µs: 850 µs, 12.3 ms, 1.20 s. */
export function micros(us: number | undefined): string {
  if (us === undefined || !Number.isFinite(us)) return "—";
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}
