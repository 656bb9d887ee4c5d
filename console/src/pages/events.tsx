// Events: the tenant's events, newest first, filtered by app, type and text;
// warnings marked, details (crash output, alert labels) under each.
//
//   GET /events?limit=   (every 5 s)

import { useState } from "react";
import type { Event } from "../../../src/model/objects.ts";
import { ErrorBox, Loading, Section } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { Link } from "../router.tsx";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

export function EventsPage() {
  const { client } = useSession();
  const [app, setApp] = useState("");
  const [type, setType] = useState("");
  const [text, setText] = useState("");
  const events = usePoll(
    (signal) => client.get<{ items: Event[] }>("/events", { query: { limit: 500 }, signal }),
    5000,
    [client],
  );
  const all = [...(events.data?.items ?? [])].sort((a, b) => b.time.localeCompare(a.time));
  const apps = [...new Set(all.map((e) => e.app).filter((a): a is string => !!a))].sort();
  const needle = text.trim().toLowerCase();
  const shown = all.filter(
    (e) =>
      (!app || e.app === app) &&
      (!type || e.type === type) &&
      (!needle || `${e.reason} ${e.message}`.toLowerCase().includes(needle)),
  );
  return (
    <div className="page">
      <h1>Events</h1>
      <form className="row filters card" onSubmit={(e) => e.preventDefault()}>
        <label className="field inline">
          <span>App</span>
          <select value={app} onChange={(e) => setApp(e.target.value)}>
            <option value="">all</option>
            {apps.map((a) => (
              <option key={a}>{a}</option>
            ))}
          </select>
        </label>
        <label className="field inline">
          <span>Type</span>
          <select value={type} onChange={(e) => setType(e.target.value)}>
            <option value="">all</option>
            <option value="warning">warnings</option>
            <option value="normal">normal</option>
          </select>
        </label>
        <label className="field inline grow">
          <span>Text</span>
          <input type="search" value={text} maxLength={200} onChange={(e) => setText(e.target.value)} />
        </label>
      </form>
      <Section title={`Events (${shown.length})`}>
        <ErrorBox error={events.error} />
        {!events.data ? (
          <Loading what="events" />
        ) : shown.length === 0 ? (
          <p className="muted">No events.</p>
        ) : (
          <ul className="list events" data-testid="events">
            {shown.slice(0, 300).map((e) => (
              <li key={e.id} className={e.type === "warning" ? "warning" : undefined}>
                <span className={`badge ${e.type === "warning" ? "bad" : "plain"}`}>{e.reason}</span>{" "}
                {e.app ? (
                  <Link to={`/apps/${encodeURIComponent(e.app)}/events`}>{e.app}</Link>
                ) : e.node ? (
                  <span>node {e.node}</span>
                ) : null}{" "}
                {e.message} <span className="muted small">{ago(e.time)}</span>
                {e.details?.length ? <pre className="small">{e.details.join("\n")}</pre> : null}
              </li>
            ))}
          </ul>
        )}
      </Section>
    </div>
  );
}
