// One trace as a waterfall: every span on its row, indented by depth, its bar
// placed by offset and duration on the trace's time line; errors marked. A
// span opens to show its attributes.
//
//   GET /traces/:id   (a tree of spans, µs)

import { Fragment, useState } from "react";
import type { SpanNode, TraceTree } from "../api-types.ts";
import { TracesTabs } from "../components/traces-tabs.tsx";
import { ErrorBox, Loading, Section } from "../components/ui.tsx";
import { micros } from "../format.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

/** The spans of a tree in display order (parents before children, children by start). */
export function flatten(roots: SpanNode[]): SpanNode[] {
  const out: SpanNode[] = [];
  const walk = (n: SpanNode) => {
    out.push(n);
    for (const c of [...n.children].sort((a, b) => a.offset - b.offset)) walk(c);
  };
  for (const r of [...roots].sort((a, b) => a.offset - b.offset)) walk(r);
  return out;
}

export function TracePage({ params }: { params: Record<string, string> }) {
  const { client } = useSession();
  const id = params.id;
  const trace = usePoll(
    (signal) => client.get<TraceTree>(`/traces/${encodeURIComponent(id)}`, { signal }),
    0,
    [client, id],
  );
  const [open, setOpen] = useState<string>();
  const t = trace.data;
  const spans = t ? flatten(t.roots) : [];
  const total = Math.max(1, t?.duration ?? 1);
  return (
    <div className="page">
      <nav className="crumbs" aria-label="breadcrumb">
        <Link to="/traces">Traces</Link> / <span className="mono">{id}</span>
      </nav>
      <h1>
        Trace{" "}
        {t ? (
          <span className="muted">
            {micros(t.duration)} · {t.spans} spans · {t.services.length} services
            {t.errors > 0 ? ` · ${t.errors} errors` : ""}
          </span>
        ) : null}
      </h1>
      <TracesTabs current="" />
      <ErrorBox error={trace.error} />
      {!t ? (
        trace.error ? null : (
          <Loading what="the trace" />
        )
      ) : (
        <Section title="Waterfall">
          <p className="small muted">
            Started {new Date(t.start / 1000).toISOString().replace("T", " ").slice(0, 23)} · services{" "}
            {t.services.join(", ")}
          </p>
          <ol className="waterfall" data-testid="waterfall" aria-label="spans">
            {spans.map((s) => {
              const left = (s.offset / total) * 100;
              const width = Math.max(0.3, (s.duration / total) * 100);
              const isOpen = open === s.spanId;
              return (
                <Fragment key={s.spanId}>
                  <li className="span-row" data-testid="span-row">
                    <button
                      type="button"
                      className="span-name"
                      style={{ paddingLeft: `${0.4 + s.depth * 0.9}em` }}
                      aria-expanded={isOpen}
                      onClick={() => setOpen(isOpen ? undefined : s.spanId)}
                      title={`${s.service}: ${s.name}`}
                    >
                      <strong>{s.service}</strong> {s.name}
                    </button>
                    <div className="span-track">
                      <div
                        className={`span-bar${s.status === "error" ? " error" : ""}`}
                        style={{ left: `${Math.min(left, 99.7)}%`, width: `${Math.min(width, 100 - left)}%` }}
                      />
                      <span className="span-time" style={{ left: `${Math.min(left, 85)}%` }}>
                        {micros(s.duration)}
                        {s.status === "error" ? ` · error${s.statusCode ? ` ${s.statusCode}` : ""}` : ""}
                      </span>
                    </div>
                  </li>
                  {isOpen ? (
                    <li className="span-detail">
                      <dl>
                        <dt>span</dt>
                        <dd className="mono">{s.spanId}</dd>
                        <dt>kind</dt>
                        <dd>{s.kind}</dd>
                        <dt>start</dt>
                        <dd>+{micros(s.offset)}</dd>
                        {s.statusMessage ? (
                          <>
                            <dt>status</dt>
                            <dd>{s.statusMessage}</dd>
                          </>
                        ) : null}
                        {Object.entries(s.attributes).map(([k, v]) => (
                          <Fragment key={k}>
                            <dt>{k}</dt>
                            <dd>{String(v)}</dd>
                          </Fragment>
                        ))}
                      </dl>
                    </li>
                  ) : null}
                </Fragment>
              );
            })}
          </ol>
        </Section>
      )}
    </div>
  );
}
