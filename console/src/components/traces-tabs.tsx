// The tabs over the trace pages: search, the dependency map, Top-N.

import { Link } from "../router.tsx";

const TABS = [
  { to: "/traces", label: "Search" },
  { to: "/traces/map", label: "Map" },
  { to: "/traces/top", label: "Top-N" },
];

export function TracesTabs({ current }: { current: string }) {
  return (
    <nav className="tabs" aria-label="trace views">
      {TABS.map((t) => (
        <Link key={t.to} to={t.to} aria-current={t.to === current ? "page" : undefined}>
          {t.label}
        </Link>
      ))}
    </nav>
  );
}

/** A link to one trace's waterfall. */
export function TraceLink({ id, children }: { id: string; children?: React.ReactNode }) {
  return (
    <Link to={`/traces/${id}`} data-testid="trace-link" className="mono">
      {children ?? id.replace(/^0{16}/, "").slice(0, 16)}
    </Link>
  );
}
