// The App page's events: every state change of the app and why, newest first.

import type { Event } from "../../../src/model/objects.ts";
import { ErrorBox, Loading, Section } from "../components/ui.tsx";
import { ago } from "../format.ts";
import { useSession } from "../session.tsx";
import { usePoll } from "../use-poll.ts";

export function EventsTab({ app }: { app: string }) {
  const { client } = useSession();
  const events = usePoll(
    (signal) => client.get<{ items: Event[] }>("/events", { query: { app, limit: 200 }, signal }),
    3000,
    [client, app],
  );
  const items = [...(events.data?.items ?? [])].reverse();
  return (
    <Section title="Events" id="events">
      <ErrorBox error={events.error} />
      {!events.data ? (
        <Loading what="events" />
      ) : items.length === 0 ? (
        <p className="muted">No events.</p>
      ) : (
        <ol className="timeline">
          {items.map((e) => (
            <li key={e.id} className={e.type === "warning" ? "warning" : undefined}>
              <time dateTime={e.time} title={e.time}>
                {ago(e.time)}
              </time>
              <span className={`badge ${e.type === "warning" ? "bad" : "plain"}`}>{e.reason}</span>
              <span>{e.message}</span>
              {e.details?.length ? <pre className="log small">{e.details.join("\n")}</pre> : null}
            </li>
          ))}
        </ol>
      )}
    </Section>
  );
}
